"""A run of paper size (2,000 iterations x 512 children = 1,024,000 candidates by default)
written through the real loop (null environment, in-memory null sandbox, about 2 KB of
source per program), then what a user does with it, each in its own process with its time
and peak memory measured: `elm resume` (to the first new iteration committed), the
`elm inspect` views and `elm report`.

Targets on 2 cores: resume <= 60 s, every inspect view <= 5 s, report <= 120 s and
<= 20 MB, peak memory of any of them <= 4 GiB."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from elm.bench import loop
from elm.errors import UserError
from elm.report import REPORT_FILE
from elm.store import STORE_FILE, RunStore

BATCH_SIZE = 512
SOURCE_BYTES = 2048


@dataclass(frozen=True)
class Timed:
    seconds: float
    peak_rss_mb: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidates", type=int, default=2000 * BATCH_SIZE,
                        help="candidates to write (default: %(default)s, the paper's run)")
    parser.add_argument("--keep", metavar="FOLDER",
                        help="write the run into FOLDER (must not exist) and keep it")


def run(args: argparse.Namespace) -> dict:
    if args.candidates < BATCH_SIZE:
        raise UserError(f"--candidates must be at least {BATCH_SIZE} (one iteration), got {args.candidates}")
    if args.keep is not None:
        if Path(args.keep).exists():
            raise UserError(f"--keep {args.keep}: the folder already exists")
        Path(args.keep).mkdir(parents=True)
        return measure(args.candidates, Path(args.keep))
    with tempfile.TemporaryDirectory(prefix="elm-bench-scale-") as run_dir:
        return measure(args.candidates, Path(run_dir))


def measure(candidates: int, run_dir: Path) -> dict:
    iterations = math.ceil((candidates - 1) / BATCH_SIZE)
    written = loop.measure(iterations, BATCH_SIZE, str(run_dir), source_bytes=SOURCE_BYTES)
    store_mb = _store_bytes(run_dir) / 1e6
    deepest, steps, middle, last = _targets(run_dir)
    views = {
        "summary": _timed(["inspect", str(run_dir)]),
        "top": _timed(["inspect", str(run_dir), "--top", "10"]),
        "lineage": _timed(["inspect", str(run_dir), "--lineage", str(deepest)]),
        "snapshot": _timed(["inspect", str(run_dir), "--snapshot", str(middle)]),
        "failures": _timed(["inspect", str(run_dir), "--failures"]),
    }
    report = _timed(["report", str(run_dir)])
    report_mb = (run_dir / REPORT_FILE).stat().st_size / 1e6
    # The run's config continues it with the null mutator, for one iteration; the time is
    # taken when that iteration is committed (the process then writes the report).
    store = RunStore.open(run_dir, readonly=True)
    try:
        resume = _timed(["resume", str(run_dir), f"run.iterations={last + 1}", "--quiet"],
                        done=lambda: (store.last_iteration() or 0) > last)
    finally:
        store.close()
    everything = [*views.values(), report, resume]
    return {
        "candidates": written["candidates"],
        "write_s": written["seconds"],
        "store_mb": round(store_mb, 1),
        "resume_s": resume.seconds,
        "inspect_s": max(v.seconds for v in views.values()),
        "inspect_views_s": {name: v.seconds for name, v in views.items()},
        "lineage_steps": steps,
        "report_s": report.seconds,
        "report_mb": round(report_mb, 2),
        "peak_rss_mb": max(t.peak_rss_mb for t in everything),
    }


def describe(result: dict) -> str:
    views = ", ".join(f"{name} {s} s" for name, s in result["inspect_views_s"].items())
    return (f"{result['candidates']} candidates written in {result['write_s']} s, store "
            f"{result['store_mb']} MB\n"
            f"resume to the first new iteration: {result['resume_s']} s (target <= 60)\n"
            f"inspect, slowest view: {result['inspect_s']} s (target <= 5): {views}; "
            f"lineage of {result['lineage_steps']} steps\n"
            f"report: {result['report_s']} s (target <= 120), report.html {result['report_mb']} MB "
            f"(target <= 20)\n"
            f"peak memory of any of them: {result['peak_rss_mb']} MB (target <= 4096)")


def _timed(arguments: list[str], done: Callable[[], bool] | None = None) -> Timed:
    """Run `elm ARGUMENTS` in a child process: its wall time (until `done()` holds, when
    given) and its peak resident memory (over the whole process)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "elm.cli", *arguments],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = None
    while True:
        polling = done is not None and seconds is None
        pid, status, usage = os.wait4(process.pid, os.WNOHANG if polling else 0)
        if pid:
            break
        if done is not None and done():
            seconds = time.perf_counter() - started
        else:
            time.sleep(0.05)
    seconds = time.perf_counter() - started if seconds is None else seconds
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"elm {' '.join(arguments)} failed ({process.returncode}): {errors[-2000:]}")
    return Timed(round(seconds, 2), round(usage.ru_maxrss / 1024, 1))  # ru_maxrss is in KiB


def _targets(run_dir: Path) -> tuple[int, int, int, int]:
    """The candidate with the longest lineage, its steps, the middle snapshot, the last iteration."""
    store = RunStore.open(run_dir, readonly=True)
    try:
        depth: dict[int, int] = {}
        for candidate_id, parent_id in store.lineage_links():
            depth[candidate_id] = 0 if parent_id is None else depth.get(parent_id, 0) + 1
        deepest = max(depth, key=lambda i: (depth[i], -i))
        snapshots = store.snapshot_iterations()
        last = store.last_iteration()
    finally:
        store.close()
    return deepest, depth[deepest] + 1, snapshots[len(snapshots) // 2], int(last or 0)


def _store_bytes(run_dir: Path) -> int:
    return sum(p.stat().st_size for p in run_dir.glob(f"{STORE_FILE}*"))
