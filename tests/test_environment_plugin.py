"""A third-party environment, end to end: the example from environments/README.md is written
into a folder outside the repository, registered as `module:Class` and as an installed
entry point, checked by `elm env check`, and evolved by `elm run` in the local sandbox."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

GUIDE = REPO / "environments" / "README.md"
SPEC = "sine_curve_env:SineCurve"
CONFIG = """\
run:
  iterations: 4
  batch_size: 6
  seed: 3
  snapshot_every: 2
environment:
  name: {name}
mutation:
  operator: gp
sandbox:
  backend: local
  pool_size: 2
  timeout_s: 5
"""


def _example_source() -> str:
    """The one-file example of the guide, exactly as a reader would copy it."""
    match = re.search(r"<!-- example: sine_curve_env\.py -->\s*```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert match, "the guide lost its example"
    return match.group(1)


@pytest.fixture(scope="module")
def plugin_folder(tmp_path_factory) -> Path:
    """The example module plus a dist-info that registers it in the entry-point group."""
    folder = tmp_path_factory.mktemp("third_party")
    assert REPO not in folder.parents
    (folder / "sine_curve_env.py").write_text(_example_source())
    info = folder / "sine_curve_env-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sine-curve-env\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[elm.environments]\nsine_curve = {SPEC}\n")
    return folder


def _elm(plugin_folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(plugin_folder)])
    return subprocess.run([sys.executable, "-m", "elm.cli", *args], capture_output=True, text=True,
                          env=env, cwd=plugin_folder, timeout=timeout)


def test_the_installed_entry_point_is_listed(plugin_folder):
    listed = _elm(plugin_folder, "env", "list")
    assert listed.returncode == 0, listed.stderr
    assert "sine_curve" in listed.stdout and "line" in listed.stdout


@pytest.mark.parametrize("name", [SPEC, "sine_curve"])
def test_env_check_passes_for_both_registrations(plugin_folder, name):
    checked = _elm(plugin_folder, "env", "check", name, "--backend", "local")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "line" in checked.stdout and "ok" in checked.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", [SPEC, "sine_curve"])
def test_a_short_evolution_runs_end_to_end(plugin_folder, tmp_path, name):
    config = tmp_path / "sine.yaml"
    config.write_text(CONFIG.format(name=name))
    run_dir = tmp_path / "run"
    ran = _elm(plugin_folder, "run", str(config), "--out", str(run_dir), "--quiet")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == str(run_dir)
    inspected = _elm(plugin_folder, "inspect", str(run_dir), "--json")
    assert inspected.returncode == 0, inspected.stderr
    summary = json.loads(inspected.stdout)
    assert summary["iterations"] == 4
    assert summary["candidates"] == 1 + 4 * 6
    assert summary["coverage"] > 0
    assert summary["funnel"]["placed"] > 1  # children, not only the seed, reached the archive
    assert summary["max_fitness"] > -10.0
