"""`elm env list` and `elm env check`, run as a user runs them (child processes, local sandbox)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_elm

# A plug-in that breaks the contract twice: its seed returns garbage and its scoring
# crashes on data it did not expect.
BROKEN = '''\
from elm.environment import DescriptorSpace, Dimension, Environment, Program, Score


class Careless(Environment):
    name = "careless"
    file_name = "guess.py"
    entry_point = "guess"
    descriptor_space = DescriptorSpace((Dimension("x", 0.0, 1.0, 4),))

    def seeds(self):
        return self.select_seeds([
            Program(self.file_name, "def guess():\\n    return 0.5\\n", "good"),
            Program(self.file_name, "def guess():\\n    return 'five'\\n", "bad"),
            Program(self.file_name, "def guess():\\n    raise KeyError('lost')\\n", "raises"),
        ])

    def score(self, result):
        if isinstance(result, str):
            return Score.invalid("a guess must be a number")
        return Score.of(-abs(result - 0.3), (result,))
'''


def _elm_with(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(folder)])
    return subprocess.run([sys.executable, "-m", "elm.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def test_list_shows_the_builtins_with_their_seeds():
    listed = run_elm("env", "list")
    assert listed.returncode == 0, listed.stderr
    for name, seed in [("circle_packing", "grid"), ("image", "landscape"), ("bin_packing", "best_fit")]:
        assert name in listed.stdout and seed in listed.stdout


def test_list_as_json_names_descriptors_seeds_and_file():
    listed = run_elm("env", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert {"sodarace", "circle_packing", "image", "bin_packing"} <= set(rows)
    sodarace = rows["sodarace"]
    assert sodarace["error"] is None and sodarace["file"] == "walker.py"
    assert [d["name"] for d in sodarace["descriptors"]] == ["height", "width", "mass"]
    assert all(d["low"] < d["high"] and d["bins"] >= 1 for d in sodarace["descriptors"])
    assert "radial" in sodarace["seeds"]


@pytest.mark.parametrize("name", ["circle_packing", "image", "bin_packing"])
def test_check_passes_for_each_builtin(name):
    checked = run_elm("env", "check", name, "--backend", "local")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for seed in {"circle_packing": ("grid", "rings"), "image": ("flat", "landscape"),
                 "bin_packing": ("best_fit", "first_fit", "weighted")}[name]:
        assert seed in checked.stdout
    assert "problem" not in checked.stdout


@pytest.mark.docker
@pytest.mark.parametrize("name", ["circle_packing", "image", "bin_packing"])
def test_check_passes_for_each_builtin_in_docker(name):
    checked = run_elm("env", "check", name, "--backend", "docker")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok:" in checked.stdout


def test_check_takes_options_from_overrides_and_configs(tmp_path):
    checked = run_elm("env", "check", "circle_packing", "environment.options.n=5", "environment.seeds=[rings]",
                      "--backend", "local")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "rings" in checked.stdout and "grid" not in checked.stdout
    config = tmp_path / "small.yaml"
    config.write_text("environment:\n  name: bin_packing\n  options: {items: 40, instances: 2}\n"
                      "sandbox:\n  backend: local\n")
    checked = run_elm("env", "check", "bin_packing", "--config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_check_renders_each_seed(tmp_path):
    checked = run_elm("env", "check", "image", "--backend", "local", "--render", str(tmp_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.png", "landscape.png"]


def test_check_reports_what_is_wrong_and_exits_1(tmp_path):
    (tmp_path / "careless_env.py").write_text(BROKEN)
    checked = _elm_with(tmp_path, "env", "check", "careless_env:Careless", "--backend", "local")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    out = " ".join(checked.stdout.split())
    assert "seed bad: invalid: a guess must be a number" in out
    assert "seed raises: sandbox status error:" in out and "lost" in out
    assert "scoring null: scoring failed: TypeError" in out
    assert "seed good" not in out  # the valid seed is not a problem


def test_check_reports_plugin_code_that_raises(tmp_path):
    (tmp_path / "crashing_env.py").write_text("raise RuntimeError('cannot start')\n")
    (tmp_path / "seedless_env.py").write_text(BROKEN.replace(
        "return self.select_seeds([", "raise OSError('no seeds here')\n        return self.select_seeds(["))
    crashing = _elm_with(tmp_path, "env", "check", "crashing_env:Careless", "--backend", "local")
    assert crashing.returncode == 2
    assert crashing.stderr.strip() == (
        "elm: error: environment 'crashing_env:Careless' failed while importing: "
        "RuntimeError: cannot start")
    seedless = _elm_with(tmp_path, "env", "check", "seedless_env:Careless", "--backend", "local")
    assert seedless.returncode == 1
    assert "seeds() raised OSError: no seeds here" in " ".join(seedless.stdout.split())
    assert "Traceback" not in crashing.stderr + seedless.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("env", "check", "no_such_environment"), "unknown environment"),
        (("env", "check", "circle_packing", "environment.options.n=0"), "option n"),
        (("env", "check", "circle_packing", "--config", "missing.yaml"), "config file not found"),
        (("env", "check", "nowhere.module:Thing"), "cannot import"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    checked = run_elm(*args)
    assert checked.returncode == 2
    assert message in checked.stderr and len(checked.stderr.strip().splitlines()) == 1
    assert "Traceback" not in checked.stderr
