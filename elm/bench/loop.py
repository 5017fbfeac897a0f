"""The loop's own overhead: a mutator that writes a new trivial program per child (none is
a duplicate, so every child reaches the sandbox), null environment, in-memory null sandbox,
store on."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from elm.archive import Archive
from elm.config import build_config
from elm.environment import DescriptorSpace, Dimension, Environment, Program, Score
from elm.evaluator import Evaluator
from elm.loop import EvolutionLoop
from elm.mutation import Child, InProcessMutator, MutationRequest
from elm.sandbox import Job, Outcome
from elm.store import RunStore


class _NullEnvironment(Environment):
    name = "null"
    descriptor_space = DescriptorSpace((Dimension("x", 0.0, 1.0, 32), Dimension("y", 0.0, 1.0, 32)))

    def seeds(self) -> list[Program]:
        return [Program(self.file_name, "def main():\n    return 0\n", "null")]

    def score(self, result: Any) -> Score:
        return Score.of(result["fitness"], result["descriptor"])


class _SerialMutator(InProcessMutator):
    """Child number k is `def main(): return k`: no mutation cost, never a duplicate."""

    name = "serial"

    def __init__(self) -> None:
        self._next = 0

    def propose(self, requests: Sequence[MutationRequest]) -> list[Child]:
        first, self._next = self._next, self._next + len(requests)
        return [Child(r.parent_id, f"def main():\n    return {first + i}\n", self.name,
                      commit_message=r.commit_message, diff="", stage="applied")
                for i, r in enumerate(requests)]


class _NullSandbox:
    """Answers every job at once with a random result: measures everything but execution."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def run_many(self, jobs: Sequence[Job]) -> list[Outcome]:
        values = self._rng.random((len(jobs), 3))
        return [Outcome("ok", 0.0, {"fitness": float(f), "descriptor": [float(x), float(y)]})
                for f, x, y in values]

    def close(self) -> None:
        pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=256)


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="elm-bench-loop-") as run_dir:
        return measure(args.iterations, args.batch_size, run_dir)


def measure(iterations: int, batch_size: int, run_dir: str) -> dict:
    """Run the null loop with its store in `run_dir` (an empty folder); return the figures."""
    config = build_config({
        "environment": {"name": "null"},
        "run": {"iterations": iterations, "batch_size": batch_size, "snapshot_every": 10},
        "mutation": {"operator": "null"},
        "sandbox": {"backend": "local"},
    })
    environment = _NullEnvironment()
    archive = Archive(environment.descriptor_space, config.archive)
    store = RunStore.create(run_dir, {"archive": archive.layout(), "environment": "null",
                                      "config": {"run": {"iterations": iterations}}})
    evaluator = Evaluator(environment, _NullSandbox(0), config.sandbox)
    loop = EvolutionLoop(config, environment, archive, _SerialMutator(), evaluator, store)
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
