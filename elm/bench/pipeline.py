"""Generation overlapped with evaluation: the pipelined loop against the sequential one.

Both use the real loop (EvolutionLoop), the real Ray mutator (one DiffWorker holding a
tiny random-weight CodeGen, 1 CPU) and the real local sandbox backend (runner processes).
The sequential loop keeps one batch in flight (`workers.in_flight=1`), so the worker and
the sandbox take turns; the pipelined loop keeps `--in-flight` batches in flight. Each
runs `--repeats` times, alternated, and the fastest run of each counts.

Costs are made comparable: the harness spends a fixed time per candidate, calibrated so
evaluating a batch takes as long as generating one. That time is CPU work (`--eval-mode
burn`, the default; on a small machine the two stages then compete for cores) or a wait
(`sleep`, as when candidates run on cores or machines the model does not use). With
random weights almost no diff applies, and a child without a program is never evaluated,
so a child whose diff did not apply is evaluated as its parent's program plus a numbered
no-op line, which keeps it from being reused as an unchanged copy (marked `bench_source:
parent`): evaluation costs what it would with a trained model.

The sequential run splits into its two stages: the time the loop waited for the worker
(generation) and the rest (evaluation, placement, storing); `slower_stage_s` is the
larger. Goal: pipelined_s <= 1.2 x slower_stage_s.
"""

from __future__ import annotations

import argparse
import itertools
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from elm.archive import Archive
from elm.config import ElmConfig, build_config
from elm.environment import CommitMessage, DescriptorSpace, Dimension, Environment, Program, Score
from elm.errors import UserError
from elm.evaluator import Evaluator
from elm.loop import EvolutionLoop
from elm.mutation import MutationRequest, Mutator, MutatorWrapper
from elm.records import Child, Stage
from elm.sandbox import Sandbox, open_sandbox
from elm.store import RunStore

GOAL_RATIO = 1.2

_SEED = '''\
def point():
    x = 1.5
    y = -0.5
    if x > y:
        x = x - 0.25
    return [x, y]
'''

_HARNESS = '''\
import importlib
import time


def main():
    deadline = time.perf_counter() + {seconds!r}
    result = importlib.import_module("point").point()
    {wait}
    return result
'''
# How a candidate's evaluation spends its time: on a CPU, or waiting (as when candidates
# run on cores or machines that the model does not use).
_WAITS = {
    "burn": "while time.perf_counter() < deadline:\n        pass",
    "sleep": "time.sleep(max(deadline - time.perf_counter(), 0.0))",
}


class _TimedEnvironment(Environment):
    """The toy point environment whose harness spends a set time per candidate."""

    name = "bench-pipeline"
    file_name = "point.py"
    entry_point = "point"
    descriptor_space = DescriptorSpace((Dimension("x", -4.0, 4.0, 8), Dimension("y", -4.0, 4.0, 8)))
    commit_messages = (CommitMessage("Move the point.", 2.0), CommitMessage("Small change.", 1.0))
    qd_offset = -100.0

    def __init__(self, mode: str = "burn") -> None:
        super().__init__()
        self.mode = mode
        self.candidate_s = 0.0

    def seeds(self) -> list[Program]:
        return [Program(self.file_name, _SEED, "point")]

    def sandbox_files(self) -> dict[str, str]:
        return {self.harness: _HARNESS.format(seconds=self.candidate_s, wait=_WAITS[self.mode])}

    def score(self, result: Any) -> Score:
        if not isinstance(result, list) or len(result) != 2:
            return Score.invalid("point() must return [x, y]")
        try:
            x, y = (float(value) for value in result)
        except (TypeError, ValueError):
            return Score.invalid("coordinates must be numbers")
        return Score.of(-((x - 3.0) ** 2) - (y + 3.0) ** 2, (x, y))


