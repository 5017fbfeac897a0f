"""`elm inspect`: every view, as text and as JSON, on a run written by the test suite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from elm.cli import main
from elm.records import FUNNEL, REUSED_STAGES
from elm.store import RunStore
from tests.test_report_support import (  # noqa: F401  (fixtures)
    HOSTILE_COMMENT,
    any_run,
    real_run,
    toy_run,
    write_toy_run,
)


def inspect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(["inspect", *map(str, args)])
    except SystemExit as exit:  # argparse rejects malformed arguments this way
        code = int(exit.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def inspect_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = inspect(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def last_line(source: str) -> str:
    return [line for line in source.splitlines() if line.strip()][-1].strip()


@pytest.fixture
def store(any_run: Path):
    store = RunStore.open(any_run, readonly=True)
    yield store
    store.close()


def test_summary_json(capsys, any_run: Path, store: RunStore) -> None:
    data = inspect_json(capsys, any_run)
    candidates = list(store.candidates())
    scored = [c for c in candidates if c.status == "ok"]
    assert {"iterations", "candidates", "coverage", "qd_score", "max_fitness", "statuses", "funnel",
            "num_elites", "best", "problems"} <= set(data)
    assert data["iterations"] == store.last_iteration()
    assert data["candidates"] == len(candidates) == sum(data["statuses"].values())
    assert data["max_fitness"] == max(c.fitness for c in scored)
    assert data["coverage"] == pytest.approx(store.metrics()[-1].coverage)
    assert data["qd_score"] == pytest.approx(store.metrics()[-1].qd_score)
    children = [c for c in candidates if c.iteration > 0]
    assert list(data["funnel"]) == list(FUNNEL) and data["funnel"]["generated"] == len(children)
    assert data["seed_funnel"]["generated"] == len(candidates) - len(children)
    assert data["best"]["source"] == store.candidate(data["best"]["candidate_id"]).source


def test_summary_text(capsys, any_run: Path, store: RunStore) -> None:
    code, out, _ = inspect(capsys, any_run)
    assert code == 0
    data = inspect_json(capsys, any_run)
    for expected in ("Validity funnel", "generated", "placed", "Candidates", "coverage", "QD score",
                     f"candidate {data['best']['candidate_id']}", last_line(data["best"]["source"])):
        assert expected in out
    for status, count in data["statuses"].items():
        assert any(status in line and line.rstrip(" │").endswith(str(count)) for line in out.splitlines())


def test_candidate_text_cannot_drive_the_terminal(capsys, toy_run: Path) -> None:
    data = inspect_json(capsys, toy_run)
    assert HOSTILE_COMMENT in data["best"]["source"]  # the toy run's best elite carries it
    _, out, _ = inspect(capsys, toy_run)
    assert "\x1b" not in out
    assert "[bold red]markup[/]" in out and "\\x1b[31m" in out  # shown, not interpreted


def test_top(capsys, any_run: Path, store: RunStore) -> None:
    data = inspect_json(capsys, any_run, "--top", 3)
    top = data["top"]
    assert [row["rank"] for row in top] == [1, 2, 3]
    fitnesses = [row["fitness"] for row in top]
    assert fitnesses == sorted(fitnesses, reverse=True)
    assert fitnesses[0] == max(r.fitness for r in store.best_per_niche())
    for row in top:
        record = store.candidate(row["candidate_id"])
        assert (row["niche"], row["fitness"], row["descriptor"]) == \
            (record.niche, record.fitness, record.descriptor)
        assert set(row) >= {"niche", "coordinates", "candidate_id", "fitness", "descriptor"}
    code, out, _ = inspect(capsys, any_run, "--top", 3)
    assert code == 0 and f"Top 3 of {data['num_elites']} elites" in out


def test_niche(capsys, any_run: Path, store: RunStore) -> None:
    elite = store.best_per_niche()[-1]
    coordinates = inspect_json(capsys, any_run, "--top", 100)["top"]
    coords = next(r["coordinates"] for r in coordinates if r["niche"] == elite.niche)
    data = inspect_json(capsys, any_run, "--niche", ",".join(map(str, coords)))
    record = store.candidate(elite.candidate_id)
    assert data["niche"] == elite.niche and data["coordinates"] == coords
    shown = data["elite"]
    assert (shown["id"], shown["source"], shown["fitness"], shown["descriptor"]) == \
        (record.id, record.source, record.fitness, record.descriptor)
    assert (shown["parent_id"], shown["commit_message"], shown["diff"]) == \
        (record.parent_id, record.commit_message, record.diff)
    code, out, _ = inspect(capsys, any_run, "--niche", ",".join(map(str, coords)))
    assert code == 0 and last_line(record.source) in out
    assert (f"candidate {record.parent_id}" if record.parent_id is not None else "none (a seed)") in out


def test_niche_errors_are_one_line(capsys, any_run: Path, store: RunStore) -> None:
    bins = store.meta()["archive"]["bins"]
    filled = {e.niche for e in store.best_per_niche()}
    empty = next(n for n in range(bins[0] * bins[1]) if n not in filled)
    empty_coords = f"{empty // bins[1]},{empty % bins[1]}"
    for args, message in ((("--niche", empty_coords), "holds no elite"),
                          (("--niche", "0"), "has 2 coordinate"),
                          (("--niche", f"{bins[0]},0"), "outside the archive"),
                          (("--niche", "a,b"), "expected integers")):
        code, out, err = inspect(capsys, any_run, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == ""


def test_lineage(capsys, any_run: Path, store: RunStore) -> None:
    best = inspect_json(capsys, any_run)["best"]["candidate_id"]
    data = inspect_json(capsys, any_run, "--lineage", best)
    steps = data["steps"]
    assert data["complete"] and steps[0]["parent_id"] is None and steps[-1]["id"] == best
    assert all(child["parent_id"] == parent["id"] for parent, child in zip(steps, steps[1:]))
    assert data["fitness"] == [store.candidate(s["id"]).fitness for s in steps]
    assert [s["diff"] for s in steps] == [store.candidate(s["id"]).diff for s in steps]
    assert data["source"] == store.candidate(best).source
    code, out, _ = inspect(capsys, any_run, "--lineage", best)
    mutations = len(steps) - 1
    assert code == 0 and f"{mutations} mutation{'' if mutations == 1 else 's'} from a seed" in out
    for step in steps:
        assert f"candidate {step['id']} | iteration {step['iteration']}" in out
        if step["diff"]:
            assert step["diff"].splitlines()[-1].strip() in out


def test_snapshot(capsys, any_run: Path, store: RunStore) -> None:
    iteration = store.snapshot_iterations()[1]
    data = inspect_json(capsys, any_run, "--snapshot", iteration)
    rows = store.snapshot(iteration)
    assert data["snapshot"] == iteration and data["num_elites"] == len(rows)
    assert [(e["niche"], e["candidate_id"], e["fitness"]) for e in data["elites"]] == \
        [(r.niche, r.candidate_id, r.fitness) for r in rows]
    metrics = {m.iteration: m for m in store.metrics()}[iteration]
    assert data["coverage"] == pytest.approx(metrics.coverage)
    assert data["qd_score"] == pytest.approx(metrics.qd_score)
    top = inspect_json(capsys, any_run, "--snapshot", iteration, "--top", 2)
    assert top["archive_state"] == f"snapshot at iteration {iteration}"
    assert top["top"][0]["fitness"] == max(r.fitness for r in rows)
    code, out, _ = inspect(capsys, any_run, "--snapshot", iteration)
    assert code == 0 and f"Snapshot at iteration {iteration}" in out
    lines = out.splitlines()
    for row in rows:  # one aligned line per elite: niche coordinates, candidate, fitness
        assert any(f" {row.candidate_id} " in line and f"{row.fitness:.6g}" in line for line in lines)


def test_bad_input_is_one_line_exit_2(capsys, toy_run: Path, tmp_path: Path) -> None:
    cases = [
        ((tmp_path / "absent",), "run folder not found"),
        ((tmp_path,), "not a run folder"),
        ((toy_run, "--snapshot", 999), "no snapshot at iteration 999"),
        ((toy_run, "--lineage", 99999), "no candidate 99999"),
        ((toy_run, "--lineage", 1, "--snapshot", 0), "does not apply"),
        ((toy_run, "--failures", "--snapshot", 0), "does not apply"),
        ((toy_run, "--top", 0), "positive"),
    ]
    for args, message in cases:
        code, out, err = inspect(capsys, *args)
        assert code == 2, args
        assert message in err and err.startswith("elm: error:") and len(err.strip().splitlines()) == 1
        assert "Traceback" not in err


def test_truncated_store_is_reported_and_still_shown(capsys, tmp_path: Path) -> None:
    run = write_toy_run(tmp_path / "run", iterations=30, batch_size=24)
    full = inspect_json(capsys, run)
    store_file = run / "run.sqlite"
    with store_file.open("r+b") as handle:
        handle.truncate(store_file.stat().st_size // 2)
    data = inspect_json(capsys, run)
    assert any("truncated" in p for p in data["problems"])
    assert 0 < data["candidates"] < full["candidates"] and data["num_elites"] > 0
    code, out, err = inspect(capsys, run)
    assert code == 0 and "damaged or incomplete" in out and "truncated" in out
    assert "Validity funnel" in out and "Best elite" in out


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from elm.store import RunStore
from tests.test_report_support import write_toy_run

record = RunStore.record_iteration
def record_then_die(self, *args, **kwargs):
    record(self, *args, **kwargs)
    if args[1].iteration == 2:
        os.kill(os.getpid(), signal.SIGKILL)
RunStore.record_iteration = record_then_die
write_toy_run(Path(sys.argv[1]), iterations=10)
"""


