"""The local backend: a warm pool of runner processes (`sandbox/runner/`) on this machine.

For machines without Docker, and only when the configuration says `sandbox.backend: local`.
The runner is the same file the containers run, so jobs get the same rlimits, timeouts,
statuses and output caps; what is missing is the container around it: no network,
filesystem or memory-cgroup isolation. Do not point it at code you do not trust.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from elm.sandbox import SandboxUnavailable
from elm.sandbox.image import runner_path
from elm.sandbox.leftovers import owned_folder, remove_abandoned_folders, remove_folder
from elm.sandbox.pool import PooledSandbox, RunnerDeath, RunnerLost, RunnerPool, RunnerWedged
from elm.sandbox.protocol import ProtocolError, check_ready

if TYPE_CHECKING:
    from elm.config import SandboxConfig

READY_TIMEOUT_S = 60.0
STDERR_TAIL_BYTES = 4096
_FOLDER_PREFIX = "elm-sandbox-"  # then the owner's pid: folders of vanished owners are removed


class LocalSandbox(PooledSandbox):
    """`Sandbox` over local runner processes."""

    def __init__(self, config: SandboxConfig, hidden_env: Sequence[str] = ()) -> None:
        self._launcher = _ProcessLauncher(config, hidden_env)
        self._pool = RunnerPool(self._launcher, config, reconnect_s=0.0)
        self._pool.warm_up()


class _ProcessLauncher:
    def __init__(self, config: SandboxConfig, hidden_env: Sequence[str] = ()) -> None:
        self.config = config
        self.hidden_env = frozenset(hidden_env)
        remove_abandoned_folders(_FOLDER_PREFIX)
        self.folder = owned_folder(_FOLDER_PREFIX)
        self._runner = str(runner_path())
        self._count = 0

    def launch(self) -> _ProcessChannel:
        self._count += 1
        scratch = self.folder / f"runner-{self._count}"
        stderr_path = self.folder / f"runner-{self._count}.stderr"
        command = [sys.executable, "-I", self._runner, "--scratch", str(scratch)]
        processes = _user_process_allowance(self.config.pids_limit)
        if processes is not None:
            command += ["--max-user-processes", str(processes)]
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
                env={name: value for name, value in os.environ.items() if name not in self.hidden_env},
            )
        channel = _ProcessChannel(process, scratch, stderr_path)
        try:
            check_ready(channel.receive_line(READY_TIMEOUT_S, 65536))
        except (RunnerLost, RunnerWedged, ProtocolError) as problem:
            death = channel.death().description if isinstance(problem, RunnerLost) else str(problem)
            channel.close()
            raise SandboxUnavailable(f"the local sandbox runner did not start: {death}") from None
        return channel

    def reachable(self) -> bool:
        return True

    def unavailable_message(self, waited_s: float) -> str:
        return "the local sandbox runner cannot be started"

    def after_reconnect(self) -> None:
        pass

    def close(self) -> None:
        remove_folder(self.folder)


class _ProcessChannel:
    def __init__(self, process: subprocess.Popen, scratch: Path, stderr_path: Path) -> None:
        self.process = process
        self.scratch = scratch
        self.stderr_path = stderr_path
        self._out = process.stdout.fileno()  # type: ignore[union-attr]
        self._in = process.stdin.fileno()  # type: ignore[union-attr]
        self._buffer = bytearray()

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, data: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        try:
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([], [self._in], [], remaining)[1]:
                    raise RunnerWedged("the runner does not read its jobs")
                view = view[os.write(self._in, view[:65536]):]
        except OSError as problem:  # BrokenPipeError: the runner is gone
            raise RunnerLost(str(problem)) from None

    def receive_line(self, timeout: float, limit: int) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > limit:
                raise ProtocolError(f"answer longer than {limit} bytes")
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._out], [], [], remaining)[0]:
                raise RunnerWedged("no answer in time")
            chunk = os.read(self._out, 262144)
            if not chunk:
                raise RunnerLost("end of stream")
            self._buffer += chunk

    def death(self) -> RunnerDeath:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return RunnerDeath("the runner process closed its output but kept running")
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        tail = self.stderr_path.read_bytes()[-STDERR_TAIL_BYTES:].decode("utf-8", "replace").strip()
        lines = " | ".join(tail.splitlines()[-3:])
        return RunnerDeath(f"local runner {how}" + (f": {lines}" if lines else ""))

    def close(self) -> None:
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        remove_folder(self.scratch)
        self.stderr_path.unlink(missing_ok=True)


def _user_process_allowance(pids_limit: int) -> int | None:
    """RLIMIT_NPROC for candidates: the user's current processes plus the pids limit.
    None for root, whom the kernel exempts from it anyway."""
    uid = os.getuid()
    if uid == 0:
        return None
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                continue
    return count + pids_limit


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (candidates run in sessions of their own, so a process
    group would miss them)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            children = [int(child) for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
        except (OSError, ValueError):
            continue
        found += children
        pending += children
    return found