class _ParentWhenUnapplied(MutatorWrapper):
    """Wraps the Ray mutator: a child whose diff did not apply carries its parent's program."""

    def __init__(self, mutator: Mutator) -> None:
        super().__init__(mutator)
        self._serial = itertools.count()

    def submit(self, requests: Sequence[MutationRequest]) -> Any:
        return self.mutator.submit(requests), {r.parent_id: r.source for r in requests}

    def collect(self, ticket: Any) -> list[Child]:
        inner, sources = ticket
        children = self.mutator.collect(inner)
        for child in children:
            if child.source is None and child.parent_id in sources:
                source = f"{sources[child.parent_id]}\n_BENCH_CHILD = {next(self._serial)}\n"
                child.source, child.stage, child.error = source, Stage.APPLIED, None
                child.extras["bench_source"] = "parent"
        return children

    def close(self) -> None:
        pass  # the wrapped mutator serves both loops and is closed once, after them


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=48, help="tokens sampled per child at most")
    parser.add_argument("--layers", type=int, default=2, help="blocks of the tiny CodeGen")
    parser.add_argument("--in-flight", type=int, default=2, help="batches in flight in the pipelined run")
    parser.add_argument("--pool-size", type=int, default=1, help="local sandbox runners")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each loop, alternated; the fastest counts")
    parser.add_argument("--eval-ms", type=float, default=None,
                        help="time spent per candidate (default: calibrated to the generation time)")
    parser.add_argument("--eval-mode", choices=sorted(_WAITS), default="burn",
                        help="burn: the time is CPU work; sleep: a wait that leaves the CPU to the model")


def run(args: argparse.Namespace) -> dict:
    if min(args.iterations, args.batch_size, args.new_tokens, args.layers, args.in_flight, args.pool_size,
           args.repeats) <= 0:
        raise UserError("--iterations, --batch-size, --new-tokens, --layers, --in-flight, --pool-size and "
                        "--repeats must be positive")
    from elm.mutation.workers import open_diff_mutator

    environment = _TimedEnvironment(args.eval_mode)
    with tempfile.TemporaryDirectory(prefix="elm-bench-pipeline-") as folder:
        model = _tiny_codegen(Path(folder) / "model", args.layers)
        config = _config(args, model, in_flight=1)
        sandbox = open_sandbox(config.sandbox)
        try:
            mutator = _ParentWhenUnapplied(open_diff_mutator(config))
            try:
                environment.candidate_s = _candidate_seconds(args, mutator, sandbox, environment)
                pipelined_config = _config(args, model, in_flight=args.in_flight)
                sequential, pipelined = [], []
                for repeat in range(args.repeats):  # alternated, so a busy spell hits both
                    sequential.append(_timed_run(config, environment, mutator, sandbox,
                                                 Path(folder) / f"sequential-{repeat}"))
                    pipelined.append(_timed_run(pipelined_config, environment, mutator, sandbox,
                                                Path(folder) / f"pipelined-{repeat}"))
            finally:
                mutator.mutator.close()
        finally:
            sandbox.close()
    return _figures(args, environment, sequential, pipelined)


def describe(result: dict) -> str:
    verdict = "meets" if result["ratio"] <= GOAL_RATIO else "misses"
    return "\n".join([
        f"pipeline: {result['iterations']} iterations x {result['batch_size']} children, 1 Ray diff worker "
        f"(tiny CodeGen, CPU), local sandbox with {result['pool_size']} runner(s), "
        f"{result['eval_ms']:.1f} ms per candidate ({result['eval_mode']})",
        f"  sequential (in_flight=1)     {result['sequential_s']:8.2f} s  "
        f"(generation {result['generation_s']:.2f} s + evaluation {result['evaluation_s']:.2f} s)",
        f"  pipelined (in_flight={result['in_flight']})     {result['pipelined_s']:8.2f} s  "
        f"(worker busy {result['generation_busy']:.0%}, evaluation busy {result['evaluation_busy']:.0%})",
        f"  slower stage alone           {result['slower_stage_s']:8.2f} s",
        f"  pipelined / slower stage     {result['ratio']:8.2f}x  ({verdict} the goal <= {GOAL_RATIO}x); "
        f"speedup over sequential {result['speedup']:.2f}x",
        f"  (fastest of {len(result['sequential_runs_s'])} alternated runs each: sequential "
        f"{result['sequential_runs_s']} s, pipelined {result['pipelined_runs_s']} s)",
    ])


def _config(args: argparse.Namespace, model: Path, in_flight: int) -> ElmConfig:
    return build_config({
        "run": {"iterations": args.iterations, "batch_size": args.batch_size, "seed": 0, "snapshot_every": 10},
        "environment": {"name": _TimedEnvironment.name},
        "mutation": {"operator": "diff", "model": str(model), "max_new_tokens": args.new_tokens},
        "workers": {"num_actors": 1, "num_cpus": 1, "num_gpus": 0, "in_flight": in_flight},
        "sandbox": {"backend": "local", "pool_size": args.pool_size, "timeout_s": 30},
    })


