"""A sky that fades from top to horizon, a round sun, and flat ground below."""

import numpy as np


def draw(size):
    y, x = np.mgrid[0:size, 0:size] / (size - 1.0)
    image = np.zeros((size, size, 3))
    fade = y / 0.7
    top = np.array([0.3, 0.5, 0.9])
    horizon = np.array([0.8, 0.9, 1.0])
    for channel in range(3):
        image[:, :, channel] = top[channel] + (horizon[channel] - top[channel]) * fade
    sun = (x - 0.3) ** 2 + (y - 0.3) ** 2 < 0.12 ** 2
    image[sun] = [1.0, 1.0, 0.9]
    ground = y > 0.7
    image[ground] = [0.2, 0.6, 0.2]
    return image
