"""Best fit adjusted by a few weighted ideas, each weight open to tuning: reward exact
fits, avoid leaving slivers of room, prefer older bins, hesitate to start an empty bin."""

import numpy as np


def priority(item, bins):
    residual = bins - item
    score = -1.0 * residual
    score = score + 2.0 * (residual <= 2.0)
    score = score - 4.0 * ((residual > 2.0) & (residual < 10.0))
    score = score - 0.2 * np.arange(len(bins))
    score = score - 1.0 * (bins >= bins.max())
    return score
