"""The toy environment with a scoring fault chosen by an option: every way a `score` can
go wrong, for the tests that make sure each one is a status, never a crash of the run."""

from __future__ import annotations

import math
from typing import Any

from elm.environment import Score
from tests.toy_environment import Toy

SEED_POINT = [1.25, -0.5]  # what the toy seed returns


def _point(result: Any) -> tuple[float, float]:
    x, y = result
    return float(x), float(y)


# fault name -> what `score` does with a result [x, y]
FAULTS = {
    "raises": lambda r: (_ for _ in ()).throw(ValueError("no score today")),
    "returns_none": lambda r: None,
    "nan_fitness": lambda r: Score.of(math.nan, _point(r)),
    "nan_fitness_built_by_hand": lambda r: Score(fitness=math.nan, descriptor=_point(r)),
    "no_fitness": lambda r: Score(),
    "invalid_without_reason": lambda r: Score.invalid(None),  # type: ignore[arg-type]
    "text_fitness": lambda r: Score(fitness="high", descriptor=_point(r)),  # type: ignore[arg-type]
    "short_descriptor": lambda r: Score.of(1.0, _point(r)[:1]),
    "long_descriptor": lambda r: Score.of(1.0, (*_point(r), 0.5)),
    "scalar_descriptor": lambda r: Score(fitness=1.0, descriptor=_point(r)[0]),  # type: ignore[arg-type]
    "no_descriptor": lambda r: Score(fitness=1.0),
    "infinite_descriptor": lambda r: Score(fitness=1.0, descriptor=(math.inf, 0.0)),
    "text_descriptor": lambda r: Score(fitness=1.0, descriptor=("left", "up")),  # type: ignore[arg-type]
    "extras_not_json": lambda r: Score.of(1.0, _point(r), handle=object()),
}


class Faulty(Toy):
    """`fault`: one of FAULTS, applied to every result of the right shape; `left_only`:
    only to points with x < 0; `spare_seed`: not to the seed's own point (either way some
    candidates score and the run goes on)."""

    name = "faulty"

    def __init__(self, fault: str = "", left_only: bool = False, spare_seed: bool = False,
                 **options: Any) -> None:
        super().__init__(**options)
        self.fault = FAULTS[fault] if fault else None
        self.left_only = left_only
        self.spare_seed = spare_seed

    def score(self, result: Any) -> Score:
        honest = super().score(result)
        spared = (self.left_only and result[0] >= 0) or (self.spare_seed and result == SEED_POINT)
        if self.fault is None or not honest.valid or spared:
            return honest
        return self.fault(result)
