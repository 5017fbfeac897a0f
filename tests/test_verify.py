"""`elm verify`: elites re-run in fresh sandboxes reproduce; an edited store is caught and
named; circle packing's stricter check has no overlap tolerance."""

import json
import sqlite3

import pytest

from elm.environment import load_environment
from tests.conftest import run_elm


@pytest.fixture
def toy_run(toy_config, tmp_path):
    run_dir = tmp_path / "run"
    run_elm("run", str(toy_config(iterations=3)), "--out", str(run_dir), "--quiet", check=True)
    return run_dir


def _verify(run_dir, *options):
    result = run_elm("verify", str(run_dir), *options)
    return result.returncode, result


def test_elites_reproduce_until_the_store_is_edited(toy_run):
    code, result = _verify(toy_run, "--top", "10", "--json")
    assert code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["checked"] == min(10, report["num_elites"]) > 1
    assert report["mismatched"] == [] and report["reproduced"] == report["checked"]
    assert all(e["fitness"] == e["stored_fitness"] for e in report["elites"])

    edited = report["elites"][1]["candidate_id"]
    with sqlite3.connect(toy_run / "run.sqlite") as db:
        db.execute("UPDATE candidates SET fitness = fitness + 0.5 WHERE id = ?", (edited,))
    db.close()
    code, result = _verify(toy_run, "--all", "--json")
    assert code == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["mismatched"] == [edited]
    (problem,) = next(e for e in report["elites"] if e["candidate_id"] == edited)["problems"]
    assert "fitness" in problem and "an edited store or a changed scorer" in problem

    code, result = _verify(toy_run)
    assert code == 1 and f"candidates {edited}" in result.stdout


def test_bad_input_is_one_line_and_exit_2(toy_run, tmp_path):
    for args in ((str(tmp_path / "missing"),), (str(toy_run), "--top", "0"),
                 (str(toy_run), "--top", "3", "--all")):
        result = run_elm("verify", *args)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_circle_packing_verify_has_no_overlap_tolerance():
    environment = load_environment("circle_packing", {"n": 2})
    touching = {"centers": [[0.25, 0.5], [0.75, 0.5]], "radii": [0.25, 0.25]}
    assert environment.score(touching).valid and environment.verify(touching) is None
    overlapping = {"centers": [[0.25, 0.5], [0.7, 0.5]], "radii": [0.25, 0.2 + 1e-12]}
    assert environment.score(overlapping).valid  # within the scorer's tolerance
    assert "overlap" in environment.verify(overlapping)
    sticking_out = {"centers": [[0.25, 0.5], [0.75, 0.5]], "radii": [0.25 + 1e-12, 0.2]}
    assert environment.score(sticking_out).valid
    assert "not inside the unit square" in environment.verify(sticking_out)


def test_circle_packing_seeds_pass_the_stricter_check():
    environment = load_environment("circle_packing", {})
    for program in environment.seeds():
        namespace = {}
        exec(compile(program.source, program.name, "exec"), namespace)  # our own seed files
        centers, radii = namespace["pack"](environment.n)
        result = {"centers": centers.tolist(), "radii": radii.tolist()}
        assert environment.score(result).valid and environment.verify(result) is None, program.name
