"""Small runs for the inspect and report tests, written through the run store's public API.

`write_toy_run` plays a few MAP-Elites iterations with elm's own Archive (so niches,
placements, metrics and snapshots are what the loop records) over toy programs whose
result is the dictionary they return. The toy environments live here too, so a run's
meta can name them as `tests.test_report_support:ToyEnvironment`.
"""

from __future__ import annotations

import difflib
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from elm.archive import Archive
from elm.config import ArchiveConfig
from elm.environment import DescriptorSpace, Dimension, Environment, Program, Score
from elm.records import STAGES, funnel_counts
from elm.store import CandidateRecord, IterationMetrics, RunStore, SnapshotRow

TOY = "tests.test_report_support:ToyEnvironment"
TOY_3D = "tests.test_report_support:Toy3DEnvironment"
BROKEN_RENDER = "tests.test_report_support:BrokenRenderEnvironment"
NO_RENDER = "tests.test_report_support:NoRenderEnvironment"

# Candidate text that must reach the reader as text: markup, a script end tag, a terminal escape.
HOSTILE_COMMENT = "# </script><script>window.pwned = 1</script> [bold red]markup[/] \x1b[31mred"

_FAILURES = ("error", "timeout", "syntax_error", "mutation_failed", "invalid", "bad_output")
_FAILURE_STAGE = {"mutation_failed": "generated", "syntax_error": "applied", "invalid": "ran"}


class ToyEnvironment(Environment):
    """A program's result is {"x", "y", "f"}: descriptor (x, y), fitness f."""

    name = "toy"
    descriptor_space = DescriptorSpace((Dimension("x", 0.0, 1.0, 4), Dimension("y", 0.0, 1.0, 5)))

    def seeds(self) -> list[Program]:
        return [Program(self.file_name, toy_source({"x": 0.1, "y": 0.1, "f": 0.5}), "flat")]

    def score(self, result: Any) -> Score:
        names = self.descriptor_space.names
        return Score.of(result["f"], [result[name] for name in names])

    def render(self, result: Any, path: str) -> str | None:
        shade = int(255 * min(max(result["f"] / 3.0, 0.0), 1.0))
        written = f"{path}.png"
        Image.new("RGB", (24, 24), (shade, 64, 255 - shade)).save(written)
        return written


class Toy3DEnvironment(ToyEnvironment):
    descriptor_space = DescriptorSpace(
        (Dimension("x", 0.0, 1.0, 12), Dimension("y", 0.0, 1.0, 12), Dimension("z", 0.0, 1.0, 12))
    )


class BrokenRenderEnvironment(ToyEnvironment):
    def render(self, result: Any, path: str) -> str | None:
        raise RuntimeError("the renderer is broken")


class NoRenderEnvironment(ToyEnvironment):
    render = Environment.render


def toy_source(result: dict[str, float], comment: str = "") -> str:
    values = ", ".join(f"{key!r}: {value:.4f}" for key, value in result.items())
    head = f"{comment}\n" if comment else ""
    return f"{head}def main():\n    # the toy result\n    return {{{values}}}\n"


