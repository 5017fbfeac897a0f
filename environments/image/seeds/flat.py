"""One flat grey: the simplest valid drawing."""

import numpy as np


def draw(size):
    return np.full((size, size, 3), 0.5)
