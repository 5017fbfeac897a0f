"""Shared fixtures: a CLI runner and small configs for the toy environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def runners_replaced(sandbox) -> int:
    """How many runners the sandbox replaced since its events were last taken, from its
    `runners_replaced` event (taking its events)."""
    return sum(detail["count"] for kind, detail in sandbox.take_events() if kind == "runners_replaced")


def containers_of(sandbox) -> list[str]:
    """Ids of a Docker sandbox's containers, found by its owner label as any Docker client finds them."""
    import docker

    from elm.sandbox.docker import OWNER_LABEL

    client = docker.from_env()
    try:
        return [c.id for c in client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={sandbox.owner}"})]
    finally:
        client.close()


def run_elm(*args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    """Run the `elm` CLI in a child process, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "elm.cli", *args], capture_output=True, text=True,
        env=cli_env(), cwd=REPO, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"elm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


TOY_CONFIG = """\
run:
  iterations: {iterations}
  batch_size: 8
  seed: 7
  snapshot_every: 2
environment:
  name: tests.toy_environment:Toy
mutation:
  operator: gp
sandbox:
  backend: {backend}
  pool_size: 2
  timeout_s: 5
"""


@pytest.fixture
def toy_config(tmp_path: Path):
    """Write a toy config; returns a function taking iterations and backend."""

    def write(iterations: int = 4, backend: str = "local") -> Path:
        path = tmp_path / f"toy-{iterations}-{backend}.yaml"
        path.write_text(TOY_CONFIG.format(iterations=iterations, backend=backend))
        return path

    return write