def write_toy_run(
    run_dir: Path,
    *,
    environment: str = TOY,
    kind: str = "grid",
    iterations: int = 4,
    batch_size: int = 8,
    snapshot_every: int = 2,
    seed: int = 0,
    after_iteration: Callable[[int], Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """A finished (or, with `iterations` below the configured count, interrupted) toy run.
    `after_iteration(i)` is called once iteration i is committed (to watch a run being written);
    `meta` replaces entries of the run's meta data (say, an environment that cannot be loaded)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env_class = _environment_class(environment)
    space = env_class.descriptor_space
    archive = Archive(space, ArchiveConfig(kind=kind, cvt_cells=24, cvt_samples=2000), seed=seed)
    config = {"run": {"iterations": iterations, "batch_size": batch_size,
                      "snapshot_every": snapshot_every, "seed": seed},
              "environment": {"name": environment, "options": {}}, "archive": {"kind": kind}}
    (run_dir / "config.yaml").write_text(f"# toy run\nrun:\n  iterations: {iterations}\n")
    store = RunStore.create(run_dir, {
        "config": config, "environment": environment, "environment_options": {},
        "archive": archive.layout(), "qd_offset": 0.0, "created_at": time.time(),
        "elm_version": "test", **(meta or {}),
    })
    rng = np.random.default_rng(seed)
    sources: dict[int, str] = {}
    next_id = 0
    try:
        for iteration in range(iterations + 1):
            records = (_seed_records(env_class, next_id) if iteration == 0
                       else _child_records(archive, sources, rng, iteration, batch_size, next_id,
                                           len(space)))
            _place(records, archive, sources)
            snapshot = None
            if iteration % snapshot_every == 0 or iteration == iterations:
                snapshot = [SnapshotRow(e.niche, e.candidate_id, e.fitness, e.descriptor)
                            for e in archive.elites()]
            store.record_iteration(records, _metrics(iteration, records, archive), snapshot)
            next_id += len(records)
            if after_iteration is not None:
                after_iteration(iteration)
    finally:
        store.close()
    return run_dir


def _environment_class(spec: str) -> type[ToyEnvironment]:
    return globals()[spec.rpartition(":")[2]]


def _seed_records(env_class: type[ToyEnvironment], first_id: int) -> list[CandidateRecord]:
    dims = len(env_class.descriptor_space)
    results = [{"f": 0.5, **dict.fromkeys("xyz"[:dims], 0.1)},
               {"f": 0.8, **dict.fromkeys("xyz"[:dims], 0.9)}]
    return [
        CandidateRecord(id=first_id + i, iteration=0, parent_id=None, operator="seed",
                        file_name="program.py", source=toy_source(result), stage="scored",
                        status="ok", commit_message=f"seed {i}", fitness=result["f"],
                        descriptor=[result[n] for n in "xyz"[:dims]], result=result)
        for i, result in enumerate(results)
    ]


def _child_records(archive: Archive, sources: dict[int, str], rng: np.random.Generator,
                   iteration: int, count: int, first_id: int, dims: int) -> list[CandidateRecord]:
    parents = archive.sample_parents(count, rng)
    records = []
    for offset, parent in enumerate(parents):
        candidate_id = first_id + offset
        hostile = candidate_id == first_id and iteration == 1  # the run's best elite
        result = {"f": 3.5 if hostile else round(float(rng.uniform(0.0, 3.0)), 4),
                  **{n: round(float(rng.uniform(0.0, 1.0)), 4) for n in "xyz"[:dims]}}
        source = toy_source(result, HOSTILE_COMMENT if hostile else "")
        parent_source = sources[parent.candidate_id]
        diff = "".join(difflib.unified_diff(parent_source.splitlines(True), source.splitlines(True),
                                            "a/program.py", "b/program.py"))
        status = "ok" if hostile or rng.uniform() < 0.6 else _FAILURES[int(rng.integers(len(_FAILURES)))]
        record = CandidateRecord(
            id=candidate_id, iteration=iteration, parent_id=parent.candidate_id,
            operator="toy", file_name="program.py", source=source,
            commit_message=HOSTILE_COMMENT if hostile else f"Move towards {result}",
            stage=_FAILURE_STAGE.get(status, "compiled") if status != "ok" else "scored",
            status=status, diff=diff,
            error=None if status == "ok" else f"{status} happened",
        )
        if status == "mutation_failed":
            record.source = None
        if status == "ok":
            record.fitness = result["f"]
            record.descriptor = [result[n] for n in "xyz"[:dims]]
        if status in ("ok", "invalid"):
            record.result = result
        records.append(record)
    return records


def _place(records: Sequence[CandidateRecord], archive: Archive, sources: dict[int, str]) -> None:
    for record in records:
        if record.status != "ok":
            continue
        (placement,) = archive.add_batch([record.id], [record.fitness], [record.descriptor])
        record.niche, record.placement = placement.niche, placement.outcome
        if placement.placed:
            record.stage = "placed"
            sources[record.id] = record.source or ""


def _metrics(iteration: int, records: Sequence[CandidateRecord], archive: Archive) -> IterationMetrics:
    stats = archive.stats()
    return IterationMetrics(
        iteration=iteration, wall_s=0.5, candidates=len(records), coverage=stats.coverage,
        qd_score=stats.qd_score, num_elites=stats.num_elites, max_fitness=stats.max_fitness,
        mean_fitness=stats.mean_fitness, evals_per_s=len(records) / 0.5,
        statuses=dict(Counter(r.status for r in records)), funnel=funnel_counts(records),
    )


def _shared_run(factory: pytest.TempPathFactory, name: str, write: Callable[[Path], Any]) -> Path:
    """One run per test session, however many modules ask for it; tests must only read it."""
    folder = factory.getbasetemp() / "shared-runs" / name
    done = folder.with_name(f"{name}.done")
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        write(folder)
        done.touch()
    return folder


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished toy run on a 4x5 grid, written through the store's API."""
    return _shared_run(tmp_path_factory, "toy", lambda folder: write_toy_run(folder, iterations=6))


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of `elm run`: the loop, the GP mutator and the local sandbox."""
    from tests.conftest import TOY_CONFIG, run_elm

    def write(folder: Path) -> None:
        config = folder.with_name("real.yaml")
        config.write_text(TOY_CONFIG.format(iterations=6, backend="local"))
        run_elm("run", str(config), "--out", str(folder), "--quiet", check=True)

    return _shared_run(tmp_path_factory, "real", write)


@pytest.fixture(params=["toy_run", "real_run"])
def any_run(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


# -- the fixture itself is checked against elm's archive -----------------------------------


def test_toy_run_records_every_stage_and_status(toy_run: Path) -> None:
    """The toy run exercises every funnel stage and several failure statuses."""
    store = RunStore.open(toy_run, readonly=True)
    try:
        stages = {record.stage for record in store.candidates()}
        statuses = store.status_counts()
    finally:
        store.close()
    assert {"placed", "scored", "generated", "applied", "ran"} <= stages <= set(STAGES)
    assert statuses["ok"] > 0 and len(statuses) > 3
