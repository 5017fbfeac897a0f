"""The runner proper: serves one job at a time (files, the spawner's report, the
candidate's output and result, its status) and cleans up after it."""

from __future__ import annotations

import json
import json.encoder
import marshal
import math
import os
import resource
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .child import (
    EXIT_NO_RESULT_CHANNEL,
    JOB_MODULES,
    TAG_BAD,
    TAG_ERROR,
    TAG_MEMORY,
    TAG_RESULT,
    call_main,
    precompile,
    write_all,
)
from .kernel import KERNEL, read_small_file
from .processes import (
    CLEANUP_SECONDS,
    clear_processes,
    clear_strays,
    descendants,
    is_running,
    reap_dead_strays,
    remove_ipc_objects,
)
from .protocol import RESULT_LIMIT_BYTES, TOKEN_FIELD
from .spawner import LIVENESS_S, Ending, Spawner, SpawnerLost

_LIMITED = (
    resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_CORE,
    resource.RLIMIT_NOFILE, resource.RLIMIT_MSGQUEUE, resource.RLIMIT_NPROC,
)


_READ_CHUNK = 65536


_SIGNAL_MEANINGS = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted",
    signal.SIGFPE: "floating-point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGTERM: "terminated",
}


class Runner:
    """Serves jobs one at a time from a scratch root that it owns and wipes."""

    def __init__(self, scratch: Path, max_user_processes: int | None, candidate_uid: int | None = None) -> None:
        self.scratch = str(scratch)
        self.candidate_uid = candidate_uid  # the spawner's (and so every candidate's) uid, where it differs
        os.makedirs(self.scratch, exist_ok=True)
        self.is_namespace_init = os.getpid() == 1
        self.workdir = os.path.join(self.scratch, "job")  # the same path every time: see warm_up
        self.spawner: Spawner | None = None
        self._oom_kills = _oom_kill_count()
        self._hard_limits = {kind: resource.getrlimit(kind)[1] for kind in _LIMITED}
        self._static_limits = [(resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, 256)]
        if KERNEL.msgqueue_limit:  # else mq_open is refused outright (see startup._install_syscall_filter)
            self._static_limits.append((resource.RLIMIT_MSGQUEUE, 0))
        if max_user_processes is not None:
            self._static_limits.append((resource.RLIMIT_NPROC, max_user_processes))

    def start_spawner(self, fresh: bool = False) -> None:
        self.spawner = Spawner(self.is_namespace_init, self.scratch, fresh, self.candidate_uid)

    def serve(self, line: bytes) -> dict[str, Any]:
        job_id = token = None
        try:
            request = json.loads(line)
            job_id, token = request.get("id"), request.get(TOKEN_FIELD)
            job = _JobRequest(request)
        except (ValueError, TypeError, KeyError, AttributeError) as problem:
            answer = _answer("error", error=f"sandbox: invalid job request: {problem}")
            answer.update({"id": job_id, TOKEN_FIELD: token})
            return answer
        try:
            answer = self._run(job)
        except Exception as problem:  # a fault of the runner costs this job and the runner, no more
            answer = _answer("error", error=f"sandbox runner failed: {problem!r}", retire=True)
        answer.update({"id": job_id, TOKEN_FIELD: token})
        return answer

    def _run(self, job: _JobRequest) -> dict[str, Any]:
        workdir = self.workdir
        started = time.monotonic()  # compiling the job's files counts too
        try:
            _write_files(workdir, job.files)
        except (OSError, ValueError) as problem:
            retire = not self._wipe_scratch()
            return _answer("error", error=f"sandbox: cannot write job files: {problem}", retire=retire)
        out_read, out_write = os.pipe()
        result_read, result_write = os.pipe()
        order = marshal.dumps((workdir, job.entry, self._limits(job), precompile(workdir, job.files)))
        watch = _Watch(out_read, result_read, job.output_limit_bytes)
        try:
            left_s = max(started + job.timeout_s - time.monotonic(), 0.001)
            self._spawner().spawn(order, left_s, out_write, result_write)
            spawned = True
        except SpawnerLost:
            spawned = False  # nothing to watch: the candidate (if any) goes with the spawner below
        finally:
            os.close(out_write)
            os.close(result_write)
        ending = self._follow(watch, started + job.timeout_s + CLEANUP_SECONDS) if spawned else None
        # A candidate that stopped or killed its spawner may still return from main(): let
        # it, within its own wall-clock limit, before the cleaning up kills what is left.
        outlived_limit = spawned and ending is None and not self._job_ended_by(watch, started + job.timeout_s)
        # Whatever the job left behind is cleared on its own account, before it is answered
        # (and so before the host sends the next job and starts that job's clock).
        cleared, wiped = self._clean_up(job, watch, ending)
        oom_killed = self._oom_killed_since_last_job()
        answer = _classify(watch, ending, job, oom_killed, outlived_limit)
        # After an out-of-memory kill the container is due for replacement: its page cache
        # was squeezed, and Docker's OOMKilled flag would blame every later death on memory.
        answer.update(seconds=round(time.monotonic() - started, 6), retire=oom_killed or not (cleared and wiped))
        return answer

    def _follow(self, watch: _Watch, deadline: float) -> Ending | None:
        """Collect the candidate's output until the spawner reports its end; None if the
        spawner is lost (it kills candidates at their limit: no report by `deadline`, the
        limit plus CLEANUP_SECONDS, means it is stopped or stuck)."""
        try:
            watch.follow(self._spawner(), deadline)
            return self._spawner().ending(max(deadline - time.monotonic(), 0.0))
        except SpawnerLost:
            return None

    def _job_ended_by(self, watch: _Watch, limit: float) -> bool:
        """With the spawner lost: wait until every process of the job has ended and closed
        its pipes (True), or its wall-clock limit passes (False)."""
        if not watch.read_until_closed(limit):
            return False
        lost = self.spawner.pid if self.spawner is not None else None
        while any(pid != lost and is_running(pid) for pid in descendants(os.getpid())):
            if time.monotonic() > limit:
                return False
            time.sleep(0.01)
        return True

    def _clean_up(self, job: _JobRequest, watch: _Watch, ending: Ending | None) -> tuple[bool, bool]:
        """Leftover processes, System V IPC objects, pipes, files, and a fresh spawner in
        place of a lost one: (all cleared, files wiped)."""
        cleared = ending.cleared if ending is not None else self._drop_spawner()
        if cleared:
            cleared = self._clear_strays()
        if cleared and self.is_namespace_init:
            cleared = remove_ipc_objects()
        watch.drain_and_close()
        wiped = self._wipe_job_files(self.workdir, job.files) or self._wipe_scratch()
        if self.spawner is None and cleared and wiped:
            try:
                self.start_spawner(fresh=True)
            except SpawnerLost:
                cleared = False
        return cleared, wiped

    def _clear_strays(self) -> bool:
        """Processes of the job that came to the runner, not to the spawner: under gVisor,
        which hands orphans to PID 1. Those of the candidate's process group are dead
        already (the spawner killed the group) and are only reaped here. As the
        container's init, the runner ends any other at once with kill(-1), which takes the
        spawner too (a fresh one follows): a fork bomb whose processes left its group
        would outrun killing them one at a time."""
        spawner = self.spawner.pid if self.spawner is not None else None
        if not self.is_namespace_init:
            return clear_strays(spawner)
        return reap_dead_strays(spawner) or self._drop_spawner()

    def _spawner(self) -> Spawner:
        if self.spawner is None:
            raise SpawnerLost("no spawner")
        return self.spawner

    def _drop_spawner(self) -> bool:
        """The spawner is gone or stuck: kill every other process and reap them (a new
        spawner is started once the job's files are gone). False if some process would
        not die (the host then replaces the whole runner)."""
        if self.spawner is not None:
            self.spawner.close()
            self.spawner = None
        return clear_processes(self.is_namespace_init)

    def warm_up(self, rounds: int = 20) -> None:
        """Run the child's import path a few times here, before any fork, so that every
        child inherits it already specialised, with the job folder's import finder cached.
        The folder itself stays off the runner's sys.path: only children import from it."""
        files = {
            "_elm_warm_up.py": "import _elm_warm_up_helper\n\ndef main():\n    return [_elm_warm_up_helper.VALUE]\n",
            "_elm_warm_up_helper.py": "VALUE = 1\n",
        }
        _write_files(self.workdir, files)
        sys.path.insert(0, self.workdir)
        try:
            for round_number in range(rounds):
                compiled = precompile(self.workdir, files) if round_number % 2 else {}  # both import paths
                JOB_MODULES.compiled = compiled
                call_main(self.workdir, "_elm_warm_up.py", compiled)
                for name in files:
                    sys.modules.pop(name[:-3], None)
        finally:
            JOB_MODULES.compiled = {}
            sys.path.remove(self.workdir)
            self._wipe_scratch()

    def _limits(self, job: _JobRequest) -> list[tuple[int, int, int]]:
        address_space = self._spawner().address_space_bytes + job.memory_mb * 1024 * 1024
        cpu_seconds = math.ceil(job.timeout_s) + 1
        wanted = [
            (resource.RLIMIT_AS, address_space, address_space),
            (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1),  # soft: SIGXCPU, hard: SIGKILL
            (resource.RLIMIT_FSIZE, job.file_limit_bytes, job.file_limit_bytes),
            *((kind, value, value) for kind, value in self._static_limits),
        ]
        return [(kind, self._capped(kind, soft), self._capped(kind, hard)) for kind, soft, hard in wanted]

    def _capped(self, kind: int, value: int) -> int:
        hard = self._hard_limits[kind]
        return value if hard == resource.RLIM_INFINITY else min(value, hard)

    def _oom_killed_since_last_job(self) -> bool:
        count = _oom_kill_count()
        killed, self._oom_kills = count > self._oom_kills, count
        return killed

    def _wipe_job_files(self, workdir: str, files: dict[str, str]) -> bool:
        """The quick way, when the candidate left nothing else behind."""
        try:
            for name in files:
                os.unlink(os.path.join(workdir, name))
            os.rmdir(workdir)
        except OSError:
            return False
        return not os.listdir(self.scratch)

    def _wipe_scratch(self) -> bool:
        ok = True
        for name in os.listdir(self.scratch):
            ok = _remove_tree(os.path.join(self.scratch, name)) and ok
        return ok