def test_run_killed_mid_run_shows_its_committed_iterations(capsys, tmp_path: Path) -> None:
    run = tmp_path / "killed"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(run)], env=env, cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert writer.returncode == -signal.SIGKILL, writer.stderr
    assert (run / "run.sqlite-wal").exists()  # never checkpointed: the writer died holding it
    data = inspect_json(capsys, run)
    assert data["iterations"] == 2 and data["finished"] is False and data["problems"] == []
    assert data["candidates"] > 0 and data["num_elites"] > 0
    _, out, _ = inspect(capsys, run)
    assert "iteration 2 of 10 (stopped early or still running)" in out


def test_lineage_counts_mutations(capsys, toy_run: Path) -> None:
    with closing(RunStore.open(toy_run, readonly=True)) as store:
        candidates = list(store.candidates())
    seed = next(c for c in candidates if c.parent_id is None)
    child = next(c for c in candidates if c.parent_id == seed.id)
    _, out, _ = inspect(capsys, toy_run, "--lineage", seed.id)
    assert f"Lineage of candidate {seed.id}: a seed" in out
    _, out, _ = inspect(capsys, toy_run, "--lineage", child.id)
    assert f"Lineage of candidate {child.id}: 1 mutation from a seed" in out


def test_funnel_counts_children_and_shows_seeds_apart(capsys, toy_run: Path) -> None:
    with closing(RunStore.open(toy_run, readonly=True)) as store:
        candidates = list(store.candidates())
    seeds = [c for c in candidates if c.iteration == 0]
    data = inspect_json(capsys, toy_run)
    assert data["funnel"]["generated"] == len(candidates) - len(seeds)
    assert data["seed_funnel"]["generated"] == len(seeds)
    assert data["seed_funnel"]["scored"] == sum(c.status == "ok" for c in seeds)
    _, out, _ = inspect(capsys, toy_run)
    assert f"Seeds (iteration 0, not counted above): {len(seeds)} evaluated" in out


