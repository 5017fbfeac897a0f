from cppn import query
from walker_creator import walker_creator

COLUMNS, ROWS, SPACING = 6, 4, 3.0
NEIGHBOURS = ((1, 0), (0, 1), (1, 1), (1, -1))


def to_unit(column, row):
    """Lattice cell -> the CPPN's coordinates in [-1, 1]."""
    return 2.0 * column / (COLUMNS - 1) - 1.0, 2.0 * row / (ROWS - 1) - 1.0


def make_walker():
    wc = walker_creator()
    # a joint on every lattice cell where the pattern is present
    joints = {}
    for column in range(COLUMNS):
        for row in range(ROWS):
            presence, _, _ = query(*to_unit(column, row))
            if presence > 0.0:
                joints[column, row] = wc.add_joint(column * SPACING, row * SPACING)
    # a muscle between neighbouring joints, shaped by the pattern at its midpoint
    for (column, row), joint in joints.items():
        for dc, dr in NEIGHBOURS:
            other = joints.get((column + dc, row + dr))
            if other is None:
                continue
            x, y = to_unit(column + 0.5 * dc, row + 0.5 * dr)
            _, amplitude, phase = query(x, y)
            amplitude = 2.0 * amplitude if amplitude > 0.3 else 0.0
            wc.add_muscle(joint, other, amplitude=amplitude, phase=0.5 * phase)
    return wc.get_walker()
