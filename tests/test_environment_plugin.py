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


@pytest.fixture
def clean_imports(monkeypatch):
    """sys.path restored after the test, and the modules it imported forgotten."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_module_class_finds_a_module_in_the_current_folder(plugin_folder, monkeypatch, clean_imports):
    """As the `elm` script runs: the current folder is not on sys.path."""
    from elm.environment import load_environment

    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != plugin_folder.resolve()]
    sys.modules.pop("sine_curve_env", None)
    monkeypatch.chdir(plugin_folder)
    assert type(load_environment(SPEC)).__name__ == "SineCurve"
    assert sys.path[-1] == str(plugin_folder)  # last: it never shadows an installed module


def test_a_missing_module_says_where_it_was_looked_for(tmp_path, monkeypatch, clean_imports):
    from elm.environment import EnvironmentLoadError, load_environment

    monkeypatch.chdir(tmp_path)
    with pytest.raises(EnvironmentLoadError, match="No module named 'absent_env' .*current folder"):
        load_environment("absent_env:Absent")


def test_an_entry_point_is_found_by_its_key_and_by_its_classs_name(tmp_path, clean_imports):
    """`elm env list` shows the key; the class's own `name` works as well."""
    from elm.environment import load_environment

    (tmp_path / "renamed_env.py").write_text(
        "from tests.toy_environment import Toy\n\n\nclass Renamed(Toy):\n    name = 'renamed_toy'\n")
    info = tmp_path / "renamed_env-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: renamed-env\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[elm.environments]\ntoy_key = renamed_env:Renamed\n")
    sys.path.append(str(tmp_path))
    assert type(load_environment("toy_key")).__name__ == "Renamed"
    assert type(load_environment("renamed_toy")).__name__ == "Renamed"


def test_the_guide_says_where_its_names_come_from():
    guide = GUIDE.read_text()
    exec("from elm.environment import EnvironmentLoadError", {})  # the import line the guide gives
    assert "from elm.environment import EnvironmentLoadError" in guide
    assert "elm finetune RUN --from-scratch --out DIR" in guide
    assert all(name in guide for name in ("config.json", "tokenizer", "causal"))


def test_the_guides_text_descriptor_example_runs(plugin_folder, clean_imports, tmp_path):
    """The guide's example of a descriptor computed from the program's text, in the sandbox."""
    from elm.config import SandboxConfig
    from elm.evaluator import Evaluator
    from elm.mutation import Child
    from elm.sandbox import open_sandbox

    match = re.search(r"<!-- example: text_descriptor -->\s*```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert match, "the guide lost its text descriptor example"
    module = tmp_path / "text_descriptor_env.py"
    module.write_text(f"from sine_curve_env import *\nfrom sine_curve_env import SineCurve\n\n{match.group(1)}")
    sys.path[:0] = [str(tmp_path), str(plugin_folder)]
    namespace: dict = {}
    exec(compile(module.read_text(), str(module), "exec"), namespace)
    environment = namespace["SineCurveByLength"]()
    (seed,) = environment.seeds()
    settings = SandboxConfig(backend="local", pool_size=1)
    sandbox = open_sandbox(settings)
    try:
        (record,) = Evaluator(environment, sandbox, settings).evaluate(
            [Child(None, seed.source, "seed")], [0], iteration=0)
    finally:
        sandbox.close()
    assert record.status == "ok", record.error
    assert record.descriptor[1] == len(seed.source.splitlines())
