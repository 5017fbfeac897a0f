"""One run as the dashboard sees it: read-only, a little at a time, while the loop writes.

A `RunWatch` keeps one read-only connection to the run's store and remembers what it has
read (the metrics rows, the message counts, the archive of the last iteration), so each
poll reads only what the loop committed since the previous one. Every read is a short
autocommit query fully fetched at once: the writer never waits for the dashboard.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from elm.errors import UserError
from elm.records import FUNNEL, CandidateRecord, SnapshotRow, Status
from elm.report.renders import render_candidates
from elm.report.run import ArchiveLayout
from elm.report.views import candidate_dict, progress_text, seed_funnel_text
from elm.store import STORE_FILE, IterationMetrics, RunStore

METRICS_PAGE = 5000
EVENTS_PAGE = 200
LINEAGE_LIMIT = 5000
MESSAGES_CHUNK = 50_000
MESSAGES_BUDGET_S = 0.3
_PICTURES_KEPT = 64
_EXTRAS_LIMIT = 4096
# A run that is not finished counts as running while its store changed this recently.
_RUNNING_FOR_S = 60.0


class RunWatch:
    """Live, paged views of one run folder. Thread-safe: the web server calls it from a pool."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir
        self.name = run_dir.resolve().name
        self._store = RunStore.open(run_dir, readonly=True)
        self._lock = threading.RLock()
        self._metrics: list[IterationMetrics] = []
        self._archive: tuple[int | None, list[SnapshotRow]] | None = None
        self._messages: dict[str | None, Counter[str]] = {}
        self._messages_read_to: int | None = None
        self._pictures: dict[int, str | None] = {}
        self._layout: ArchiveLayout | None = None

    @property
    def layout(self) -> ArchiveLayout | None:
        """The archive's shape, once the run's meta data holds it (a new run writes it first)."""
        with self._lock:
            if self._layout is None:
                layout = self._store.meta().get("archive")
                if isinstance(layout, dict):
                    self._layout = ArchiveLayout.from_meta(layout)
        return self._layout

    def close(self) -> None:
        with self._lock:
            self._store.close()

    # -- the run at a glance ------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """The line of the runs list: progress and the latest iteration's figures."""
        with self._lock:
            meta = self._store.meta()
            latest = self._store.latest_metrics()
        last = latest.iteration if latest else None
        configured = _configured_iterations(meta)
        state = self._state(last, configured, latest)
        return {
            "name": self.name,
            "environment": meta.get("environment"),
            "last_iteration": last,
            "configured_iterations": configured,
            "progress": _progress(last, configured),
            "state": state,
            "coverage": latest.coverage if latest else None,
            "qd_score": latest.qd_score if latest else None,
            "max_fitness": latest.max_fitness if latest else None,
            "evals_per_s": latest.evals_per_s if latest else None,
        }

    def live(self, metrics_after: int | None, events_after: int | None) -> dict[str, Any]:
        """What a run page polls: the overview, totals, and the metrics and events it lacks."""
        with self._lock:
            self._read_new_metrics()
            metrics = [_metrics_dict(m) for m in self._metrics
                       if metrics_after is None or m.iteration > metrics_after][:METRICS_PAGE]
            events = self._store.events_after(events_after, EVENTS_PAGE)
            snapshots = self._store.snapshot_iterations()
            totals = self._totals()
        return {**self.overview(), **totals, "metrics": metrics, "events": _json_safe(events),
                "snapshots": snapshots}

    # -- the archive ----------------------------------------------------------------------------

    def archive(self, snapshot: int | None) -> dict[str, Any]:
        """The current archive (rebuilt once per committed iteration) or a stored snapshot."""
        iteration: int | None
        with self._lock:
            if snapshot is not None:
                if snapshot not in self._store.snapshot_iterations():
                    raise UserError(f"no snapshot at iteration {snapshot}")
                iteration, rows = snapshot, self._store.snapshot(snapshot)
                label = f"snapshot at iteration {snapshot}"
            else:
                (iteration, rows), label = self._current_elites(), "current archive"
        elites = sorted(rows, key=lambda r: (-r.fitness, r.niche))
        coordinates = self._coordinates([row.niche for row in elites])
        return {
            "label": label,
            "snapshot": snapshot,
            "iteration": iteration,
            "layout": _layout_dict(self.layout),
            "elites": [{"niche": row.niche, "coordinates": where, "candidate_id": row.candidate_id,
                        "fitness": row.fitness, "descriptor": list(row.descriptor)}
                       for row, where in zip(elites, coordinates)],
            "fitness_range": [elites[-1].fitness, elites[0].fitness] if elites else None,
            "colors": legend_colors(),
        }

    def _current_elites(self) -> tuple[int | None, list[SnapshotRow]]:
        """The last committed iteration and the archive after it (read once per iteration;
        both in one read transaction, so they belong together)."""
        last = self._store.last_iteration()
        if self._archive is None or self._archive[0] != last:
            with self._store.reading():
                self._archive = (self._store.last_iteration(), self._store.current_elites())
        return self._archive

    def _coordinates(self, niches: list[int]) -> list[list[int]]:
        """Grid coordinates of many niches at once (a CVT niche is its own coordinate)."""
        layout = self.layout
        if layout is None or layout.bins is None or not niches:
            return [[niche] for niche in niches]
        return np.stack(np.unravel_index(np.asarray(niches), layout.bins), axis=1).tolist()

    # -- candidates -----------------------------------------------------------------------------

    def candidate(self, candidate_id: int) -> dict[str, Any]:
        """A candidate with its source, scores, diff from its parent and commit message."""
        with self._lock:
            record = self._store.candidate(candidate_id)
            parent = self._store.candidate(record.parent_id) if record and record.parent_id is not None else None
        if record is None:
            raise UserError(f"no candidate {candidate_id} in this run")
        data = candidate_dict(record, self.layout)
        data["scores"] = _small(record.extras)
        data["parent_fitness"] = parent.fitness if parent else None
        return _json_safe(data)

    def lineage(self, candidate_id: int) -> dict[str, Any]:
        """The chain of candidates from a seed to this one, seed first, every step's diff."""
        steps: list[CandidateRecord] = []
        seen: set[int] = set()
        next_id: int | None = candidate_id
        with self._lock:
            while next_id is not None and next_id not in seen and len(steps) < LINEAGE_LIMIT:
                record = self._store.candidate(next_id)
                if record is None:
                    break
                steps.append(record)
                seen.add(next_id)
                next_id = record.parent_id
        if not steps:
            raise UserError(f"no candidate {candidate_id} in this run")
        steps.reverse()
        return _json_safe({
            "candidate_id": candidate_id,
            "complete": steps[0].parent_id is None,
            "steps": [candidate_dict(step, self.layout, source=False) for step in steps],
        })

    def picture(self, candidate_id: int) -> dict[str, Any]:
        """The environment's picture of a candidate (a Sodarace walker's animated run) as a
        data URI, drawn once and kept; `note` says why there is none."""
        with self._lock:
            if candidate_id in self._pictures:
                return {"picture": self._pictures[candidate_id], "note": None}
            record = self._store.candidate(candidate_id)
            meta = self._store.meta()
        if record is None:
            raise UserError(f"no candidate {candidate_id} in this run")
        if record.status != Status.OK:
            return {"picture": None, "note": "only scored candidates are drawn"}
        drawn = render_candidates(meta.get("environment"), dict(meta.get("environment_options") or {}),
                                  [record])
        image = drawn.images.get(candidate_id)
        with self._lock:
            if len(self._pictures) >= _PICTURES_KEPT:
                self._pictures.pop(next(iter(self._pictures)))
            if image is not None or not drawn.notes:
                self._pictures[candidate_id] = image
        return {"picture": image, "note": "; ".join(drawn.notes) or None}

    # -- events and messages --------------------------------------------------------------------

    def messages(self) -> dict[str, Any]:
        """Per commit message statistics, most tried first. They are counted a range of
        candidate ids at a time, for at most MESSAGES_BUDGET_S per call, so a call on a
        large run answers quickly; `counted` says how many candidates they cover so far."""
        deadline = time.perf_counter() + MESSAGES_BUDGET_S
        with self._lock:
            newest = self._store.next_candidate_id() - 1
            read_to = -1 if self._messages_read_to is None else self._messages_read_to
            while read_to < newest and time.perf_counter() < deadline:
                upto = min(read_to + MESSAGES_CHUNK, newest)
                for row in self._store.message_counts(read_to, upto):
                    self._messages.setdefault(row.pop("text"), Counter()).update(row)
                read_to = self._messages_read_to = upto
            ordered = sorted(self._messages.items(), key=lambda item: (-item[1]["tries"], str(item[0])))
            rows = [{"text": text, **{k: counts.get(k, 0) for k in _MESSAGE_FIGURES}} for text, counts in ordered]
        return {"messages": rows, "counted": read_to + 1, "candidates": newest + 1}

    # -- helpers -----------------------------------------------------------------------------

    def _read_new_metrics(self) -> None:
        while True:
            after = self._metrics[-1].iteration if self._metrics else None
            page = self._store.metrics_after(after, METRICS_PAGE)
            self._metrics.extend(page)
            if len(page) < METRICS_PAGE:
                return

    def _totals(self) -> dict[str, Any]:
        statuses: Counter[str] = Counter()
        funnels: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
        for row in self._metrics:
            statuses.update(row.statuses)
            funnels[row.iteration == 0].update(row.funnel)  # the children's funnel, the seeds apart
        return {
            "candidates": sum(row.candidates for row in self._metrics),
            "statuses": dict(statuses.most_common()),
            "funnel": {stage: funnels[False].get(stage, 0) for stage in FUNNEL},
            "seed_funnel": {stage: funnels[True].get(stage, 0) for stage in FUNNEL},
            "seed_funnel_text": seed_funnel_text(funnels[True]),
        }

    def _state(self, last: int | None, configured: int | None, latest: IterationMetrics | None) -> str:
        if configured is not None and last is not None and last >= configured:
            return "finished"
        changed = max((p.stat().st_mtime for p in _store_files(self.path)), default=0.0)
        patience = max(_RUNNING_FOR_S, 5 * (latest.wall_s if latest else 0.0))
        return "running" if time.time() - changed < patience else "stopped"