class _JobRequest:
    def __init__(self, request: dict[str, Any]) -> None:
        self.files: dict[str, str] = dict(request["files"])
        self.entry = str(request["entry"])
        self.timeout_s = float(request["timeout_s"])
        self.memory_mb = int(request["memory_mb"])
        self.output_limit_bytes = int(request["output_limit_bytes"])
        self.file_limit_bytes = int(request["file_limit_bytes"])
        if self.entry not in self.files:
            raise ValueError(f"entry {self.entry!r} is not among the job files")
        if not (self.timeout_s > 0 and self.memory_mb > 0):
            raise ValueError("timeout_s and memory_mb must be positive")


class _Watch:
    """Collects one candidate's output and result while the spawner runs it."""

    def __init__(self, out_read: int, result_read: int, output_limit: int) -> None:
        self.out_read = out_read
        self.result_read = result_read
        self.output_limit = output_limit
        self.stdout = bytearray()
        self.stdout_bytes = 0
        self.result = bytearray()
        self.result_overflow = False

    def follow(self, spawner: Spawner, deadline: float) -> None:
        """Read the pipes until the candidate closed both or the spawner reported;
        SpawnerLost if neither happens by `deadline` or the spawner is stopped or dead."""
        if self._read_pipes(deadline, spawner) is None:
            raise SpawnerLost("no report from the spawner")

    def read_until_closed(self, deadline: float) -> bool:
        """With no spawner to report: read the pipes until every process of the candidate
        has closed them (True) or `deadline` passes (False)."""
        return self._read_pipes(deadline) == "closed"

    def _read_pipes(self, deadline: float, spawner: Spawner | None = None) -> str | None:
        """Read until both pipes are closed ("closed"), the spawner reported ("report"),
        or `deadline` passes or the spawner is stopped or dead (None)."""
        poller = select.poll()
        open_pipes = {self.out_read, self.result_read}
        report = spawner.fileno() if spawner is not None else None
        for fd in open_pipes if report is None else (*open_pipes, report):
            poller.register(fd, select.POLLIN)
        while open_pipes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            events = poller.poll(math.ceil(min(remaining, LIVENESS_S) * 1000))
            if not events and spawner is not None and not spawner.running():
                return None
            for fd, _ in events:
                if fd == report:
                    return "report"
                if not self._read_from(fd):
                    poller.unregister(fd)
                    open_pipes.discard(fd)
        return "closed"

    def returned(self) -> bool:
        """The whole result of a main() that returned is in."""
        return self.result.startswith(TAG_RESULT) and not self.result_overflow

    def output(self) -> dict[str, Any]:
        return {
            "stdout": self.stdout.decode("utf-8", "replace"),
            "stdout_bytes": self.stdout_bytes,
            "stdout_truncated": self.stdout_bytes > len(self.stdout),
        }

    def drain_and_close(self) -> None:
        """After every writer is gone: take what is left in the pipes, then close them."""
        for fd in (self.out_read, self.result_read):
            os.set_blocking(fd, False)  # a writer the spawner could not kill must not hang us
            try:
                while self._read_from(fd):
                    pass
            except BlockingIOError:
                pass
            os.close(fd)

    def _read_from(self, fd: int) -> bool:
        chunk = os.read(fd, _READ_CHUNK)
        if not chunk:
            return False
        if fd == self.out_read:
            room = max(self.output_limit - len(self.stdout), 0)
            self.stdout += chunk[:room]
            self.stdout_bytes += len(chunk)
        else:
            room = max(RESULT_LIMIT_BYTES + 1 - len(self.result), 0)
            self.result += chunk[:room]
            self.result_overflow = self.result_overflow or len(chunk) > room
        return True


