"""Build a Sodarace walker: joints (point masses) joined by muscles (springs).

The API of the ELM paper (Lehman et al., 2022, p. 16). This module runs inside the
sandbox next to the candidate program (standard library only; numpy is there too for
programs that want it). A program defines `make_walker()`:

    from walker_creator import walker_creator

    def make_walker():
        wc = walker_creator()
        left = wc.add_joint(0, 0)
        right = wc.add_joint(10, 0)
        top = wc.add_joint(5, 8)
        wc.add_muscle(left, right)           # no amplitude: a passive spring
        wc.add_muscle(left, top, 1.0, 0.0)   # amplitude 1, phase 0
        wc.add_muscle(right, top, 1.0, 0.5)  # half a period later
        return wc.get_walker()

`add_joint` returns the joint itself, the point (x, y), as in the paper; `add_muscle`
accepts such a point (or a joint's index) and looks the joint up by its coordinates.

Units. Coordinates are decimetres, y points up; the simulator drops the walker so that
its lowest joint touches the ground. The paper's muscle arguments are
`add_muscle(j0, j1, amplitude, phase, ...)` (further arguments are ignored, as in the
paper's simulator):

- amplitude: any number. 0 is a passive spring; otherwise the muscle's rest length swings
  by the fraction `MAX_SWING * |a| / (1 + |a|)` of its length: 1 -> 0.25, 2 -> 0.33,
  10 -> 0.45, never more than 0.5. A negative amplitude swings the other way round (half a
  period later).
- phase: in periods, as in the paper's simulator (0.25 is a quarter period; whole numbers
  are all the same phase).

`get_walker()` converts to the host's plain data, `{"joints": [[x, y]], "muscles": [[j0, j1,
swing, phase in radians]], "dropped": {...}}`; the host checks all of it again.

Degenerate elements that the paper's simulator tolerated are dropped and counted in
`dropped` instead of failing the walker: a joint closer than MIN_JOINT_SPACING to an
earlier one is that joint (its handle is returned), and a muscle from a joint to itself
(including between two merged joints) is left out.
"""

import math

MAX_JOINTS = 64
MAX_MUSCLES = 1024
COORDINATE_LIMIT = 100.0
MIN_JOINT_SPACING = 1.0
MAX_AMPLITUDE = 1.0  # the largest swing the host accepts, as a fraction of the length
MAX_SWING = 0.5  # the largest swing the paper's amplitudes map to
MUSCLE_PERIOD_S = 1.0
DROPPED_KINDS = ("merged_joints", "self_muscles")


def muscle_swing(amplitude, phase):
    """The paper's (amplitude, phase in periods) as (swing fraction, phase in radians)."""
    amplitude, phase = _finite("amplitude", amplitude), _finite("phase", phase)
    swing = MAX_SWING * abs(amplitude) / (1.0 + abs(amplitude))
    periods = math.fmod(phase + (0.5 if amplitude < 0 else 0.0), 1.0)
    return swing, 2.0 * math.pi * periods


class WalkerCreator:
    """Collects joints and muscles; `get_walker()` returns them as plain data."""

    def __init__(self):
        self._joints = []
        self._index = {}
        self._muscles = []
        self._dropped = dict.fromkeys(DROPPED_KINDS, 0)

    def add_joint(self, x, y):
        """Add a joint at (x, y); returns the joint, the point (x, y), as its handle."""
        point = (_finite("x", x), _finite("y", y))
        existing = self._near(point)
        if existing is not None:
            self._dropped["merged_joints"] += 1
            return self._joints[existing]
        if len(self._joints) >= MAX_JOINTS:
            raise ValueError(f"a walker has at most {MAX_JOINTS} joints")
        self._index[point] = len(self._joints)
        self._joints.append(point)
        return point

    def add_muscle(self, j0, j1, *args, amplitude=0.0, phase=0.0):
        """Join two joints: `add_muscle(j0, j1, amplitude, phase)`; amplitude 0 is passive."""
        first, second = self._handle(j0), self._handle(j1)
        if args:
            amplitude = args[0]
        if len(args) > 1:
            phase = args[1]
        swing, radians = muscle_swing(amplitude, phase)
        if first == second:
            self._dropped["self_muscles"] += 1
            return None
        if len(self._muscles) >= MAX_MUSCLES:
            raise ValueError(f"a walker has at most {MAX_MUSCLES} muscles")
        muscle = [first, second, swing, radians]
        self._muscles.append(muscle)
        return muscle

    def get_walker(self):
        """The walker as plain data for the host."""
        return {
            "joints": [list(joint) for joint in self._joints],
            "muscles": [list(muscle) for muscle in self._muscles],
            "dropped": dict(self._dropped),
        }

    def _near(self, point):
        if point in self._index:
            return self._index[point]
        for index, joint in enumerate(self._joints):
            if math.dist(point, joint) < MIN_JOINT_SPACING:
                return index
        return None

    def _handle(self, joint):
        if type(joint) is int:
            if not 0 <= joint < len(self._joints):
                raise ValueError(f"no joint {joint}: the walker has {len(self._joints)} joints")
            return joint
        if isinstance(joint, (tuple, list)) and len(joint) == 2:
            point = (_finite("x", joint[0]), _finite("y", joint[1]))
            if point in self._index:
                return self._index[point]
            raise ValueError(f"no joint at {point}: use the point add_joint returned")
        raise TypeError(f"a joint handle is the point add_joint returned, got {joint!r:.60}")


def walker_creator():
    """A new, empty walker under construction."""
    return WalkerCreator()


def query_cppn(wc, xgrid, ygrid, scale, connect_func, amp_func, phase_func):
    """A grid of xgrid x ygrid joints, `scale` apart, joined where `connect_func` says.

    Each pair of grid points (x1, y1), (x2, y2) with x2 >= x1 and y2 >= y1 (the pair with
    itself left out) gets a muscle when `connect_func(x1, y1, x2, y2)` is true, with
    amplitude `amp_func(...)` and phase `phase_func(...)` of the same grid indices.
    Returns {(x, y): joint} for the grid indices.
    """
    joints = {}
    for x in range(xgrid):
        for y in range(ygrid):
            joints[x, y] = wc.add_joint(x * scale, y * scale)
    for (x1, y1), first in joints.items():
        for (x2, y2), second in joints.items():
            if x2 < x1 or y2 < y1 or (x1, y1) == (x2, y2):
                continue
            if connect_func(x1, y1, x2, y2):
                wc.add_muscle(first, second, amp_func(x1, y1, x2, y2), phase_func(x1, y1, x2, y2))
    return joints


def _finite(name, value):
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    return number
