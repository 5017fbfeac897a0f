"""The CLI as a user meets it: one-line errors with exit code 2, and a toy run end to end."""

import json

from elm.cli import main
from tests.conftest import run_elm


def _assert_one_line_error(result, fragment):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("elm: error:") and fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path):
    _assert_one_line_error(run_elm("run", str(tmp_path / "absent.yaml")), "not found")


def test_bad_config_key_and_type(toy_config):
    path = toy_config()
    _assert_one_line_error(run_elm("run", str(path), "run.nonsense=1"), "nonsense")
    _assert_one_line_error(run_elm("run", str(path), "run.iterations=lots"), "iterations")


def test_unknown_environment_leaves_no_run_folder(toy_config, tmp_path):
    out = tmp_path / "never"
    result = run_elm("run", str(toy_config()), "environment.name=no_such_env", "--out", str(out))
    _assert_one_line_error(result, "unknown environment 'no_such_env'")
    assert not out.exists()
    result = run_elm("run", str(toy_config()), "environment.name=tests.nowhere:Env")
    _assert_one_line_error(result, "cannot import")


def test_missing_run_folder(tmp_path):
    _assert_one_line_error(run_elm("resume", str(tmp_path / "gone")), "run folder not found")
    _assert_one_line_error(run_elm("inspect", str(tmp_path / "gone")), "not found")


def test_unknown_command_and_bench():
    assert run_elm("fly").returncode == 2
    _assert_one_line_error(run_elm("bench", "nope"), "invalid choice")


def test_eval_one_file(toy_config, tmp_path):
    program = tmp_path / "point.py"
    program.write_text("def point():\n    return [2.5, -2.5]\n")
    result = run_elm("eval", str(toy_config()), str(program), "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    assert report["status"] == "ok" and report["fitness"] == -0.5
    assert report["descriptor"] == [2.5, -2.5] and report["niche_coordinates"] == [6, 1]

    program.write_text("def point():\n    return 'nowhere'\n")
    report = json.loads(run_elm("eval", str(toy_config()), str(program), "--json").stdout)
    assert report["status"] == "invalid" and "[x, y]" in report["reason"]
    program.write_text("def point(:\n")
    report = json.loads(run_elm("eval", str(toy_config()), str(program), "--json").stdout)
    assert report["status"] == "syntax_error"
    _assert_one_line_error(run_elm("eval", str(toy_config()), str(tmp_path / "no.py")), "not found")


def test_run_then_inspect(toy_config, tmp_path):
    out = tmp_path / "run"
    result = run_elm("run", str(toy_config(iterations=3)), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(out)
    assert (out / "config.yaml").is_file() and (out / "run.sqlite").is_file()
    summary = json.loads(run_elm("inspect", str(out), "--json", check=True).stdout)
    assert summary["iterations"] == 3
    assert summary["candidates"] == 1 + 3 * 8
    assert summary["coverage"] > 0 and summary["max_fitness"] is not None
    again = run_elm("run", str(toy_config(iterations=3)), "--out", str(out))
    _assert_one_line_error(again, "elm resume")


FAULTY = "environment.name=tests.faulty_environment:Faulty"


def test_no_valid_seed_is_one_line_exit_2_and_leaves_no_folder(toy_config, tmp_path):
    out = tmp_path / "run"
    result = run_elm("run", str(toy_config()), FAULTY, "environment.options.fault=raises",
                     "environment.options.broken_seed=true", "--out", str(out))
    assert result.stderr.startswith("elm: error: no seed program is valid"), result.stderr
    _assert_one_line_error(result, "(seed toy: invalid: scoring failed: ValueError: no score today; "
                                   "seed broken: invalid: point() must return [x, y])")
    assert not out.exists()


def test_an_unknown_seed_leaves_no_folder_and_no_blank_line(capsys, toy_config, tmp_path):
    runs = tmp_path / "runs"
    for extra in (["--out", str(runs / "named")], [f"run.out={runs}"]):
        assert main(["run", str(toy_config()), "environment.seeds=[nosuchseed]", *extra]) == 2
        err = capsys.readouterr().err  # the progress bar is on: stderr is not a terminal
        assert err == "elm: error: unknown seed(s) nosuchseed (known: toy)\n"
        assert not runs.exists() or list(runs.iterdir()) == []


def test_a_failed_start_keeps_what_was_in_the_folder_before(capsys, toy_config, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = main(["run", str(toy_config()), FAULTY, "environment.options.fault=returns_none",
                 "--out", str(out), "--quiet"])
    assert code == 2 and "no seed program is valid" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_elm_debug_shows_the_traceback_behind_a_one_line_error(capsys, monkeypatch, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("run:\n  iterations: [1\n")
    assert main(["run", str(broken)]) == 2
    plain = capsys.readouterr().err
    assert plain.startswith("elm: error: cannot parse") and "Traceback" not in plain
    monkeypatch.setenv("ELM_DEBUG", "1")
    assert main(["run", str(broken)]) == 2
    debug = capsys.readouterr().err
    assert debug.count("Traceback (most recent call last)") == 2  # the YAML error, then ours
    assert "yaml.parser.ParserError" in debug and "elm.config.ConfigError" in debug
    assert debug.endswith(plain)


def test_a_mis_shaped_descriptor_is_an_invalid_candidate_in_a_run(capsys, toy_config, tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(toy_config(iterations=2)), FAULTY, "environment.options.fault=short_descriptor",
                 "environment.options.spare_seed=true", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--failures", "--json"]) == 0
    failures = json.loads(capsys.readouterr().out)
    invalid = [r for r in failures["reasons"] if r["status"] == "invalid"]
    assert [r["reason"] for r in invalid] == ["score() returned a descriptor of # value(s) for # dimension(s) (x, y)"]
    assert invalid[0]["count"] > 0


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    import subprocess
    import sys

    from tests.conftest import REPO, cli_env

    # the pipe is closed before `elm` writes anything, as `elm env list --json | head -0` does
    process = subprocess.Popen([sys.executable, "-m", "elm.cli", "env", "list", "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=cli_env(), cwd=REPO)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    errors = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert errors == ""