def _classify(
    watch: _Watch, ending: Ending | None, job: _JobRequest, oom_killed: bool, outlived_limit: bool
) -> dict[str, Any]:
    """`ending` is None when the spawner was lost; `outlived_limit`: the candidate's
    processes then still held its pipes at its wall-clock limit."""
    stdout = watch.output()
    timeout_error = f"wall-clock limit of {job.timeout_s:g} s exceeded"
    if ending is not None and ending.timed_out:
        return _answer("timeout", error=timeout_error, **stdout)
    if ending is None and outlived_limit:
        return _answer("timeout", error=timeout_error, **stdout)
    if ending is None and not watch.result:
        error = "the sandbox's process spawner was lost during this candidate (did the candidate signal it?)"
        return _answer("killed", error=error, **stdout)
    status_word = ending.wait_status if ending is not None else 0  # lost spawner, but a message came
    if os.WIFSIGNALED(status_word):
        return _classify_signal(os.WTERMSIG(status_word), job, oom_killed, stdout)
    exit_code = os.WEXITSTATUS(status_word)
    message = bytes(watch.result)
    if exit_code != 0 or not message:
        why = "its result channel was closed" if exit_code == EXIT_NO_RESULT_CHANNEL else "no result (os._exit?)"
        error = f"the candidate exited with code {exit_code} before main() returned: {why}"
        return _answer("bad_output", exit_code=exit_code, error=error, **stdout)
    if watch.result_overflow:
        return _answer("bad_output", error=f"result larger than {RESULT_LIMIT_BYTES} bytes", **stdout)
    tag, payload = message[:1], message[1:].decode("utf-8", "replace")
    if tag == TAG_RESULT:
        return _answer("ok", result_json=payload, **stdout)
    status = {TAG_ERROR: "error", TAG_MEMORY: "memory", TAG_BAD: "bad_output"}.get(tag)
    if status is None:
        return _answer("bad_output", error="malformed message on the result channel", **stdout)
    return _answer(status, error=payload, **stdout)