_MESSAGE_FIGURES = ("tries", "ran", "placed", "new_niches", "improvements")


@functools.lru_cache(maxsize=1)
def legend_colors() -> list[str]:
    """Nine stops of the report's colour map, for the page to colour niches by fitness."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    from elm.report.plots import CMAP

    return [to_hex(colormaps[CMAP](i / 8)) for i in range(9)]


def _store_files(run_dir: Path) -> list[Path]:
    paths = [run_dir / STORE_FILE, run_dir / f"{STORE_FILE}-wal"]
    return [p for p in paths if p.exists()]


def _configured_iterations(meta: dict[str, Any]) -> int | None:
    run = (meta.get("config") or {}).get("run") or {}
    return run.get("iterations")


def _progress(last: int | None, configured: int | None) -> str:
    return progress_text({"last_iteration": last, "configured_iterations": configured,
                          "finished": True})


def _metrics_dict(metrics: IterationMetrics) -> dict[str, Any]:
    data = asdict(metrics)
    data["stages"] = data.pop("extras").get("stages") or {}
    return _json_safe(data)


def _layout_dict(layout: ArchiveLayout | None) -> dict[str, Any] | None:
    if layout is None:
        return None
    return {"kind": layout.kind, "names": list(layout.names), "ranges": [list(r) for r in layout.ranges],
            "cells": layout.cells, "bins": list(layout.bins) if layout.bins else None,
            "centroids": [list(c) for c in layout.centroids] if layout.centroids else None}


def _small(extras: dict[str, Any]) -> dict[str, Any]:
    """Score extras worth showing: scalar values, as long as they stay small."""
    shown = {k: v for k, v in extras.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return shown if len(repr(shown)) <= _EXTRAS_LIMIT else {}


def _json_safe(value: Any) -> Any:
    """Non-finite floats (a fitness may be -inf) as strings: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
