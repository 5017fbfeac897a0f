"""The notebook API: `open_run` over a finished run, its snapshots, and damaged run folders."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from elm.archive import Archive
from elm.config import ArchiveConfig
from elm.environment import DescriptorSpace, Dimension
from elm.errors import UserError
from elm.records import FUNNEL, SnapshotRow, niche_holders
from elm.report import open_run
from elm.store import RunStore
from tests.test_report_support import any_run, real_run, toy_run, write_toy_run  # noqa: F401  (fixtures)


@pytest.fixture
def store(any_run: Path):
    store = RunStore.open(any_run, readonly=True)
    yield store
    store.close()


def _replayed_archive(store: RunStore, up_to_iteration: int | None = None) -> Archive:
    """What pyribs holds after the scored candidates are offered in id order."""
    layout = store.meta()["archive"]
    bins = layout.get("bins") or [1] * len(layout["names"])  # a CVT layout has no bins
    dimensions = tuple(Dimension(n, lo, hi, b) for n, (lo, hi), b in zip(layout["names"], layout["ranges"], bins))
    archive = Archive(DescriptorSpace(dimensions), ArchiveConfig(kind=layout["kind"]),
                      centroids=layout.get("centroids"))
    for record in store.scored_candidates():
        if up_to_iteration is None or record.iteration <= up_to_iteration:
            archive.add_batch([record.id], [record.fitness], [record.descriptor])
    return archive


def test_current_archive_is_what_pyribs_keeps(any_run: Path, store: RunStore) -> None:
    with open_run(any_run) as run:
        elites = run.elites()
    replayed = _replayed_archive(store).elites()
    assert [(e.niche, e.candidate_id, e.fitness) for e in elites] == \
        [(e.niche, e.candidate_id, e.fitness) for e in replayed]
    assert len(elites) >= 2


def test_each_snapshot_matches_the_archive_rebuilt_at_its_iteration(any_run: Path, store: RunStore) -> None:
    with open_run(any_run) as run:
        snapshots = run.snapshots()
        assert snapshots == store.snapshot_iterations() and len(snapshots) >= 2
        for iteration in snapshots:
            stored = run.elites(snapshot=iteration)
            rebuilt = run.archive(at_iteration=iteration).elites
            assert [(e.niche, e.candidate_id) for e in stored] == [(e.niche, e.candidate_id) for e in rebuilt]
            assert [(r.niche, r.candidate_id) for r in store.snapshot(iteration)] == \
                [(e.niche, e.candidate_id) for e in stored]


def test_the_niche_rule_is_pyribs_rule_on_ties_and_improvements(any_run: Path, store: RunStore) -> None:
    """`niche_holders` (every rebuild of the archive) keeps the first candidate offered to a
    niche until a strictly better one comes, as pyribs does in the live archive."""
    first, second, third = list(store.scored_candidates())[:3]
    niche, fitness, descriptor = first.niche, first.fitness, first.descriptor
    offered = [(first.id, fitness), (second.id, fitness), (third.id, fitness + 1.0)]
    for count in (2, 3):
        archive = _replayed_archive(store, up_to_iteration=-1)  # empty, the run's shape
        for candidate_id, value in offered[:count]:
            archive.add_batch([candidate_id], [value], [descriptor])
        held = niche_holders((niche, candidate_id, value, descriptor) for candidate_id, value in offered[:count])
        assert [(e.niche, e.candidate_id) for e in archive.elites()] == [(r.niche, r.candidate_id) for r in held]
        assert held[0].candidate_id == (first.id if count == 2 else third.id)
    assert niche_holders([(4, 10, 1.0, "[0.5]"), (2, 11, -1.0, [0.1])]) == [
        SnapshotRow(2, 11, -1.0, (0.1,)), SnapshotRow(4, 10, 1.0, (0.5,))]


def test_summary_counts_what_the_store_holds(any_run: Path, store: RunStore) -> None:
    candidates = list(store.candidates())
    scored = [c for c in candidates if c.status == "ok"]
    with open_run(any_run) as run:
        summary = run.summary()
    assert summary["candidates"] == len(candidates)
    assert summary["statuses"] == dict(Counter(c.status for c in candidates))
    assert summary["iterations"] == store.last_iteration()
    assert summary["max_fitness"] == max(c.fitness for c in scored)
    last = store.metrics()[-1]
    assert summary["num_elites"] == last.num_elites
    assert summary["coverage"] == pytest.approx(last.coverage)
    assert summary["qd_score"] == pytest.approx(last.qd_score)
    seeds = [c for c in candidates if c.iteration == 0]
    assert summary["funnel"]["generated"] == len(candidates) - len(seeds)
    assert summary["seed_funnel"]["generated"] == len(seeds)
    assert list(summary["funnel"]) == list(FUNNEL)
    assert summary["funnel"]["placed"] + summary["seed_funnel"]["placed"] == \
        sum(c.placement in ("new", "improved") for c in candidates)
    best = store.candidate(summary["best"]["candidate_id"])
    assert summary["best"]["source"] == best.source and best.fitness == summary["max_fitness"]
    assert summary["finished"] is True and summary["problems"] == []


def test_grid_coordinates_address_niches(any_run: Path) -> None:
    with open_run(any_run) as run:
        layout = run.layout
        for elite in run.elites():
            assert elite.coordinates == tuple(np.unravel_index(elite.niche, layout.bins))
            assert layout.niche_at(elite.coordinates) == elite.niche
        with pytest.raises(UserError, match="2 coordinate"):
            layout.niche_at((1,))
        with pytest.raises(UserError, match="outside"):
            layout.niche_at((layout.bins[0], 0))


def test_lineage_runs_from_a_seed_through_parents(any_run: Path, store: RunStore) -> None:
    deepest = max(store.candidates(), key=lambda c: c.iteration)
    with open_run(any_run) as run:
        lineage = run.lineage(deepest.id)
    steps = lineage.steps
    assert lineage.complete and steps[0].parent_id is None and steps[-1].id == deepest.id
    assert all(child.parent_id == parent.id for parent, child in zip(steps, steps[1:]))
    assert [s.iteration for s in steps] == sorted(s.iteration for s in steps)


def test_records_and_frames(any_run: Path, store: RunStore) -> None:
    pandas = pytest.importorskip("pandas")
    with open_run(any_run) as run:
        candidates = run.candidates_frame()
        scored = run.candidates(status="ok")
        elites = run.elites_frame(snapshot=run.snapshots()[0])
        metrics = run.metrics_frame()
    assert isinstance(candidates, pandas.DataFrame)
    assert len(candidates) == len(list(store.candidates()))
    assert {"id", "parent_id", "status", "fitness", "source", "diff"} <= set(candidates.columns)
    assert {c.status for c in scored} == {"ok"}
    assert len(elites) == len(store.snapshot(store.snapshot_iterations()[0]))
    assert list(metrics["iteration"]) == [m.iteration for m in store.metrics()]


def test_unknown_snapshot_and_candidate_are_user_errors(any_run: Path) -> None:
    with open_run(any_run) as run:
        with pytest.raises(UserError, match=r"no snapshot at iteration 999 \(snapshots: "):
            run.elites(snapshot=999)
        with pytest.raises(UserError, match="no candidate 123456"):
            run.candidate(123456)


def test_missing_folder_and_missing_store(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run folder not found"):
        open_run(tmp_path / "absent")
    with pytest.raises(UserError, match="no run.sqlite"):
        open_run(tmp_path)
    (tmp_path / "run.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserError, match="cannot read run store"):
        open_run(tmp_path)


@pytest.mark.parametrize("kept", [0.9, 0.5])
def test_truncated_store_shows_what_is_readable(tmp_path: Path, kept: float) -> None:
    big = write_toy_run(tmp_path / "big", iterations=30, batch_size=24)
    with open_run(big) as run:
        total = run.summary()["candidates"]
    damaged = tmp_path / "damaged"
    shutil.copytree(big, damaged)
    store_file = damaged / "run.sqlite"
    with store_file.open("r+b") as handle:
        handle.truncate(int(store_file.stat().st_size * kept))
    with open_run(damaged) as run:
        summary = run.summary()
        readable = run.candidates()
    assert "truncated" in summary["problems"][0]
    assert 0 < summary["candidates"] < total
    assert len(readable) == summary["candidates"]
    assert [c.id for c in readable] == list(range(len(readable)))  # a prefix, in order
    assert summary["num_elites"] > 0 and summary["best"]["source"]
    assert summary["iterations"] > 0