def _tiny_codegen(folder: Path, layers: int) -> Path:
    from transformers.utils import logging as transformers_logging

    from elm.mutation.scratch_model import build_tiny_codegen

    transformers_logging.disable_progress_bar()
    try:
        return build_tiny_codegen(folder, layers=layers)
    finally:
        transformers_logging.enable_progress_bar()


def _candidate_seconds(args: argparse.Namespace, mutator: _ParentWhenUnapplied, sandbox: Sandbox,
                       environment: _TimedEnvironment) -> float:
    """The time per candidate that makes a batch's evaluation as long as its generation."""
    if args.eval_ms is not None:
        return args.eval_ms / 1000.0
    requests = [MutationRequest(0, environment.file_name, _SEED, message.text, seed)
                for seed, message in zip(range(args.batch_size), _cycle(environment.commit_messages))]
    generation_s = min(_timed(lambda: mutator.collect(mutator.submit(requests))) for _ in range(3))
    evaluator = Evaluator(environment, sandbox, _config(args, Path("."), 1).sandbox)
    jobs = [evaluator.job_for(_SEED) for _ in requests]
    overhead_s = min(_timed(lambda: sandbox.run_many(jobs)) for _ in range(3))
    rounds = math.ceil(args.batch_size / args.pool_size)
    return max(generation_s - overhead_s, 0.0) / rounds


def _timed_run(config: ElmConfig, environment: _TimedEnvironment, mutator: _ParentWhenUnapplied,
               sandbox: Sandbox, run_dir: Path) -> dict:
    archive = Archive(environment.descriptor_space, config.archive, qd_offset=environment.qd_offset)
    run_dir.mkdir(parents=True)
    store = RunStore.create(run_dir, {"archive": archive.layout()})
    try:
        evaluator = Evaluator(environment, sandbox, config.sandbox)
        loop = EvolutionLoop(config, environment, archive, mutator, evaluator, store)
        started = time.perf_counter()
        try:
            loop.run()
        except RuntimeError as error:  # no valid seed: say what became of it
            seeds = [f"{r.status}: {r.error}" for r in store.candidates(iteration=0)]
            raise RuntimeError(f"{error}; seed outcome: {'; '.join(seeds)}") from None
        wall_s = time.perf_counter() - started
        records = list(store.candidates())
    finally:
        store.close()
    waits: dict[int, float] = {}
    for record in records:
        if "collect_wait_s" in record.timings:
            waits[record.iteration] = record.timings["collect_wait_s"]
    return {
        "wall_s": wall_s,
        "collect_wait_s": sum(waits.values()),
        "worker_s": sum(record.timings.get("worker_s", 0.0) for record in records),
        "candidates": len(records),
        "evaluated": sum("sandbox_s" in record.timings for record in records),
    }


def _figures(args: argparse.Namespace, environment: _TimedEnvironment, sequential_runs: list[dict],
             pipelined_runs: list[dict]) -> dict:
    """Figures of the fastest run of each kind (the one least disturbed by other work)."""
    sequential = min(sequential_runs, key=lambda run: run["wall_s"])
    pipelined = min(pipelined_runs, key=lambda run: run["wall_s"])
    generation_s = sequential["collect_wait_s"]
    evaluation_s = sequential["wall_s"] - generation_s
    slower_stage_s = max(generation_s, evaluation_s)
    pipelined_s = pipelined["wall_s"]
    return {
        "sequential_s": round(sequential["wall_s"], 3),
        "pipelined_s": round(pipelined_s, 3),
        "slower_stage_s": round(slower_stage_s, 3),
        "generation_s": round(generation_s, 3),
        "evaluation_s": round(evaluation_s, 3),
        "ratio": round(pipelined_s / slower_stage_s, 3),
        "speedup": round(sequential["wall_s"] / pipelined_s, 3),
        "generation_busy": round(pipelined["worker_s"] / pipelined_s, 3),
        "evaluation_busy": round((pipelined_s - pipelined["collect_wait_s"]) / pipelined_s, 3),
        "eval_ms": round(environment.candidate_s * 1000, 2),
        "eval_mode": environment.mode,
        "candidates": pipelined["candidates"],
        "evaluated": pipelined["evaluated"],
        "sequential_runs_s": [round(run["wall_s"], 3) for run in sequential_runs],
        "pipelined_runs_s": [round(run["wall_s"], 3) for run in pipelined_runs],
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "in_flight": args.in_flight,
        "pool_size": args.pool_size,
        "sandbox_backend": "local",
    }


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _cycle(messages: Sequence[CommitMessage]):
    while True:
        yield from messages