def _classify_signal(number: int, job: _JobRequest, oom_killed: bool, stdout: dict[str, Any]) -> dict[str, Any]:
    name = _signal_name(number)
    if number == signal.SIGKILL and oom_killed:
        error = f"killed by the out-of-memory killer ({name}; memory limit {job.memory_mb} MB)"
        return _answer("memory", signal=name, error=error, **stdout)
    if number == signal.SIGXCPU:
        return _answer("timeout", signal=name, error=f"CPU time limit exceeded ({name})", **stdout)
    meaning = _SIGNAL_MEANINGS.get(number)
    error = f"killed by signal {name}" + (f" ({meaning})" if meaning else "")
    return _answer("killed", signal=name, error=error, **stdout)


def _answer(status: str, **fields: Any) -> dict[str, Any]:
    answer = {
        "id": None, TOKEN_FIELD: None, "status": status, "seconds": 0.0, "result_json": None,
        "stdout": "", "stdout_bytes": 0, "stdout_truncated": False, "error": "", "signal": None, "exit_code": None,
        "retire": False,
    }
    answer.update(fields)
    return answer


def _write_files(workdir: str, files: dict[str, str]) -> None:
    os.mkdir(workdir)
    for name, text in files.items():
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if name.startswith("/") or ".." in parts or not parts or "\0" in name:
            raise ValueError(f"unsafe file name {name!r}")
        target = os.path.join(workdir, *parts)
        if len(parts) > 1:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        data = text.encode("utf-8")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)


def _remove_tree(path: str) -> bool:
    """Remove a file or folder the candidate may have locked (chmod 0) or nested deep."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil  # here, not at the top: it loads bz2 and lzma, 20 more mappings per fork

            _unlock_folders(path)
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return True
    except (OSError, RecursionError):
        return False


def _unlock_folders(top: str) -> None:
    """Make every folder under `top` listable and writable again (same owner: allowed)."""
    pending = [top]
    while pending:
        folder = pending.pop()
        os.chmod(folder, 0o700)
        with os.scandir(folder) as entries:
            pending += [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]


def _oom_kill_count() -> int:
    """Out-of-memory kills so far in this cgroup (cgroup v1 or v2); 0 where the kernel
    keeps no such count (gVisor: there an out-of-memory kill ends the whole container,
    which the host reports)."""
    if KERNEL.oom_counter is None:
        return 0
    try:
        counters = read_small_file(KERNEL.oom_counter)
    except OSError:
        return 0
    for line in counters.split(b"\n"):
        if line.startswith(b"oom_kill "):
            return int(line[9:])
    return 0


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def send(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(json.dumps(message).encode("ascii") + b"\n")
    sys.stdout.buffer.flush()
