"""Sodarace: programs build walkers; a walker's fitness is how far it travels.

From "Evolution through Large Models" (Lehman et al., 2022), sections 4-5. A program
defines `make_walker()` with the `walker_creator` API; the sandbox returns the walker as
plain data; the host validates it as hostile and simulates it with pymunk. Fitness is the
distance the centre of mass travels along +x; the descriptor is the walker's initial
height, width and total mass.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from elm.environment import (
    CommitMessage,
    DescriptorSpace,
    Dimension,
    Environment,
    EnvironmentLoadError,
    Program,
    Score,
)
from environments.sodarace.physics import PhysicsSettings, simulate
from environments.sodarace.walker import InvalidWalker, Walker, parse_walker

_HERE = Path(__file__).resolve().parent
# The paper's four seeds start a run unless `seeds` names others.
_PAPER_SEEDS = {
    "square": "square.py",
    "radial": "radial.py",
    "cppn-fixed": "cppn_fixed.py",
    "cppn-mutable": "cppn_mutable.py",
}
_SEEDS = {
    **_PAPER_SEEDS,
    "pulse-square": "pulse_square.py",
    "wave-wheel": "wave_wheel.py",
    "lattice-fixed": "lattice_fixed.py",
    "lattice-mutable": "lattice_mutable.py",
}
_SANDBOX_MODULES = ("walker_creator.py", "cppn.py")
_MAX_DURATION_S = 60.0


class Sodarace(Environment):
    name: ClassVar[str] = "sodarace"
    file_name: ClassVar[str] = "walker.py"
    entry_point: ClassVar[str] = "make_walker"
    harness: ClassVar[str] = "sodarace_harness.py"
    # 12 x 12 x 12 niches as in the paper; decimetres and mass units. The seeds and their
    # near mutants land inside, away from bin edges, the paper's Square and Radial (both
    # 10 x 10 dm) in different mass bins; larger walkers fall in the edge bins.
    descriptor_space: ClassVar[DescriptorSpace] = DescriptorSpace(
        (
            Dimension("height", 0.0, 33.0, 12),
            Dimension("width", 0.0, 33.0, 12),
            Dimension("mass", 0.0, 144.0, 12),
        )
    )
    commit_messages: ClassVar[tuple[CommitMessage, ...]] = (
        CommitMessage("Changed make_walker function.", 0.4),
        CommitMessage("Changed parameters in make_walker function.", 0.3),
        CommitMessage("Small change to make_walker function.", 0.3),
    )
    # Fitness floor for the QD score, in decimetres: seeds walk 10-40 dm forward in 10 s and
    # walkers going backwards rarely pass a few tens, so -100 keeps every elite's term positive.
    qd_offset = -100.0

    def __init__(self, seeds: list[str] | None = None, duration: float = 10.0, **options: Any) -> None:
        super().__init__(**options)
        # Names are forgiving ("CPPN_Fixed" is "cppn-fixed"); None keeps every seed.
        self.seed_names = None if seeds is None else _seed_names(seeds)
        self.physics = PhysicsSettings(duration_s=_duration(duration))

    def seeds(self) -> list[Program]:
        """The seeds named in the options, in that order; the paper's four when none were named."""
        return [
            Program(self.file_name, (_HERE / "seeds" / _SEEDS[name]).read_text(), name)
            for name in (self.seed_names or _PAPER_SEEDS)
        ]

    def sandbox_files(self) -> dict[str, str]:
        files = {name: (_HERE / name).read_text() for name in _SANDBOX_MODULES}
        files[self.harness] = (_HERE / "harness.py").read_text()
        return files

    def score(self, result: Any) -> Score:
        try:
            walker = parse_walker(result)
        except InvalidWalker as error:
            return Score.invalid(f"invalid walker: {error}")
        motion = simulate(walker, self.physics)
        if motion.unstable:
            return Score.invalid(motion.unstable)
        return Score.of(motion.distance, describe(walker), **_extras(walker))

    def render(self, result: Any, path: str) -> str | None:
        """Write `path`.gif (the walker's run) and `path`.png (a still strip); return the GIF.

        None, and nothing written, for a result that is not a valid walker or blew up.
        """
        from environments.sodarace.render import render_motion

        try:
            walker = parse_walker(result)
        except InvalidWalker:
            return None
        return render_motion(walker, self.physics, path)


def describe(walker: Walker) -> tuple[float, float, float]:
    """The descriptor: initial height, width and total mass."""
    return (walker.height, walker.width, walker.mass)


def _extras(walker: Walker) -> dict[str, int]:
    active = sum(muscle.active for muscle in walker.muscles)
    counts = {"joints": len(walker.joints), "muscles": len(walker.muscles), "active_muscles": active}
    counts.update((f"dropped_{kind}", count) for kind, count in walker.dropped if count)
    return counts


def _seed_names(requested: Any) -> list[str]:
    if isinstance(requested, str) or not isinstance(requested, (list, tuple)):
        raise EnvironmentLoadError(f"sodarace seeds must be a list of names, got {requested!r}")
    names = []
    for raw in requested:
        name = str(raw).strip().lower().replace("_", "-").replace(" ", "-")
        if name not in _SEEDS:
            known = ", ".join(_SEEDS)
            raise EnvironmentLoadError(f"unknown sodarace seed {raw!r} (known: {known})")
        if name not in names:
            names.append(name)
    if not names:
        raise EnvironmentLoadError("sodarace seeds is empty; leave it out to use every seed")
    return names


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EnvironmentLoadError(f"sodarace duration must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and 0.0 < value <= _MAX_DURATION_S):
        raise EnvironmentLoadError(f"sodarace duration must be in (0, {_MAX_DURATION_S:g}] seconds, got {value}")
    return float(value)
