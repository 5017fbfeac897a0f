"""Build a Sodarace walker: joints (point masses) joined by muscles (springs).

This module runs inside the sandbox next to the candidate program (standard library
only). A program defines `make_walker()`:

    from walker_creator import walker_creator

    def make_walker():
        wc = walker_creator()
        left = wc.add_joint(0.0, 0.0)
        right = wc.add_joint(10.0, 0.0)
        top = wc.add_joint(5.0, 8.0)
        wc.add_muscle(left, right)                            # passive: holds its length
        wc.add_muscle(left, top, amplitude=0.3)               # active: oscillates
        wc.add_muscle(right, top, amplitude=0.3, phase=3.14)
        return wc.get_walker()

Units are decimetres, y points up; the simulator drops the walker so that its lowest
joint touches the ground, so only relative positions matter. An active muscle's rest
length follows `length * (1 + amplitude * sin(2 pi t / MUSCLE_PERIOD_S + phase))`: one
period shared by every muscle, phase in radians, amplitude in [0, MAX_AMPLITUDE].

The limits below are the walker's contract; the host checks all of them again.
"""

MAX_JOINTS = 64
MAX_MUSCLES = 256
COORDINATE_LIMIT = 100.0
MIN_JOINT_SPACING = 1.0
MAX_AMPLITUDE = 1.0
MUSCLE_PERIOD_S = 1.0


class WalkerCreator:
    """Collects joints and muscles; `get_walker()` returns them as plain data."""

    def __init__(self):
        self._joints = []
        self._muscles = []

    def add_joint(self, x, y):
        """Add a joint at (x, y); returns its handle (the joint's index)."""
        if len(self._joints) >= MAX_JOINTS:
            raise ValueError(f"a walker has at most {MAX_JOINTS} joints")
        self._joints.append([float(x), float(y)])
        return len(self._joints) - 1

    def add_muscle(self, j0, j1, amplitude=0.0, phase=0.0):
        """Join two joints. amplitude 0 is a passive spring; otherwise an active muscle."""
        if len(self._muscles) >= MAX_MUSCLES:
            raise ValueError(f"a walker has at most {MAX_MUSCLES} muscles")
        first, second = self._handle(j0), self._handle(j1)
        if first == second:
            raise ValueError(f"a muscle needs two different joints, got {first} twice")
        self._muscles.append([first, second, float(amplitude), float(phase)])
        return len(self._muscles) - 1

    def get_walker(self):
        """The walker as plain data: {"joints": [[x, y]], "muscles": [[j0, j1, amplitude, phase]]}."""
        return {
            "joints": [list(joint) for joint in self._joints],
            "muscles": [list(muscle) for muscle in self._muscles],
        }

    def _handle(self, joint):
        if isinstance(joint, bool) or not isinstance(joint, int):
            raise TypeError(f"a joint handle is the int returned by add_joint, got {joint!r}")
        if not 0 <= joint < len(self._joints):
            raise ValueError(f"no joint {joint}: the walker has {len(self._joints)} joints")
        return joint


def walker_creator():
    """A new, empty walker under construction."""
    return WalkerCreator()
