"""A walker on the host: parsed from hostile sandbox data, checked, and measured.

`parse_walker` accepts only the plain data `walker_creator.get_walker()` produces and
rejects anything else with a reason. It never recurses into the data and checks sizes
before it iterates, so nested junk or a million joints cost nothing. Two muscles on the
same pair of joints are allowed: they act as springs in parallel. The optional `dropped`
counts (degenerate elements the sandbox side left out) are reported, never trusted for
anything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from environments.sodarace.walker_creator import (
    COORDINATE_LIMIT,
    DROPPED_KINDS,
    MAX_AMPLITUDE,
    MAX_JOINTS,
    MAX_MUSCLES,
    MIN_JOINT_SPACING,
)

JOINT_MASS = 1.0
MUSCLE_DENSITY = 0.1  # mass per decimetre of muscle, shared by the muscle's two joints
_KEYS = ("joints", "muscles", "dropped")
_MAX_DROPPED = 10**9
_SEQUENCES = (list, tuple)
_NUMBERS = (int, float)


class InvalidWalker(ValueError):
    """The data is not a usable walker; the message is the reason."""


@dataclass(frozen=True)
class Muscle:
    first: int
    second: int
    amplitude: float
    phase: float

    @property
    def active(self) -> bool:
        return self.amplitude > 0.0


@dataclass(frozen=True)
class Walker:
    joints: tuple[tuple[float, float], ...]
    muscles: tuple[Muscle, ...]
    dropped: tuple[tuple[str, int], ...] = ()

    @property
    def height(self) -> float:
        ys = [y for _, y in self.joints]
        return max(ys) - min(ys)

    @property
    def width(self) -> float:
        xs = [x for x, _ in self.joints]
        return max(xs) - min(xs)

    def muscle_length(self, muscle: Muscle) -> float:
        return math.dist(self.joints[muscle.first], self.joints[muscle.second])

    def joint_masses(self) -> list[float]:
        """Each joint's own mass plus half the mass of every muscle attached to it."""
        masses = [JOINT_MASS] * len(self.joints)
        for muscle in self.muscles:
            half = 0.5 * MUSCLE_DENSITY * self.muscle_length(muscle)
            masses[muscle.first] += half
            masses[muscle.second] += half
        return masses

    @property
    def mass(self) -> float:
        return sum(self.joint_masses())


def parse_walker(data: Any) -> Walker:
    """The walker described by `data`, or `InvalidWalker` saying what is wrong."""
    if type(data) is not dict:
        raise InvalidWalker(f"walker must be a dict with joints and muscles, got {_describe(data)}")
    unexpected = [key for key in data if key not in _KEYS]
    if unexpected:
        raise InvalidWalker(f"walker has unexpected key {_describe(unexpected[0])}")
    joints = _parse_joints(data.get("joints"))
    muscles = _parse_muscles(data.get("muscles"), len(joints))
    _check_spacing(joints)
    dropped = _parse_dropped(data["dropped"]) if "dropped" in data else ()
    return Walker(joints=joints, muscles=muscles, dropped=dropped)


def _parse_joints(raw: Any) -> tuple[tuple[float, float], ...]:
    _check_list("joints", raw, low=2, high=MAX_JOINTS)
    joints = []
    for index, joint in enumerate(raw):
        where = f"joint {index}"
        if type(joint) not in _SEQUENCES or len(joint) != 2:
            raise InvalidWalker(f"{where} must be [x, y], got {_describe(joint)}")
        x, y = (_coordinate(f"{where} {axis}", value) for axis, value in zip("xy", joint))
        joints.append((x, y))
    return tuple(joints)


def _parse_muscles(raw: Any, joint_count: int) -> tuple[Muscle, ...]:
    _check_list("muscles", raw, low=1, high=MAX_MUSCLES)
    muscles = []
    for index, muscle in enumerate(raw):
        where = f"muscle {index}"
        if type(muscle) not in _SEQUENCES or len(muscle) != 4:
            raise InvalidWalker(f"{where} must be [j0, j1, amplitude, phase], got {_describe(muscle)}")
        first, second = (_joint_index(where, value, joint_count) for value in muscle[:2])
        if first == second:
            raise InvalidWalker(f"{where} joins joint {first} to itself")
        amplitude = _number(f"{where} amplitude", muscle[2])
        if not 0.0 <= amplitude <= MAX_AMPLITUDE:
            raise InvalidWalker(f"{where} amplitude {amplitude:g} is outside [0, {MAX_AMPLITUDE:g}]")
        phase = _number(f"{where} phase", muscle[3])
        muscles.append(Muscle(first, second, amplitude, phase))
    return tuple(muscles)


def _parse_dropped(raw: Any) -> tuple[tuple[str, int], ...]:
    if type(raw) is not dict:
        raise InvalidWalker(f"dropped must be a dict of counts, got {_describe(raw)}")
    unexpected = [key for key in raw if key not in DROPPED_KINDS]
    if unexpected:
        raise InvalidWalker(f"dropped has unexpected key {_describe(unexpected[0])}")
    counts = []
    for kind in DROPPED_KINDS:
        count = raw.get(kind, 0)
        if type(count) is not int or not 0 <= count <= _MAX_DROPPED:
            raise InvalidWalker(f"dropped {kind} must be a count, got {_describe(count)}")
        counts.append((kind, count))
    return tuple(counts)


def _check_list(name: str, raw: Any, low: int, high: int) -> None:
    if type(raw) not in _SEQUENCES:
        raise InvalidWalker(f"{name} must be a list, got {_describe(raw)}")
    if not low <= len(raw) <= high:
        raise InvalidWalker(f"walker has {len(raw)} {name}; allowed {low} to {high}")


def _number(where: str, value: Any) -> float:
    if type(value) not in _NUMBERS:
        raise InvalidWalker(f"{where} must be a number, got {_describe(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidWalker(f"{where} is not finite ({_describe(value)})")
    return number


def _coordinate(where: str, value: Any) -> float:
    number = _number(where, value)
    if abs(number) > COORDINATE_LIMIT:
        raise InvalidWalker(f"{where} = {number:g} is outside [-{COORDINATE_LIMIT:g}, {COORDINATE_LIMIT:g}]")
    return number


def _joint_index(where: str, value: Any, joint_count: int) -> int:
    if type(value) is not int:
        raise InvalidWalker(f"{where} joint index must be an int, got {_describe(value)}")
    if not 0 <= value < joint_count:
        raise InvalidWalker(f"{where} joint index {_describe(value)} is out of range (0 to {joint_count - 1})")
    return value


def _check_spacing(joints: tuple[tuple[float, float], ...]) -> None:
    for i, first in enumerate(joints):
        for j in range(i + 1, len(joints)):
            if math.dist(first, joints[j]) < MIN_JOINT_SPACING:
                raise InvalidWalker(
                    f"joints {i} and {j} are closer than {MIN_JOINT_SPACING:g} apart"
                )


def _describe(value: Any) -> str:
    """A short, safe description of hostile data: never a full repr of a container."""
    if type(value) in _SEQUENCES or type(value) is dict:
        return f"a {type(value).__name__} of length {len(value)}"
    if type(value) is int and abs(value) >= 10**15:
        return "a huge int"
    if type(value) is str:
        return repr(value[:30] + ("..." if len(value) > 30 else ""))
    if type(value) in (float, int, bool) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"
