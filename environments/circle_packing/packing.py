"""The circle packing environment (host side): seeds, options and the checker.

A candidate defines `pack(n) -> (centres, radii)`. The host accepts a packing only if
every circle lies inside the unit square and no two circles overlap, both up to
`TOLERANCE`; the fitness is the sum of the radii (AlphaEvolve reports 2.635 for n=26).
`elm verify` checks an elite again with no tolerance at all, in exact rational arithmetic
on the very floats the candidate returned, by code separate from the scorer's.

Descriptors (why these two): `radius_spread` (coefficient of variation of the radii)
separates packings of equal circles, such as lattices, from packings that mix large
and small circles, as the best known ones do; `wall_contact` (share of circles
touching a side of the square) separates packings that fill the interior from
packings built along the walls. Both change smoothly as circles move and grow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from elm.environment import (
    CommitMessage,
    DescriptorSpace,
    Dimension,
    Environment,
    EnvironmentLoadError,
    Program,
    Score,
    seed_folder_programs,
)

TOLERANCE = 1e-9
WALL_GAP = 0.01  # a circle this close to a side counts as touching it
SPREAD_CAP = 0.5
MAX_CIRCLES = 1000


class _Invalid(Exception):
    """A result that is not a packing; the message is the reason."""


class CirclePacking(Environment):
    name = "circle_packing"
    file_name = "packing.py"
    entry_point = "pack"
    descriptor_space = DescriptorSpace(
        (
            Dimension("radius_spread", 0.0, SPREAD_CAP, 10),
            Dimension("wall_contact", 0.0, 1.0, 10),
        )
    )
    commit_messages = (
        CommitMessage("Improve the packing.", 3.0),
        CommitMessage("Make the circles larger without overlapping.", 2.0),
        CommitMessage("Move the circles closer together.", 1.0),
        CommitMessage("Use circles of different sizes.", 1.0),
        CommitMessage("Arrange the circles in a hexagonal pattern.", 1.0),
        CommitMessage("Put more circles along the walls and in the corners.", 1.0),
        CommitMessage("Fix overlapping circles.", 1.0),
    )
    qd_offset = 0.0

    def __init__(self, n: int = 26, seeds: Sequence[str] | None = None) -> None:
        super().__init__(seeds=seeds)
        if type(n) is not int or not 1 <= n <= MAX_CIRCLES:
            raise EnvironmentLoadError(
                f"circle_packing option n must be an integer from 1 to {MAX_CIRCLES}; got {n!r}"
            )
        self.n = n

    def seeds(self) -> list[Program]:
        return self.select_seeds(seed_folder_programs(__package__, self.file_name))

    def sandbox_files(self) -> dict[str, str]:
        return self.packaged_harness(__package__, n=self.n)

    def score(self, result: Any) -> Score:
        try:
            centers, radii = _read_packing(result, self.n)
            _check_packing(centers, radii)
        except _Invalid as error:
            return Score.invalid(str(error))
        return Score.of(
            float(radii.sum()),
            (_radius_spread(radii), _wall_contact(centers, radii)),
            smallest_radius=float(radii.min()),
        )

    def verify(self, result: Any) -> str | None:
        try:
            centers, radii = _read_packing(result, self.n)
        except _Invalid as error:
            return str(error)
        return _exact_problem(centers.tolist(), radii.tolist())

    def render(self, result: Any, path: str) -> str | None:
        try:
            centers, radii = _read_packing(result, self.n)
        except _Invalid:
            return None
        from matplotlib.figure import Figure
        from matplotlib.patches import Circle, Rectangle

        figure = Figure(figsize=(4, 4))
        axes = figure.subplots()
        axes.add_patch(Rectangle((0, 0), 1, 1, fill=False, linewidth=1.5))
        for (x, y), r in zip(centers, np.maximum(radii, 0.0)):
            axes.add_patch(Circle((x, y), r, alpha=0.6, edgecolor="black"))
        axes.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
        axes.set_title(f"n = {self.n}, sum of radii = {radii.sum():.5f}")
        axes.axis("off")
        written = f"{path}.png"
        figure.savefig(written, dpi=100, bbox_inches="tight")
        return written


def _read_packing(result: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(result, dict):
        raise _Invalid(f"result must be an object with centers and radii, not {type(result).__name__}")
    centers = result.get("centers")
    if not isinstance(centers, list) or len(centers) != n:
        raise _Invalid(f"centers must be a list of {n} [x, y] pairs")
    flat: list[float] = []
    for index, pair in enumerate(centers):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _Invalid(f"centre {index} is not an [x, y] pair")
        flat.extend(_number(value, f"centre {index}") for value in pair)
    radii = result.get("radii")
    if not isinstance(radii, list) or len(radii) != n:
        raise _Invalid(f"radii must be a list of {n} numbers")
    return (
        np.array(flat, dtype=float).reshape(n, 2),
        np.array([_number(value, f"radius {i}") for i, value in enumerate(radii)], dtype=float),
    )


def _number(value: Any, what: str) -> float:
    if type(value) not in (int, float):
        raise _Invalid(f"{what} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise _Invalid(f"{what} is too large") from None
    if not math.isfinite(number):
        raise _Invalid(f"{what} is not finite")
    return number


def _check_packing(centers: np.ndarray, radii: np.ndarray) -> None:
    negative = np.flatnonzero(radii < 0)
    if negative.size:
        i = int(negative[0])
        raise _Invalid(f"circle {i} has a negative radius {radii[i]:.6g}")
    outside = np.concatenate([centers - radii[:, None], 1.0 - centers - radii[:, None]], axis=1)
    worst = int(np.argmin(outside.min(axis=1)))
    if outside[worst].min() < -TOLERANCE:
        raise _Invalid(f"circle {worst} sticks out of the square by {-outside[worst].min():.3g}")
    gaps = _pair_distances(centers) - (radii[:, None] + radii[None, :])
    np.fill_diagonal(gaps, np.inf)
    first, second = (int(k) for k in np.unravel_index(int(np.argmin(gaps)), gaps.shape))
    if gaps[first, second] < -TOLERANCE:
        raise _Invalid(f"circles {min(first, second)} and {max(first, second)} overlap by "
                       f"{-gaps[first, second]:.3g}")


def _exact_problem(centers: list[list[float]], radii: list[float]) -> str | None:
    """The first circle outside the square or pair overlapping, by any amount, or None. Pairs
    clearly apart in floating point (by more than 1e-6) are not worked out exactly."""
    exact = [(Fraction(x), Fraction(y), Fraction(r)) for (x, y), r in zip(centers, radii)]
    for i, (x, y, r) in enumerate(exact):
        if r < 0 or min(x - r, y - r, 1 - x - r, 1 - y - r) < 0:
            return f"circle {i} is not inside the unit square (exactly)"
    for i in range(len(exact)):
        for j in range(i):
            (xi, yi), (xj, yj) = centers[i], centers[j]
            if math.hypot(xi - xj, yi - yj) - radii[i] - radii[j] > 1e-6:
                continue
            (ai, bi, ri), (aj, bj, rj) = exact[i], exact[j]
            if (ai - aj) ** 2 + (bi - bj) ** 2 < (ri + rj) ** 2:
                return f"circles {j} and {i} overlap (exactly)"
    return None


def _pair_distances(centers: np.ndarray) -> np.ndarray:
    return np.linalg.norm(centers[:, None, :] - centers[None, :, :], axis=-1)


def _radius_spread(radii: np.ndarray) -> float:
    mean = radii.mean()
    if mean <= 0:
        return 0.0
    return float(min(radii.std() / mean, SPREAD_CAP))


def _wall_contact(centers: np.ndarray, radii: np.ndarray) -> float:
    gap_to_wall = np.minimum(centers, 1.0 - centers).min(axis=1) - radii
    return float(np.mean(gap_to_wall <= WALL_GAP))
