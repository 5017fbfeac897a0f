"""The dashboard's cost: how long its pages take on a large store, and how much a page
polling every second slows the loop.

Pages: a synthetic run of --candidates candidates is written through the store's API (or
reused with --store), then `elm serve` answers what a browser asks for when it opens the
runs list and a run page (the page, its first poll, the archive, the best elite, its lineage,
its picture, the message statistics), each timed from a fresh server.

Loop: `elm bench loop`'s null loop runs alternately alone and watched by `elm serve` in
another process with a poller that asks what an open run page asks, every second; the
ratio of the median rates is the slowdown.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from elm.bench import loop as loop_bench
from elm.records import CandidateRecord, PlacementOutcome, SnapshotRow, Stage, Status
from elm.store import STORE_FILE, IterationMetrics, RunStore

_GRID = (32, 32)
_MESSAGES = ("Fix bugs", "Make the walker faster", "Add a joint", "Change the muscle phases",
             "Simplify", "Make it taller", "Make it wider", "Refactor the builder")
_SOURCE = "def main():\n    # candidate {id}\n    return {{'x': {x:.4f}, 'y': {y:.4f}, 'f': {f:.4f}}}\n"
_RUN_NAME = "large"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidates", type=int, default=1_000_000, help="size of the synthetic run")
    parser.add_argument("--store", help="keep (or reuse) the synthetic run in this folder")
    parser.add_argument("--loop-iterations", type=int, default=400,
                        help="iterations of each loop trial (long enough for a page polling every second to matter)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size of the loop trials")
    parser.add_argument("--trials", type=int, default=3, help="loop trials alone and watched, each")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--skip-loop", action="store_true")


def run(args: argparse.Namespace) -> dict:
    result: dict[str, Any] = {}
    if not args.skip_pages:
        result["pages"] = _page_times(args)
    if not args.skip_loop:
        result["loop"] = _loop_slowdown(args)
    return result


def describe(result: dict) -> str:
    lines = []
    if "pages" in result:
        pages = result["pages"]
        lines.append(f"pages on a store of {pages['candidates']} candidates "
                     f"({pages['store_mb']} MB), seconds from a fresh server (goal < 2 s each):")
        lines += [f"  {name:<28} {seconds:.3f}" for name, seconds in pages["seconds"].items()]
        lines.append(f"  {'a run page, all it asks':<28} {pages['run_page_total_s']:.3f}")
        lines.append(f"  (message statistics: the slowest of {pages['message_calls_to_count_all']} calls "
                     f"that count the whole run; lineage of {pages['lineage_steps']} steps)")
    if "loop" in result:
        loop = result["loop"]
        lines.append(f"loop: {loop['alone_per_s']:.0f} candidates/s alone, {loop['watched_per_s']:.0f} "
                     f"watched by a page polling every second ({loop['polls']} polls): "
                     f"slowdown {loop['slowdown']:.1%} (goal <= 5%); the dashboard used "
                     f"{loop['dashboard_cpu_share']:.1%} of a core meanwhile")
    return "\n".join(lines)


# -- pages on a large store ---------------------------------------------------------------------


def _page_times(args: argparse.Namespace) -> dict[str, Any]:
    from elm.serve import Dashboard

    with tempfile.TemporaryDirectory(prefix="elm-bench-serve-") as scratch:
        folder = Path(args.store) if args.store else Path(scratch)
        run_dir = folder / _RUN_NAME
        if not (run_dir / STORE_FILE).is_file():
            write_large_run(run_dir, args.candidates)
        store = RunStore.open(run_dir, readonly=True)
        candidates = store.next_candidate_id()
        store.close()
        api = f"api/runs/{_RUN_NAME}"
        seconds: dict[str, float] = {}
        with Dashboard(folder, port=0) as dashboard:
            seconds["runs list page"] = _get_time(dashboard.url)
            seconds["runs list data"] = _get_time(dashboard.url + "api/runs")
        with Dashboard(folder, port=0) as dashboard:  # a fresh server: nothing cached
            seconds["run page"] = _get_time(dashboard.url + f"runs/{_RUN_NAME}/")
            seconds["first poll (all metrics)"] = _get_time(dashboard.url + f"{api}/live")
            last = _get(dashboard.url + f"{api}/live")["last_iteration"]
            seconds["next poll"] = _get_time(dashboard.url + f"{api}/live?metrics_after={last}")
            started = time.perf_counter()
            archive = _get(dashboard.url + f"{api}/archive")
            seconds["archive"] = time.perf_counter() - started
            best = archive["elites"][0]["candidate_id"]
            seconds["best elite"] = _get_time(dashboard.url + f"{api}/candidates/{best}")
            started = time.perf_counter()
            lineage = _get(dashboard.url + f"{api}/candidates/{best}/lineage")
            seconds["its lineage"] = time.perf_counter() - started
            slowest, message_calls = _messages_time(dashboard.url + f"{api}/messages")
            seconds["message statistics (slowest call)"] = slowest
            snapshots = _get(dashboard.url + f"{api}/live")["snapshots"]
            seconds["a snapshot"] = _get_time(dashboard.url + f"{api}/archive?snapshot={snapshots[0]}")
        page_parts = ("run page", "first poll (all metrics)", "archive", "best elite", "its lineage")
        return {
            "candidates": candidates,
            "store_mb": round((run_dir / STORE_FILE).stat().st_size / 2**20, 1),
            "lineage_steps": len(lineage["steps"]),
            "message_calls_to_count_all": message_calls,
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "run_page_total_s": round(sum(seconds[k] for k in page_parts), 3),
        }


def write_large_run(run_dir: Path, candidates: int, batch: int = 1000, snapshot_every: int = 10) -> None:
    """A synthetic run written through the store's API: toy programs on a 32x32 grid, each
    the child of an elite, so lineages run back to the seed across the whole run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    iterations = max(candidates // batch - 1, 0)
    cells = _GRID[0] * _GRID[1]
    layout = {"kind": "grid", "names": ["x", "y"], "ranges": [[0.0, 1.0], [0.0, 1.0]], "cells": cells,
              "bins": list(_GRID), "centroids": None}
    store = RunStore.create(run_dir, {"archive": layout, "environment": "synthetic", "qd_offset": 0.0,
                                      "config": {"run": {"iterations": iterations}}, "created_at": time.time()})
    rng = np.random.default_rng(0)
    elites: dict[int, tuple[float, int, list[float]]] = {}
    sources: dict[int, str] = {}
    next_id = 0
    try:
        for iteration in range(iterations + 1):
            records = _large_batch(rng, iteration, next_id, batch, elites, sources)
            placed = Counter(r.placement for r in records)
            metrics = IterationMetrics(
                iteration=iteration, wall_s=0.5, candidates=len(records), coverage=len(elites) / cells,
                qd_score=sum(f for f, _, _ in elites.values()), num_elites=len(elites),
                max_fitness=max(f for f, _, _ in elites.values()),
                mean_fitness=sum(f for f, _, _ in elites.values()) / len(elites),
                evals_per_s=len(records) / 0.5, statuses=dict(Counter(r.status for r in records)),
                funnel={Stage.GENERATED: len(records),
                        Stage.PLACED: placed[PlacementOutcome.NEW] + placed[PlacementOutcome.IMPROVED]})
            snapshot = None
            if iteration % snapshot_every == 0 or iteration == iterations:
                snapshot = [SnapshotRow(n, c, f, tuple(d)) for n, (f, c, d) in sorted(elites.items())]
            store.record_iteration(records, metrics, snapshot)
            next_id += len(records)
    finally:
        store.close()


def _large_batch(rng: np.random.Generator, iteration: int, first_id: int, count: int,
                 elites: dict[int, tuple[float, int, list[float]]], sources: dict[int, str]) -> list[CandidateRecord]:
    values = rng.random((count, 3))
    holders = [c for _, c, _ in elites.values()]
    records = []
    for offset, (x, y, f) in enumerate(values):
        candidate_id = first_id + offset
        parent = None if not holders else holders[int(rng.integers(len(holders)))]
        source = _SOURCE.format(id=candidate_id, x=x, y=y, f=f)
        ok = parent is None or rng.random() < 0.7
        record = CandidateRecord(
            id=candidate_id, iteration=iteration, parent_id=parent, operator="seed" if parent is None else "gp",
            file_name="program.py", source=source, stage=Stage.SCORED if ok else Stage.RAN,
            status=Status.OK if ok else Status.ERROR, error=None if ok else "Traceback: ValueError",
            commit_message=_MESSAGES[candidate_id % len(_MESSAGES)],
            diff=None if parent is None else _diff(sources[parent], source),
        )
        if ok:
            niche = int(min(x * _GRID[0], _GRID[0] - 1)) * _GRID[1] + int(min(y * _GRID[1], _GRID[1] - 1))
            held = elites.get(niche)
            record.fitness, record.descriptor, record.niche = float(f), [float(x), float(y)], niche
            record.placement = PlacementOutcome.NOT_ADDED
            if held is None or f > held[0]:
                record.placement = PlacementOutcome.NEW if held is None else PlacementOutcome.IMPROVED
                record.stage = Stage.PLACED
                elites[niche] = (float(f), candidate_id, [float(x), float(y)])
                sources[candidate_id] = source
        records.append(record)
    return records


def _diff(old: str, new: str) -> str:
    """The unified diff of two toy sources, which differ in all but their first line
    (difflib would take most of the time of writing a million of them)."""
    head, *old_rest = old.splitlines(True)
    _, *new_rest = new.splitlines(True)
    return ("--- a/program.py\n+++ b/program.py\n@@ -1,3 +1,3 @@\n " + head
            + "".join("-" + line for line in old_rest) + "".join("+" + line for line in new_rest))


# -- the loop, alone and watched -------------------------------------------------------------------


def _loop_slowdown(args: argparse.Namespace) -> dict[str, Any]:
    alone, watched, polls = [], [], 0
    watched_s = dashboard_cpu_s = 0.0
    with tempfile.TemporaryDirectory(prefix="elm-bench-serve-loop-") as scratch:
        folder = Path(scratch)
        for trial in range(args.trials):
            if trial % 2 == 0:  # alone first, then watched, then the other way round
                alone.append(_loop_trial(args, folder / f"alone-{trial}")["candidates_per_s"])
            run_dir = folder / f"watched-{trial}"
            run_dir.mkdir()
            context = multiprocessing.get_context("spawn")
            stop = context.Event()
            counter = context.Value("i", 0)
            cpu_s = context.Value("d", 0.0)
            dashboard = context.Process(target=_serve_and_poll,
                                        args=(str(folder), run_dir.name, stop, counter, cpu_s))
            dashboard.start()
            try:
                while counter.value == 0:  # the poller has seen the (empty) run
                    time.sleep(0.05)
                figures = loop_bench.measure(args.loop_iterations, args.batch_size, str(run_dir))
                watched.append(figures["candidates_per_s"])
                watched_s += figures["seconds"]
            finally:
                stop.set()
                dashboard.join(30)
                if dashboard.is_alive():
                    dashboard.kill()
            polls += counter.value
            dashboard_cpu_s += cpu_s.value
            if trial % 2 == 1:
                alone.append(_loop_trial(args, folder / f"alone-{trial}")["candidates_per_s"])
    alone_rate, watched_rate = statistics.median(alone), statistics.median(watched)
    return {"alone_per_s": alone_rate, "watched_per_s": watched_rate, "trials": args.trials,
            "alone": alone, "watched": watched, "polls": polls,
            "dashboard_cpu_share": round(dashboard_cpu_s / watched_s, 4),
            "slowdown": round(1 - watched_rate / alone_rate, 4)}


def _loop_trial(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    run_dir.mkdir()
    return loop_bench.measure(args.loop_iterations, args.batch_size, str(run_dir))


def _serve_and_poll(folder: str, name: str, stop: Any, counter: Any, cpu_s: Any) -> None:
    """In its own process: `elm serve` on the folder, and a poller asking every second what
    an open run page asks (the poll; the archive and its best elite when an iteration landed;
    the message statistics every fifth poll)."""
    from elm.serve import Dashboard

    with Dashboard(folder, port=0) as dashboard:
        api = f"{dashboard.url}api/runs/{name}"
        last_metric, last_event, seen = None, None, object()
        polls, cpu_at_start = 0, None
        while not stop.is_set():
            started = time.perf_counter()
            if name not in [run["name"] for run in _get(f"{dashboard.url}api/runs")["runs"]]:
                pass  # the runs list, until the run appears
            else:
                if cpu_at_start is None:  # the loop has started: count what serving it costs
                    cpu_at_start = time.process_time()
                query = f"metrics_after={'' if last_metric is None else last_metric}&events_after={last_event or ''}"
                live = _get(f"{api}/live?{query}")
                if live["metrics"]:
                    last_metric = live["metrics"][-1]["iteration"]
                if live["events"]:
                    last_event = live["events"][-1]["id"]
                if live["last_iteration"] != seen:
                    seen = live["last_iteration"]
                    archive = _get(f"{api}/archive")
                    if archive["elites"]:
                        _get(f"{api}/candidates/{archive['elites'][0]['candidate_id']}")
                if polls % 5 == 0:
                    _get(f"{api}/messages")
            polls += 1
            counter.value = polls
            stop.wait(max(0.0, 1.0 - (time.perf_counter() - started)))
        if cpu_at_start is not None:
            cpu_s.value = time.process_time() - cpu_at_start


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def _messages_time(url: str) -> tuple[float, int]:
    """The slowest of the calls that count the message statistics of the whole run (each
    counts for a bounded time), and how many calls that took."""
    slowest, calls = 0.0, 0
    while True:
        started = time.perf_counter()
        data = _get(url)
        slowest, calls = max(slowest, time.perf_counter() - started), calls + 1
        if data["counted"] >= data["candidates"]:
            return slowest, calls


def _get_time(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    return time.perf_counter() - started
