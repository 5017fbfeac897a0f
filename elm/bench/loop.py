"""The loop's own overhead: a mutator that writes a new trivial program per child (none is
a duplicate, so every child reaches the sandbox), null environment, in-memory null sandbox,
store on."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from elm.archive import Archive
from elm.config import build_config, config_to_yaml
from elm.environment import DescriptorSpace, Dimension, Environment, Program, Score
from elm.evaluator import Evaluator
from elm.experiment import CONFIG_FILE, run_meta
from elm.loop import EvolutionLoop
from elm.mutation import InProcessMutator, MutationRequest
from elm.records import Child, Stage
from elm.sandbox import Job, Outcome
from elm.store import RunStore

NULL_ENVIRONMENT = "elm.bench.loop:NullEnvironment"


class NullEnvironment(Environment):
    """Scores the result the null sandbox makes up; loadable by a run as
    `elm.bench.loop:NullEnvironment`, so `elm resume` can continue a bench run."""

    name = "null"
    descriptor_space = DescriptorSpace((Dimension("x", 0.0, 1.0, 32), Dimension("y", 0.0, 1.0, 32)))

    def seeds(self) -> list[Program]:
        return [Program(self.file_name, "def main():\n    return 0\n", "null")]

    def score(self, result: Any) -> Score:
        return Score.of(result["fitness"], result["descriptor"])


class SerialMutator(InProcessMutator):
    """Child number k is `def main(): return k`, padded to about `source_bytes` of source
    (see `_padding`): no mutation cost, never a duplicate."""

    name = "serial"

    def __init__(self, source_bytes: int = 0) -> None:
        self._next = 0
        self._padding = _padding(source_bytes)

    def propose(self, requests: Sequence[MutationRequest]) -> list[Child]:
        first, self._next = self._next, self._next + len(requests)
        return [Child(r.parent_id, f"{self._padding}def main():\n    return {first + i}\n", self.name,
                      commit_message=r.commit_message, diff="", stage=Stage.APPLIED)
                for i, r in enumerate(requests)]


def _padding(source_bytes: int) -> str:
    """About `source_bytes` of Python source put before each program's own `main`: a module
    docstring of repeated lines (most of the bytes) and three helper functions, the same in
    every program. Each program is still compiled whole by the evaluator's check and stored
    whole; the duplicate index parses only its top-level statements it has not seen before
    (here `main`, in a diff's child what the diff changed: elm/duplicates.py). A docstring
    is stored, shown and reported like code but compiles fast, which keeps writing a
    million programs to minutes (compiling 2 KB of statements costs about 4 ms a program)."""
    if source_bytes <= 0:
        return ""
    helpers = "".join(f"def helper_{n}(x, y):\n    total = x * {n + 1} + y\n"
                      f"    if total > {n * 7}:\n        total -= {n}\n    return total\n\n\n"
                      for n in range(3))
    line = "    The program keeps a running total and returns its position in the search.\n"
    lines = max(source_bytes - len(helpers) - 8, 0) // len(line)
    return f'"""A candidate program.\n\n{line * lines}"""\n\n\n{helpers}'


class _NullSandbox:
    """Answers every job at once with a random result: measures everything but execution."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def run_many(self, jobs: Sequence[Job]) -> list[Outcome]:
        values = self._rng.random((len(jobs), 3))
        return [Outcome("ok", 0.0, {"fitness": float(f), "descriptor": [float(x), float(y)]})
                for f, x, y in values]

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        return []

    def close(self) -> None:
        pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=256)


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="elm-bench-loop-") as run_dir:
        return measure(args.iterations, args.batch_size, run_dir)


def measure(iterations: int, batch_size: int, run_dir: str, source_bytes: int = 0) -> dict:
    """Run the null loop with its store in `run_dir` (an empty folder); return the figures.
    The folder is a run folder like any other: `elm inspect`, `elm report` and `elm resume`
    (with the null mutator) work on it."""
    config = build_config({
        "environment": {"name": NULL_ENVIRONMENT},
        "run": {"iterations": iterations, "batch_size": batch_size, "snapshot_every": 10},
        "mutation": {"operator": "null"},
        "sandbox": {"backend": "local"},
    })
    environment = NullEnvironment()
    archive = Archive(environment.descriptor_space, config.archive, seed=config.run.seed)
    (Path(run_dir) / CONFIG_FILE).write_text(config_to_yaml(config))
    store = RunStore.create(run_dir, run_meta(config, environment, archive))
    evaluator = Evaluator(environment, _NullSandbox(0), config.sandbox)
    loop = EvolutionLoop(config, environment, archive, SerialMutator(source_bytes), evaluator, store)
    started = time.perf_counter()
    loop.run()
    elapsed = time.perf_counter() - started
    candidates = sum(m.candidates for m in store.metrics())
    store.close()
    return {
        "candidates": candidates,
        "seconds": round(elapsed, 3),
        "candidates_per_s": round(candidates / elapsed, 1),
        "coverage": archive.stats().coverage,
    }


def describe(result: dict) -> str:
    return (f"loop overhead: {result['candidates']} candidates in {result['seconds']} s = "
            f"{result['candidates_per_s']:.0f} candidates/s (goal >= 2000); "
            f"coverage {result['coverage']:.1%}")
