"""elm installed from its wheel (not editable) and used from a folder outside the
repository: the sandbox runtime and the built-in environments come from the wheel, and the
built-ins take no generic top-level import name.

The wheel is built from a copy of the tracked layout (nothing is written into the
checkout) and installed into a fresh virtual environment that sees this interpreter's
packages (torch, ray, ...) but not its elm. The sandbox image gets a name of its own,
removed afterwards, so no shared image is rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path
from types import SimpleNamespace

import docker
import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.docker]

_NOT_SHIPPED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__", "rootfs", "tests")
HELLO = "def main():\n    return {'answer': 42}\n"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SHIPPED)
    _call([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
           "-w", str(root / "dist"), str(source)], cwd=root)
    wheel = next((root / "dist").glob("elm-*.whl"))
    venv.create(root / "venv", with_pip=False)
    python = root / "venv" / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    _call([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
           "--no-index", str(wheel)], cwd=root, env=env)
    # Only now the dependencies: an elm among them would count as already installed.
    _site_packages(python).joinpath("elm_dependencies.pth").write_text(
        "\n".join(sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})) + "\n")
    outside = root / "elsewhere"
    outside.mkdir()
    image = f"elm-sandbox:wheel-test-{os.getpid()}"
    env["ELM_SANDBOX_IMAGE"] = image
    yield SimpleNamespace(elm=str(root / "venv" / "bin" / "elm"), python=str(python), cwd=outside, env=env)
    client = docker.from_env()
    try:
        client.images.remove(image)
    except docker.errors.ImageNotFound:
        pass
    finally:
        client.close()


def _call(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"


def _site_packages(python: Path) -> Path:
    found = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, check=True)
    return Path(found.stdout.strip())


def _elm(installed: SimpleNamespace, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([installed.elm, *args], cwd=installed.cwd, env=installed.env,
                          capture_output=True, text=True, timeout=timeout)


def test_installed_elm_runs_from_any_folder(installed):
    where = subprocess.run([installed.python, "-c", "import elm, elm_environments; print(elm.__file__)"],
                           cwd=installed.cwd, env=installed.env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert "site-packages" in where.stdout and str(REPO) not in where.stdout
    generic = subprocess.run([installed.python, "-c", "import environments"],
                             cwd=installed.cwd, env=installed.env, capture_output=True, text=True)
    assert generic.returncode == 1 and "No module named 'environments'" in generic.stderr

    built = _elm(installed, "sandbox", "build")
    assert built.returncode == 0, built.stderr
    assert f"image {installed.env['ELM_SANDBOX_IMAGE']}: built" in built.stdout

    (installed.cwd / "hello.py").write_text(HELLO)
    ran = _elm(installed, "sandbox", "run", "hello.py")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["result"] == {"answer": 42}

    listed = _elm(installed, "env", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    origins = {row["name"]: row["from"] for row in json.loads(listed.stdout)}
    assert origins["sodarace"] == "elm_environments.sodarace"

    checked = _elm(installed, "env", "check", "sodarace")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "4 seed(s) valid" in checked.stdout

    config = installed.cwd / "quickstart.yaml"
    shutil.copy(REPO / "configs" / "quickstart.yaml", config)
    run = _elm(installed, "run", config.name, "--out", "run", "run.iterations=2", "run.batch_size=4")
    assert run.returncode == 0, run.stderr
    run_dir = installed.cwd / "run"
    assert (run_dir / "report.html").is_file()
    assert sorted(p.name for p in run_dir.glob("run.sqlite*")) == ["run.sqlite"]


@pytest.mark.ray
def test_installed_elm_runs_the_pipeline_bench(installed):
    bench = _elm(installed, "bench", "pipeline", "--json", "--iterations", "2", "--batch-size", "4",
                 "--new-tokens", "16")
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout)["pipelined_s"] > 0
