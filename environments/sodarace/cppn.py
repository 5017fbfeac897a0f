"""A fixed CPPN (compositional pattern-producing network) for the lattice-fixed seed.

Runs inside the sandbox (standard library only). It lives outside the candidate file, so
mutations change how a program uses the network, never the network itself.
`query(x, y)` maps a point of the unit square [-1, 1]^2 to three values:
presence (a joint belongs there when > 0), amplitude in [0, 1], phase in [-1, 1].
"""

import math


def _sigmoid(value):
    return 0.5 * (1.0 + math.tanh(0.5 * value))


def _gauss(value):
    return math.exp(-value * value)


# hidden nodes: (activation, weights on x, y, distance from the centre, bias)
_HIDDEN = (
    (math.sin, (2.5, 0.0, 0.0, 0.4)),
    (_gauss, (0.0, 1.6, 0.0, -0.6)),
    (math.tanh, (1.2, -0.8, 0.0, 0.1)),
    (_gauss, (0.0, 0.0, 1.4, 0.0)),
)
# outputs: (activation, weights on the hidden nodes, bias)
_OUTPUTS = (
    (math.tanh, (0.3, 0.9, 0.2, 0.6), -0.2),  # presence
    (_sigmoid, (1.5, -1.0, 2.0, 0.5), 0.0),  # amplitude
    (math.tanh, (2.0, 0.5, -1.5, 0.0), 0.3),  # phase
)


def query(x, y):
    """(presence, amplitude, phase) of the pattern at (x, y)."""
    inputs = (x, y, math.hypot(x, y), 1.0)
    hidden = [act(sum(w * v for w, v in zip(weights, inputs))) for act, weights in _HIDDEN]
    return tuple(
        act(bias + sum(w * h for w, h in zip(weights, hidden))) for act, weights, bias in _OUTPUTS
    )
