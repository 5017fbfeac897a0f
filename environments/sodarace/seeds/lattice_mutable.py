import math

from walker_creator import walker_creator

COLUMNS, ROWS, SPACING = 5, 5, 3.0
NEIGHBOURS = ((1, 0), (0, 1), (1, 1), (1, -1))

# The CPPN, node by node. Values 0-3 are the inputs x, y, distance from the centre and a
# bias of 1; each node appends one value: activation(sum of weight * value[source]).
ACTIVATIONS = {
    "sin": math.sin,
    "tanh": math.tanh,
    "gauss": lambda v: math.exp(-v * v),
    "sigmoid": lambda v: 0.5 * (1.0 + math.tanh(0.5 * v)),
    "abs": abs,
}
NODES = [
    ("sin", {0: 3.0, 3: 0.2}),
    ("gauss", {1: 1.8, 2: -0.4}),
    ("tanh", {0: -1.0, 1: 1.5, 4: 0.7}),
    ("gauss", {2: 1.2, 5: 0.5}),
]
PRESENCE = ("tanh", {5: 0.8, 7: 0.7, 3: -0.3})
AMPLITUDE = ("sigmoid", {4: 1.5, 6: -1.2, 3: 0.4})
PHASE = ("tanh", {4: 2.0, 6: 1.0, 7: -0.5})


def cppn(x, y):
    """(presence, amplitude, phase) of the pattern at (x, y) in [-1, 1]^2."""
    values = [x, y, math.hypot(x, y), 1.0]
    for activation, weights in NODES:
        values.append(ACTIVATIONS[activation](sum(w * values[s] for s, w in weights.items())))
    return tuple(
        ACTIVATIONS[activation](sum(w * values[s] for s, w in weights.items()))
        for activation, weights in (PRESENCE, AMPLITUDE, PHASE)
    )


def to_unit(column, row):
    """Lattice cell -> the CPPN's coordinates in [-1, 1]."""
    return 2.0 * column / (COLUMNS - 1) - 1.0, 2.0 * row / (ROWS - 1) - 1.0


def make_walker():
    wc = walker_creator()
    # a joint on every lattice cell where the pattern is present
    joints = {}
    for column in range(COLUMNS):
        for row in range(ROWS):
            presence, _, _ = cppn(*to_unit(column, row))
            if presence > 0.0:
                joints[column, row] = wc.add_joint(column * SPACING, row * SPACING)
    # a muscle between neighbouring joints, shaped by the pattern at its midpoint
    for (column, row), joint in joints.items():
        for dc, dr in NEIGHBOURS:
            other = joints.get((column + dc, row + dr))
            if other is None:
                continue
            x, y = to_unit(column + 0.5 * dc, row + 0.5 * dr)
            _, amplitude, phase = cppn(x, y)
            amplitude = 2.0 * amplitude if amplitude > 0.3 else 0.0
            wc.add_muscle(joint, other, amplitude=amplitude, phase=0.5 * phase)
    return wc.get_walker()
