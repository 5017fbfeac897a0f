"""Equal circles on a square grid: simple and valid, far from the best packing."""

import math

import numpy as np


def pack(n):
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    radius = 0.5 / max(columns, rows)
    centers = []
    for index in range(n):
        row, column = divmod(index, columns)
        centers.append(((2 * column + 1) * radius, (2 * row + 1) * radius))
    return np.array(centers), np.full(n, radius - 1e-12)  # a hair of room: rounding never overlaps
