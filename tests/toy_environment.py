"""A tiny environment for loop tests: a program returns a point; fitness is closeness to a
target, the descriptor is the point itself."""

from __future__ import annotations

import math
from typing import Any

from elm.environment import CommitMessage, DescriptorSpace, Dimension, Environment, Program, Score

SEED = '''\
def point():
    x = 1.5
    y = -0.5
    if x > y:
        x = x - 0.25
    return [x, y]
'''

BROKEN_SEED = '''\
def point():
    return "not a point"
'''


class Toy(Environment):
    name = "toy"
    file_name = "point.py"
    entry_point = "point"
    descriptor_space = DescriptorSpace((Dimension("x", -4.0, 4.0, 8), Dimension("y", -4.0, 4.0, 8)))
    commit_messages = (CommitMessage("Move the point.", 2.0), CommitMessage("Small change.", 1.0))
    qd_offset = -100.0

    def __init__(self, broken_seed: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.broken_seed = broken_seed

    def seeds(self) -> list[Program]:
        programs = [Program(self.file_name, SEED, "toy")]
        if self.broken_seed:
            programs.append(Program(self.file_name, BROKEN_SEED, "broken"))
        return self.select_seeds(programs)

    def score(self, result: Any) -> Score:
        if not isinstance(result, list) or len(result) != 2:
            return Score.invalid("point() must return [x, y]")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in result):
            return Score.invalid("coordinates must be numbers")
        x, y = (float(v) for v in result)
        if not (math.isfinite(x) and math.isfinite(y)):
            return Score.invalid("coordinates must be finite")
        return Score.of(-((x - 3.0) ** 2) - (y + 3.0) ** 2, (x, y))