def test_failures_count_by_status_and_reason_with_examples(capsys, any_run: Path, store: RunStore) -> None:
    candidates = list(store.candidates())
    failed = [c for c in candidates if c.status not in ("ok", *REUSED_STAGES)]
    data = inspect_json(capsys, any_run, "--failures")
    assert data["failed"] == len(failed) > 0 and data["candidates"] == len(candidates)
    assert data["reused"] == sum(c.status in REUSED_STAGES for c in candidates)
    by_status = {row["status"]: row for row in data["statuses"]}
    assert {s: r["count"] for s, r in by_status.items()} == dict(Counter(c.status for c in failed))
    for status, row in by_status.items():
        assert row["example_id"] == min(c.id for c in failed if c.status == status)
        assert sum(r["count"] for r in data["reasons"] if r["status"] == status) == row["count"]
    for row in data["reasons"]:
        example = store.candidate(row["example_id"])
        assert example.status == row["status"] and row["error"] in (example.error or "no error message")
    counts = [row["count"] for row in data["reasons"]]
    assert counts == sorted(counts, reverse=True)
    code, out, _ = inspect(capsys, any_run, "--failures")
    assert code == 0 and f"{len(failed)} of {data['candidates']} candidates failed" in " ".join(out.split())
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines()]
    for row in data["statuses"]:
        assert [row["status"], str(row["count"]), str(row["example_id"])] in rows, row


def test_failures_of_a_large_run_tell_kinds_apart_from_the_latest_ones(capsys, monkeypatch, any_run: Path,
                                                                        store: RunStore) -> None:
    """Counts by status stay exact; only the latest READ_LIMIT errors are read for kinds."""
    from elm.report import failures

    failed = [c for c in store.candidates() if c.status not in ("ok", *REUSED_STAGES)]
    monkeypatch.setattr(failures, "READ_LIMIT", 3)
    data = inspect_json(capsys, any_run, "--failures")
    assert data["failed"] == len(failed) > 3 and data["reasons_counted"] == 3
    assert sum(row["count"] for row in data["statuses"]) == len(failed)
    assert sum(row["count"] for row in data["reasons"]) == 3
    assert {row["example_id"] for row in data["reasons"]} <= {c.id for c in failed[-3:]}
    for row in data["statuses"]:
        assert row["example_id"] == min(c.id for c in failed if c.status == row["status"])
    code, out, _ = inspect(capsys, any_run, "--failures")
    assert code == 0 and "kinds counted over the latest 3 failures" in " ".join(out.split())


@pytest.mark.parametrize("status, error, reason", [
    ("error", 'Traceback (most recent call last):\n  File "x.py", line 2, in f\nIndexError: list index out of range',
     "IndexError"),
    ("error", "Traceback (most recent call last):\nUnboundLocalError: cannot access local variable 'n'",
     "UnboundLocalError"),
    ("error", "Traceback (most recent call last):\npackage.module.Oops", "package.module.Oops"),
    ("syntax_error", "SyntaxError: invalid syntax (line 3)", "SyntaxError"),
    ("timeout", "wall-clock limit of 5 s exceeded", "wall-clock limit of # s exceeded"),
    ("invalid", "circles 3 and 7 overlap by 0.012", "circles # and # overlap by #"),
    ("invalid", "scoring failed: ValueError: x2 is 1e-05", "scoring failed: ValueError: x2 is #"),
])
def test_failures_are_grouped_by_exception_type_or_reason(status: str, error: str, reason: str) -> None:
    from elm.evaluator import error_summary
    from elm.report.failures import failure_reason

    assert failure_reason(status, error_summary(error)) == reason
