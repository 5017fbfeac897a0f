"""An outer ring, an inner ring and a centre circle. The circles grow one at a time, each
as far as the walls and the circles before it allow, so any centres give a valid packing."""

import numpy as np


def pack(n):
    centers = place_centers(n)
    return centers, grow_radii(centers)


def place_centers(n):
    inner = min(8, n - 1)
    outer = n - 1 - inner
    points = []
    for k in range(outer):
        angle = 2.0 * np.pi * k / max(outer, 1) + 0.2
        points.append((0.5 + 0.45 * np.cos(angle), 0.5 + 0.45 * np.sin(angle)))
    for k in range(inner):
        angle = 2.0 * np.pi * k / inner + 0.0
        points.append((0.5 + 0.25 * np.cos(angle), 0.5 + 0.25 * np.sin(angle)))
    points.append((0.5, 0.5))
    return np.clip(np.array(points[:n]), 0.0, 1.0)


def grow_radii(centers):
    walls = np.minimum(centers, 1.0 - centers).min(axis=1)
    radii = np.zeros(len(centers))
    for i in range(len(centers)):
        room = np.linalg.norm(centers - centers[i], axis=1) - radii
        room[i] = walls[i]
        radii[i] = max(0.0, room.min() - 1e-12)  # a hair of room: rounding never overlaps
    return radii
