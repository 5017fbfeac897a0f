"""The Docker daemon goes away while a run is going: the pool reconnects and finishes the
run, or (if the daemon stays away past the retry window) stops with SandboxUnavailable.

These tests stop and restart the machine's dockerd (with its original command line, or
through systemd where systemd runs it) and wait until it answers again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import docker
import pytest

from elm.config import SandboxConfig
from elm.sandbox import Job, SandboxUnavailable
from elm.sandbox.docker import OWNER_LABEL, DockerSandbox

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.serial]

REPO = Path(__file__).resolve().parent.parent
CONFIG = SandboxConfig(backend="docker", pool_size=2)
DAEMON_WAIT_S = 90
SLEEPER = "import time\n\ndef main():\n    time.sleep(0.3)\n    return {n}\n"


def test_run_survives_a_daemon_restart():
    sandbox = _open(reconnect_s=60)
    try:
        # About 9 s of work on 2 slots: a slow daemon shutdown still lands mid-run.
        jobs = [Job({"c.py": SLEEPER.format(n=n)}, "c.py", timeout_s=20) for n in range(60)]
        run = _Background(lambda: sandbox.run_many(jobs))
        time.sleep(1.0)
        with _daemon_stopped():
            time.sleep(1.0)
        outcomes = run.result(timeout=180)
        assert [(o.status, o.result) for o in outcomes] == [("ok", n) for n in range(60)]
        assert sum(detail["count"] for kind, detail in sandbox.take_events() if kind == "runners_replaced") >= 1
        assert [o.status for o in sandbox.run_many(jobs[:4])] == ["ok"] * 4
    finally:
        sandbox.close()
    _assert_no_containers_left(sandbox.owner)


def test_run_stops_cleanly_when_the_daemon_stays_away():
    sandbox = _open(reconnect_s=3)
    try:
        jobs = [Job({"c.py": SLEEPER.format(n=n)}, "c.py", timeout_s=20) for n in range(200)]
        run = _Background(lambda: sandbox.run_many(jobs))
        time.sleep(1.0)
        with _daemon_stopped():
            with pytest.raises(SandboxUnavailable) as raised:
                run.result(timeout=120)
        message = str(raised.value)
        assert "did not come back within 3 s" in message and "install_docker.sh" in message
        assert "resumed" in message
        assert [o.status for o in sandbox.run_many(jobs[:2])] == ["ok", "ok"]  # daemon back: carries on
    finally:
        sandbox.close()
    _assert_no_containers_left(sandbox.owner)


def _open(reconnect_s: float) -> DockerSandbox:
    try:
        return DockerSandbox(CONFIG, reconnect_s=reconnect_s)
    except SandboxUnavailable as problem:
        pytest.fail(f"Docker sandbox unavailable (run scripts/install_docker.sh and `elm sandbox build`): {problem}")


class _Background:
    """Runs `work` in a thread; `result` re-raises what it raised."""

    def __init__(self, work) -> None:
        self._value = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work) -> None:
        try:
            self._value = work()
        except BaseException as problem:
            self._error = problem

    def result(self, timeout: float):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the run neither finished nor stopped"
        if self._error is not None:
            raise self._error
        return self._value


class _daemon_stopped:
    """Stops dockerd on entry; starts it again (as it was started) on exit and waits for it."""

    def __enter__(self) -> _daemon_stopped:
        self.systemd = _systemd_runs_docker()
        if self.systemd:
            subprocess.run(["systemctl", "stop", "docker.socket", "docker"], check=True)
        else:
            pid = _dockerd_pid()
            self.command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            os.kill(pid, signal.SIGTERM)
            _wait_for(lambda: not _process_exists(pid), "dockerd to stop")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.systemd:
            subprocess.run(["systemctl", "start", "docker"], check=True)
        else:
            with open("/var/log/elm-dockerd.log", "ab") as log:
                subprocess.Popen(self.command, stdout=log, stderr=log, start_new_session=True)
        _wait_for(_docker_answers, "dockerd to answer again")


def _systemd_runs_docker() -> bool:
    if shutil.which("systemctl") is None:
        return False
    state = subprocess.run(["systemctl", "is-active", "docker"], capture_output=True, text=True)
    return state.stdout.strip() == "active"


def _dockerd_pid() -> int:
    found = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()
    if len(found) != 1:
        pytest.fail(f"expected one dockerd process, found {found}")
    return int(found[0])


def _docker_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DAEMON_WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {DAEMON_WAIT_S} s for {what}")
        time.sleep(0.2)


def _assert_no_containers_left(owner: str) -> None:
    """Every container of the pool was removed. After a daemon restart, overlay2 can refuse
    to unmount a killed container's root ("device or resource busy") and Docker marks it
    `dead`: that is the engine's own leftover, which no API call can remove until the
    mount is released, so only containers in any other state count as ours."""
    client = docker.from_env()
    try:
        left = client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})
        assert [c for c in left if c.status != "dead"] == []
    finally:
        client.close()
