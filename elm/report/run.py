"""A finished, running or damaged run, opened read-only for inspection and notebooks.

    from elm.report import open_run
    run = open_run("runs/sodarace-20250101-120000")
    run.summary()                 # iterations, statuses, funnel, coverage, QD score, best
    run.elites()                  # the current archive, as EliteRecords
    run.elites(snapshot=10)       # the archive stored at iteration 10
    run.elites_frame()            # the same as a pandas DataFrame

The current archive is rebuilt by `RunStore.current_elites` (the latest snapshot and the
candidates after it), by `elm.records.niche_holders`, the one rule of which candidate holds
a niche. Whatever part of a damaged store cannot be read is left out and described in
`run.problems`; the rest stays available.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from elm.errors import UserError
from elm.records import (
    FUNNEL,
    REUSED_STAGES,
    CandidateRecord,
    SnapshotRow,
    Stage,
    Status,
    funnel_counts,
    funnel_from_stops,
    niche_holders,
)
from elm.store import READ_ERRORS, IterationMetrics, MessageOutcome, RunStore

T = TypeVar("T")


@dataclass(frozen=True)
class EliteRecord:
    niche: int
    coordinates: tuple[int, ...]
    candidate_id: int
    fitness: float
    descriptor: tuple[float, ...]


@dataclass(frozen=True)
class ArchiveLayout:
    """The shape of a run's archive, as `Archive.layout()` stored it in the run's meta."""

    kind: str
    names: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]
    cells: int
    bins: tuple[int, ...] | None = None
    centroids: tuple[tuple[float, ...], ...] | None = None

    @classmethod
    def from_meta(cls, layout: dict[str, Any]) -> ArchiveLayout:
        return cls(
            kind=str(layout["kind"]),
            names=tuple(layout["names"]),
            ranges=tuple((float(lo), float(hi)) for lo, hi in layout["ranges"]),
            cells=int(layout["cells"]),
            bins=tuple(int(b) for b in layout["bins"]) if layout.get("bins") else None,
            centroids=(tuple(tuple(map(float, c)) for c in layout["centroids"])
                       if layout.get("centroids") else None),
        )

    def coordinates(self, niche: int) -> tuple[int, ...]:
        """Grid coordinates of a niche; a CVT niche is its own single coordinate."""
        if self.bins is None:
            return (int(niche),)
        return tuple(int(i) for i in np.unravel_index(int(niche), self.bins))

    def niche_at(self, coordinates: Sequence[int]) -> int:
        shape = self.bins if self.bins is not None else (self.cells,)
        if len(coordinates) != len(shape):
            raise UserError(
                f"a niche of this {self.kind} archive has {len(shape)} coordinate(s) "
                f"({self.describe_shape()}); got {len(coordinates)}"
            )
        for value, size in zip(coordinates, shape):
            if not 0 <= value < size:
                raise UserError(f"niche {tuple(coordinates)} is outside the archive "
                                f"({self.describe_shape()})")
        return int(np.ravel_multi_index(tuple(coordinates), shape))

    def describe_shape(self) -> str:
        if self.bins is not None:
            return f"{'x'.join(map(str, self.bins))} grid over {', '.join(self.names)}"
        return f"{self.cells}-cell CVT over {', '.join(self.names)}"


@dataclass(frozen=True)
class ArchiveState:
    """The archive at one moment: the current one, a stored snapshot or a rebuilt iteration."""

    label: str
    iteration: int | None
    elites: tuple[EliteRecord, ...]
    cells: int | None
    qd_offset: float

    @property
    def num_elites(self) -> int:
        return len(self.elites)

    @property
    def coverage(self) -> float | None:
        return self.num_elites / self.cells if self.cells else None

    @property
    def qd_score(self) -> float:
        return float(sum(e.fitness - self.qd_offset for e in self.elites))

    @property
    def max_fitness(self) -> float | None:
        return max((e.fitness for e in self.elites), default=None)

    @property
    def mean_fitness(self) -> float | None:
        return float(np.mean([e.fitness for e in self.elites])) if self.elites else None

    @property
    def best(self) -> EliteRecord | None:
        """The fittest elite (the lowest niche on ties)."""
        return min(self.elites, key=lambda e: (-e.fitness, e.niche), default=None)

    def top(self, count: int) -> list[EliteRecord]:
        return sorted(self.elites, key=lambda e: (-e.fitness, e.niche))[:count]

    def at_niche(self, niche: int) -> EliteRecord | None:
        return next((e for e in self.elites if e.niche == niche), None)


@dataclass(frozen=True)
class Lineage:
    """The chain from a seed to a candidate, seed first; `complete` when it reached a seed."""

    steps: tuple[CandidateRecord, ...]
    complete: bool


class Run:
    """Read-only access to one run folder. Use as a context manager or call `close()`."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir)
        self.problems: list[str] = []
        self._unreadable_parts: set[str] = set()
        self._store = RunStore.open_readable(self.path)
        if self._store.damage:
            self._note(self._store.damage)
        self.meta: dict[str, Any] = self._read("the run's meta data", self._store.meta) or {}
        self.layout = self._read_layout()
        self._metrics: list[IterationMetrics] | None = None

    # -- what the run is ---------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def environment(self) -> str | None:
        return self.meta.get("environment")

    @property
    def environment_options(self) -> dict[str, Any]:
        return dict(self.meta.get("environment_options") or {})

    @property
    def qd_offset(self) -> float:
        return float(self.meta.get("qd_offset") or 0.0)

    @property
    def configured_iterations(self) -> int | None:
        run = (self.meta.get("config") or {}).get("run") or {}
        return run.get("iterations")

    # -- metrics -----------------------------------------------------------------

    def metrics(self) -> list[IterationMetrics]:
        """Per-iteration metrics in iteration order (iteration 0 evaluates the seeds)."""
        if self._metrics is None:
            self._metrics = self._read("the iteration metrics", self._store.metrics) or []
        return list(self._metrics)

    @property
    def last_iteration(self) -> int | None:
        metrics = self.metrics()
        if metrics:
            return metrics[-1].iteration
        if self._unreadable("the iteration metrics"):
            seen = max((c.iteration for c in self.candidates()), default=None)
            self._note("the last iteration is the latest one among the readable candidates")
            return seen
        return None

    def funnel(self, seeds: bool = False) -> dict[str, int]:
        """Validity funnel totals: how many children (iterations 1 on) reached each stage;
        with `seeds`, the same for the seed programs of iteration 0 instead."""
        metrics = self.metrics()
        if not metrics and self._unreadable("the iteration metrics"):
            readable = self.candidates()
            self._note(f"the funnel counts the {len(readable)} readable candidates")
            return funnel_counts([c for c in readable if (c.iteration == 0) == seeds])
        totals: Counter[str] = Counter()
        for row in metrics:
            if (row.iteration == 0) == seeds:
                totals.update(row.funnel)
        return {stage: int(totals.get(stage, 0)) for stage in FUNNEL}

    def message_outcomes(self) -> list[MessageOutcome]:
        """How the children of each drawn commit message fared, per iteration."""
        return self._read("the commit message outcomes", self._store.message_outcomes) or []

    def funnel_by_model_version(self) -> dict[str, dict[str, int]]:
        """The validity funnel of each diff-model version's children (stage 2 swaps the
        weights during a run); empty for runs without a diff model."""
        counts = self._read("the funnel per model version", self._store.stage_counts_by_model_version) or {}
        return {str(version): funnel_from_stops(stages) for version, stages in counts.items()}

    def status_counts(self) -> dict[str, int]:
        counts = self._read("the candidate statuses", self._store.status_counts)
        if counts is None:
            counts = dict(Counter(c.status for c in self.candidates()))
            self._note(f"statuses are counted over the {sum(counts.values())} readable candidates")
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def failed_candidates(self, limit: int) -> list[tuple[int, str, str | None]]:
        """(id, status, error) of the latest `limit` candidates that failed, in id order."""
        return self._read("the failed candidates", lambda: self._store.failures(limit)) or []

    def first_candidate_by_status(self) -> dict[str, int]:
        """Status -> its first candidate's id."""
        return self._read("the first candidate of each status", self._store.first_candidate_by_status) or {}

    # -- candidates ----------------------------------------------------------------

    def candidates(self, status: str | None = None) -> list[CandidateRecord]:
        """Every candidate in id order (those with `status` only, when given)."""
        what = f"candidates with status {status}" if status else "candidates"
        return self._read_prefix(what, self._store.candidates(status=status or None))

    def candidate(self, candidate_id: int) -> CandidateRecord:
        record = self._read(f"candidate {candidate_id}", lambda: self._store.candidate(candidate_id))
        if record is None:
            raise UserError(f"no candidate {candidate_id} in {self.path}")
        return record

    def candidates_by_id(self, ids: Sequence[int]) -> dict[int, CandidateRecord]:
        found: dict[int, CandidateRecord] = {}
        ids = sorted(set(ids))
        for start in range(0, len(ids), 500):  # damage in one chunk leaves the others readable
            chunk = ids[start:start + 500]
            for record in self._read_prefix("candidates", self._store.candidates_by_id(chunk)):
                found[record.id] = record
        return found

    def lineage(self, candidate_id: int) -> Lineage:
        steps = [self.candidate(candidate_id)]
        seen = {candidate_id}
        while steps[-1].parent_id is not None:
            parent_id = steps[-1].parent_id
            parent = None if parent_id in seen else self.candidates_by_id([parent_id]).get(parent_id)
            if parent is None:
                self._note(f"the lineage of candidate {candidate_id} breaks at "
                           f"parent {parent_id}, which the store does not hold")
                return Lineage(tuple(reversed(steps)), complete=False)
            steps.append(parent)
            seen.add(parent_id)
        return Lineage(tuple(reversed(steps)), complete=True)

    def ancestors(self, ids: Sequence[int], limit: int | None = None) -> dict[int, CandidateRecord]:
        """The candidates and their ancestors, fetched a generation at a time (nearest
        first), up to `limit` records in all (the candidates themselves always)."""
        found: dict[int, CandidateRecord] = {}
        wanted = set(ids)
        while wanted:
            if limit is not None and found:
                room = max(limit - len(found), 0)
                wanted = set(sorted(wanted, reverse=True)[:room])  # the latest parents first
            fetched = self.candidates_by_id(sorted(wanted))
            found.update(fetched)
            wanted = {r.parent_id for r in fetched.values()
                      if r.parent_id is not None and r.parent_id not in found}
            if not fetched:
                break
        return found

    # -- the archive -----------------------------------------------------------------

    def snapshots(self) -> list[int]:
        """Iterations at which an archive snapshot was stored."""
        return self._read("the snapshot list", self._store.snapshot_iterations) or []

    def archive(self, snapshot: int | None = None, at_iteration: int | None = None) -> ArchiveState:
        """The current archive; or the one stored at iteration `snapshot`; or the one
        rebuilt from the candidates of iterations up to `at_iteration`."""
        if snapshot is not None and at_iteration is not None:
            raise UserError("give a snapshot or an iteration, not both")
        if snapshot is not None:
            available = self.snapshots()
            if snapshot not in available:
                listed = ", ".join(map(str, available)) or "none"
                raise UserError(f"no snapshot at iteration {snapshot} (snapshots: {listed})")
            stored = self._read(f"snapshot {snapshot}", lambda: self._store.snapshot(snapshot)) or []
            return self._state(f"snapshot at iteration {snapshot}", snapshot, stored)
        if at_iteration is None:
            rows = self._read("the archive", self._store.current_elites)
        else:
            rows = self._read("the archive", lambda: self._store.best_per_niche(at_iteration))
        if rows is None:
            # In id order, not through the status index: the rows before the damage.
            readable = [c for c in self.candidates() if c.status == Status.OK
                        and (at_iteration is None or c.iteration <= at_iteration)]
            self._note(f"the archive is rebuilt from the {len(readable)} readable scored candidates")
            rows = niche_holders((c.niche, c.id, c.fitness, c.descriptor or ()) for c in readable
                                 if c.niche is not None and c.fitness is not None)
        if at_iteration is not None:
            return self._state(f"archive rebuilt at iteration {at_iteration}", at_iteration, rows)
        return self._state("current archive", self.last_iteration, rows)

    def elites(self, snapshot: int | None = None) -> list[EliteRecord]:
        return list(self.archive(snapshot).elites)

    def summary(self, snapshot: int | None = None) -> dict[str, Any]:
        """The run at a glance, as JSON data."""
        state = self.archive(snapshot)
        statuses = self.status_counts()
        best = state.best
        best_record = self.candidate(best.candidate_id) if best else None
        last = self.last_iteration
        configured = self.configured_iterations
        funnel = self.funnel()
        return {
            "run_dir": str(self.path),
            "environment": self.environment,
            "archive": self.layout.describe_shape() if self.layout else None,
            "descriptor_names": list(self.layout.names) if self.layout else [],
            "iterations": last or 0,
            "last_iteration": last,
            "configured_iterations": configured,
            "finished": configured is not None and last == configured,
            "candidates": sum(statuses.values()),
            "statuses": statuses,
            "funnel": funnel,
            "seed_funnel": self.funnel(seeds=True),
            "reused_shares": reused_shares(funnel),
            "funnel_by_model_version": self.funnel_by_model_version(),
            "archive_state": state.label,
            "cells": state.cells,
            "num_elites": state.num_elites,
            "coverage": state.coverage,
            "qd_score": state.qd_score,
            "max_fitness": state.max_fitness,
            "mean_fitness": state.mean_fitness,
            "best": None if best is None else {
                **asdict(best), "source": best_record.source if best_record else None,
                "file_name": best_record.file_name if best_record else None,
            },
            "snapshots": self.snapshots(),
            "tokens": self.tokens(),
            "problems": list(self.problems),
        }

    def tokens(self) -> dict[str, Any]:
        """Model tokens spent (served models count them): totals, per placed child, and the
        cost when the run's config gives `mutation.price_per_mtok`."""
        totals = self._read("the token counts", self._store.token_totals)
        if totals is None:
            return {"prompt": 0, "completion": 0, "per_placed_child": None, "cost": None,
                    "cost_per_placed_child": None}
        placed = totals["placed_children"]
        spent = totals["prompt"] + totals["completion"]
        prices = ((self.meta.get("config") or {}).get("mutation") or {}).get("price_per_mtok")
        cost = None
        if prices and totals["counted"]:
            cost = (totals["prompt"] * prices.get("prompt", 0.0)
                    + totals["completion"] * prices.get("completion", 0.0)) / 1e6
        return {
            "prompt": totals["prompt"],
            "completion": totals["completion"],
            "per_placed_child": spent / placed if placed and totals["counted"] else None,
            "cost": cost,
            "cost_per_placed_child": cost / placed if cost is not None and placed else None,
        }

    # -- pandas ---------------------------------------------------------------------------

    def candidates_frame(self, status: str | None = None) -> Any:
        return _frame([asdict(c) for c in self.candidates(status)], CandidateRecord)

    def elites_frame(self, snapshot: int | None = None) -> Any:
        return _frame([asdict(e) for e in self.elites(snapshot)], EliteRecord)

    def metrics_frame(self) -> Any:
        return _frame([asdict(m) for m in self.metrics()], IterationMetrics)

    # -- life cycle -----------------------------------------------------------------------

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading a possibly damaged store ----------------------------------------------------

    def _read(self, what: str, read: Callable[[], T]) -> T | None:
        """What `read` gives, or None (noted in `problems`) when the store cannot give it."""
        try:
            return read()
        except READ_ERRORS as error:
            self._unreadable_parts.add(what)
            self._note(f"cannot read {what}: {error}")
            return None

    def _read_prefix(self, what: str, rows: Iterator[T]) -> list[T]:
        """Rows up to the first one the store cannot give back intact."""
        found: list[T] = []
        try:
            for row in rows:
                if isinstance(row, CandidateRecord) and not _intact(row):
                    self._note(f"reading {what} stopped after {len(found)} rows: the next row is damaged")
                    break
                found.append(row)
        except READ_ERRORS as error:
            self._note(f"reading {what} stopped after {len(found)} rows: {error}")
        return found

    def _note(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def _unreadable(self, what: str) -> bool:
        return what in self._unreadable_parts

    def _read_layout(self) -> ArchiveLayout | None:
        layout = self.meta.get("archive")
        if not isinstance(layout, dict):
            self._note("the run's meta data holds no archive layout: niches have no coordinates")
            return None
        try:
            return ArchiveLayout.from_meta(layout)
        except (KeyError, TypeError, ValueError) as error:
            self._note(f"the archive layout in the meta data is unreadable: {error!r}")
            return None

    def _state(self, label: str, iteration: int | None, rows: Sequence[SnapshotRow]) -> ArchiveState:
        elites = tuple(
            EliteRecord(
                niche=row.niche,
                coordinates=self.layout.coordinates(row.niche) if self.layout else (row.niche,),
                candidate_id=row.candidate_id, fitness=row.fitness,
                descriptor=tuple(row.descriptor),
            )
            for row in rows
        )
        cells = self.layout.cells if self.layout else None
        return ArchiveState(label, iteration, elites, cells, self.qd_offset)


def open_run(run_dir: str | Path) -> Run:
    """Open a run folder read-only; a missing or unreadable store raises UserError."""
    return Run(run_dir)


def reused_shares(funnel: dict[str, int]) -> dict[str, float | None]:
    """The share of generated candidates that were not evaluated, by reason."""
    generated = funnel.get(Stage.GENERATED) or 0
    return {stage: funnel.get(stage, 0) / generated if generated else None for stage in REUSED_STAGES}


def _intact(record: CandidateRecord) -> bool:
    """False for a row read from a damaged page (its required columns come back empty)."""
    return all(isinstance(v, str) and v for v in (record.status, record.stage, record.operator))


def _frame(rows: list[dict[str, Any]], record_type: type[Any]) -> Any:
    try:
        import pandas
    except ImportError:
        raise UserError("DataFrames need pandas: pip install 'elm[notebook]'") from None
    return pandas.DataFrame(rows, columns=[f.name for f in fields(record_type)])

