import numpy as np
from walker_creator import query_cppn, walker_creator


def make_walker():
    wc = walker_creator()

    def connect(x1, y1, x2, y2):
        # join grid points at most two cells apart
        return (x1 - x2) ** 2 + (y1 - y2) ** 2 <= 4.5

    def amp(x1, y1, x2, y2):
        return max(abs(x2 - x1), abs(y2 - y1))

    def phase(x1, y1, x2, y2):
        return np.sign(x1)

    # query_cppn lays out the grid and asks the three functions about every pair
    query_cppn(wc, 8, 3, 1.5, connect, amp, phase)

    return wc.get_walker()
