"""Best fit: put the item where it leaves the least room."""

import numpy as np


def priority(item, bins):
    return -(bins - item)
