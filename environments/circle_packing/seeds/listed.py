"""Hand-placed centres: a 5 x 5 grid and one more circle in a gap between four others.
The circles grow one at a time, each as far as the walls and the circles before it allow.
Centres beyond the list repeat it (and get no room), so any n stays valid."""

import numpy as np

CENTERS = [
    (0.1, 0.1), (0.3, 0.1), (0.5, 0.1), (0.7, 0.1), (0.9, 0.1),
    (0.1, 0.3), (0.3, 0.3), (0.5, 0.3), (0.7, 0.3), (0.9, 0.3),
    (0.1, 0.5), (0.3, 0.5), (0.5, 0.5), (0.7, 0.5), (0.9, 0.5),
    (0.1, 0.7), (0.3, 0.7), (0.5, 0.7), (0.7, 0.7), (0.9, 0.7),
    (0.1, 0.9), (0.3, 0.9), (0.5, 0.9), (0.7, 0.9), (0.9, 0.9),
    (0.4, 0.4),
]


def pack(n):
    centers = np.array([CENTERS[k % len(CENTERS)] for k in range(n)], dtype=float)
    centers = np.clip(centers, 0.0, 1.0)
    return centers, grow_radii(centers)


def grow_radii(centers):
    walls = np.minimum(centers, 1.0 - centers).min(axis=1)
    radii = np.zeros(len(centers))
    for i in range(len(centers)):
        room = np.linalg.norm(centers - centers[i], axis=1) - radii
        room[i] = walls[i]
        radii[i] = max(0.0, room.min() - 1e-12)  # a hair of room: rounding never overlaps
    return radii
