"""The sandbox job server: runs untrusted candidate programs, one forked child per job.

The runner starts once (warm: the interpreter and numpy are already loaded), then reads
one JSON job per line on stdin and answers one JSON line per job on stdout:

  -> {"ready": true, "protocol": 1, ...}                          once, at start
  <- {"id", "files": {name: text}, "entry", "timeout_s", "memory_mb",
      "output_limit_bytes", "file_limit_bytes"}                   one job
  -> {"id", "status", "seconds", "result_json", "stdout", "stdout_bytes",
      "stdout_truncated", "error", "signal", "exit_code", "retire"}  its answer

For each job the files are written into a fresh scratch folder; a forked child makes it
the working directory and the head of sys.path, applies rlimits, loads the entry file
and calls its `main()`. The JSON text of the return value travels back on a dedicated
pipe (fd 3), so whatever the candidate prints cannot corrupt the result or the protocol.
Prints go to a second pipe, captured up to the output limit. The runner enforces the
wall-clock timeout, classifies the child's end (ok, error, timeout, memory, killed,
bad_output), then kills every process the candidate left behind and wipes the scratch
folder before the next job. `"retire": true` asks the host to replace this runner.

In a container the runner is PID 1, so orphans come back to it and signals sent from
inside the container cannot kill it; locally it becomes a child subreaper for the same
reason. Standard library only: the same file serves every sandbox backend.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import platform
import resource
import select
import shutil
import signal
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any

PROTOCOL = 1
RESULT_LIMIT_BYTES = 8 * 1024 * 1024
ERROR_TAIL_LINES = 15
ERROR_TAIL_CHARS = 4000
CLEANUP_SECONDS = 5.0

_RESULT_FD = 3
_LIMITED = (
    resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE, resource.RLIMIT_CORE,
    resource.RLIMIT_NOFILE, resource.RLIMIT_MSGQUEUE, resource.RLIMIT_NPROC,
)
_TAG_RESULT, _TAG_ERROR, _TAG_MEMORY, _TAG_BAD = b"R", b"E", b"M", b"B"
_EXIT_NO_RESULT_CHANNEL = 70
_READ_CHUNK = 65536
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_IPC_RMID = 0
_SIGNAL_MEANINGS = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGBUS: "bus error",
    signal.SIGABRT: "aborted",
    signal.SIGFPE: "floating-point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGTERM: "terminated",
}


def main(argv: list[str] | None = None) -> int:
    options = _parse_arguments(argv)
    _quiet_numeric_threads()
    has_numpy = _preload_numpy()
    _protect_runner()
    runner = Runner(Path(options.scratch), options.max_user_processes)
    runner.warm_up()
    gc.freeze()  # keeps the warm heap out of the collector: forked children share it untouched
    _send(
        {
            "ready": True,
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "python": platform.python_version(),
            "numpy": has_numpy,
        }
    )
    for line in sys.stdin.buffer:
        if line.strip():
            _send(runner.serve(line))
    return 0


class Runner:
    """Serves jobs one at a time from a scratch root that it owns and wipes."""

    def __init__(self, scratch: Path, max_user_processes: int | None) -> None:
        self.scratch = str(scratch)
        os.makedirs(self.scratch, exist_ok=True)
        self.is_namespace_init = os.getpid() == 1
        self.max_user_processes = max_user_processes
        self.jobs_served = 0
        self.workdir = os.path.join(self.scratch, "job")  # the same path every time: see _warm_up
        self._null = os.open(os.devnull, os.O_RDONLY)
        self._fd_ceiling = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        self._hard_limits = {kind: resource.getrlimit(kind)[1] for kind in _LIMITED}
        self._static_limits = [(resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_MSGQUEUE, 0)]
        if max_user_processes is not None:
            self._static_limits.append((resource.RLIMIT_NPROC, max_user_processes))

    def serve(self, line: bytes) -> dict[str, Any]:
        job_id = None
        try:
            request = json.loads(line)
            job_id = request.get("id")
            job = _JobRequest(request)
        except (ValueError, TypeError, KeyError, AttributeError) as problem:
            return _answer("error", id=job_id, error=f"sandbox: invalid job request: {problem}")
        self.jobs_served += 1
        try:
            answer = self._run(job)
        except Exception as problem:  # a fault of the runner costs this job and the runner, no more
            answer = _answer("error", error=f"sandbox runner failed: {problem!r}", retire=True)
        answer["id"] = job_id
        return answer

    def _run(self, job: "_JobRequest") -> dict[str, Any]:
        workdir = self.workdir
        try:
            _write_files(workdir, job.files)
        except (OSError, ValueError) as problem:
            retire = not self._wipe_scratch()
            return _answer("error", error=f"sandbox: cannot write job files: {problem}", retire=retire)
        limits = self._limits(job)  # computed here, before the fork, to keep the child lean
        pipes = _Pipes(self._null, self._fd_ceiling)
        oom_kills_before = _oom_kill_count()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _become_candidate(job, workdir, pipes, limits)
        pipes.close_child_ends()
        watch = _Watch(pid, pipes.out_read, pipes.result_read, job.output_limit_bytes)
        watch.follow(started + job.timeout_s)
        seconds = time.monotonic() - started
        cleared = self._clear_leftovers()
        watch.drain_and_close()
        oom_killed = _oom_kill_count() > oom_kills_before
        wiped = self._wipe_job_files(workdir, job.files) or self._wipe_scratch()
        answer = _classify(watch, job, oom_killed)
        # After an out-of-memory kill the container is due for replacement: its page cache
        # was squeezed, and Docker's OOMKilled flag would blame every later death on memory.
        answer.update(seconds=round(seconds, 6), retire=oom_killed or not (cleared and wiped))
        return answer

    def warm_up(self, rounds: int = 20) -> None:
        """Run the child's import path a few times here, before any fork, so that every
        child inherits it already specialised, with the job folder's import finder cached.
        The folder itself stays off the runner's sys.path: only children import from it."""
        files = {"_elm_warm_up.py": "import _elm_warm_up_helper\n\ndef main():\n    return [_elm_warm_up_helper.VALUE]\n",
                 "_elm_warm_up_helper.py": "VALUE = 1\n"}
        _write_files(self.workdir, files)
        sys.path.insert(0, self.workdir)
        try:
            for _ in range(rounds):
                _call_main(os.path.join(self.workdir, "_elm_warm_up.py"))
                for name in files:
                    sys.modules.pop(name[:-3], None)
        finally:
            sys.path.remove(self.workdir)
            self._wipe_scratch()

    def _limits(self, job: "_JobRequest") -> list[tuple[int, int, int]]:
        address_space = _address_space_bytes() + job.memory_mb * 1024 * 1024
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

    def _clear_leftovers(self) -> bool:
        """Kill and reap every process the candidate left; False if some would not die."""
        deadline = time.monotonic() + CLEANUP_SECONDS
        while True:
            children = _child_pids()
            if not children:
                _reap_finished()
                if self.is_namespace_init:
                    _remove_shared_memory_segments()
                return True
            if self.is_namespace_init:
                _kill_everything_else()  # one call, so a fork bomb cannot outrun it
            else:
                for pid in children:
                    _kill_quietly(pid)
            if not _reap_finished():
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.0005)

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


class _Pipes:
    """The two pipes of one job: the candidate's output and its result channel."""

    def __init__(self, null_fd: int, fd_ceiling: int) -> None:
        self.null_fd = null_fd
        self.out_read, self.out_write = os.pipe()
        self.result_read, self.result_write = os.pipe()
        self.fd_ceiling = max(fd_ceiling, self.out_read, self.out_write, self.result_read, self.result_write)

    def rewire_child(self) -> None:
        """In the child: stdin from /dev/null, stdout and stderr into the capture pipe,
        the result channel on fd 3, every other descriptor of the runner closed."""
        result_copy = os.dup(self.result_write)
        os.dup2(self.out_write, 1)
        os.dup2(self.out_write, 2)
        os.dup2(self.null_fd, 0)
        os.dup2(result_copy, _RESULT_FD)
        os.closerange(_RESULT_FD + 1, max(self.fd_ceiling, result_copy) + 1)

    def close_child_ends(self) -> None:
        os.close(self.out_write)
        os.close(self.result_write)


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
    """Follows one child: collects its output and result, enforces the deadline."""

    def __init__(self, pid: int, out_read: int, result_read: int, output_limit: int) -> None:
        self.pid = pid
        self.out_read = out_read
        self.result_read = result_read
        self.output_limit = output_limit
        self.stdout = bytearray()
        self.stdout_bytes = 0
        self.result = bytearray()
        self.result_overflow = False
        self.timed_out = False
        self.wait_status: int | None = None

    def follow(self, deadline: float) -> None:
        exited = os.pidfd_open(self.pid)  # readable once the child has exited
        try:
            self._follow(deadline, exited)
        finally:
            os.close(exited)

    def _follow(self, deadline: float, exited: int) -> None:
        poller = select.poll()
        for fd in (self.out_read, self.result_read, exited):
            poller.register(fd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.timed_out = True
                _kill_quietly(self.pid)
                self.wait_status = os.waitpid(self.pid, 0)[1]
                return
            for fd, _ in poller.poll(math.ceil(remaining * 1000)):
                if fd == exited:
                    self.wait_status = os.waitpid(self.pid, 0)[1]
                    return
                if not self._read_from(fd):
                    poller.unregister(fd)

    def drain_and_close(self) -> None:
        """After every writer is gone: take what is left in the pipes, then close them."""
        for fd in (self.out_read, self.result_read):
            while self._read_from(fd):
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


def _classify(watch: _Watch, job: _JobRequest, oom_killed: bool) -> dict[str, Any]:
    status_word = watch.wait_status or 0
    stdout = {
        "stdout": watch.stdout.decode("utf-8", "replace"),
        "stdout_bytes": watch.stdout_bytes,
        "stdout_truncated": watch.stdout_bytes > len(watch.stdout),
    }
    if watch.timed_out:
        return _answer("timeout", error=f"wall-clock limit of {job.timeout_s:g} s exceeded", **stdout)
    if os.WIFSIGNALED(status_word):
        return _classify_signal(os.WTERMSIG(status_word), job, oom_killed, stdout)
    exit_code = os.WEXITSTATUS(status_word)
    message = bytes(watch.result)
    if exit_code != 0 or not message:
        why = "its result channel was closed" if exit_code == _EXIT_NO_RESULT_CHANNEL else "no result (os._exit?)"
        error = f"the candidate exited with code {exit_code} before main() returned: {why}"
        return _answer("bad_output", exit_code=exit_code, error=error, **stdout)
    if watch.result_overflow:
        return _answer("bad_output", error=f"result larger than {RESULT_LIMIT_BYTES} bytes", **stdout)
    tag, payload = message[:1], message[1:].decode("utf-8", "replace")
    if tag == _TAG_RESULT:
        return _answer("ok", result_json=payload, **stdout)
    status = {_TAG_ERROR: "error", _TAG_MEMORY: "memory", _TAG_BAD: "bad_output"}.get(tag)
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
        "id": None, "status": status, "seconds": 0.0, "result_json": None,
        "stdout": "", "stdout_bytes": 0, "stdout_truncated": False, "error": "", "signal": None, "exit_code": None,
        "retire": False,
    }
    answer.update(fields)
    return answer


# --- the child: becomes the candidate, never returns -------------------------------------


def _become_candidate(job: _JobRequest, workdir: str, pipes: "_Pipes", limits: list[tuple[int, int, int]]) -> None:
    """Runs in the forked child. Kept lean: every page the child writes is a copy-on-write
    fault, and those faults are most of what a warm fork costs."""
    try:
        os.setsid()
        pipes.rewire_child()
        for kind, soft, hard in limits:
            resource.setrlimit(kind, (soft, hard))
        os.chdir(workdir)
        sys.path.insert(0, workdir)
        sys.argv = [job.entry]
        sys.stdout.reconfigure(line_buffering=True, errors="backslashreplace")  # now fd 1: the capture pipe
    except BaseException:
        os._exit(_EXIT_NO_RESULT_CHANNEL)
    message = _call_main(os.path.join(workdir, job.entry))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    try:
        _write_all(_RESULT_FD, message)
    except BaseException:
        os._exit(_EXIT_NO_RESULT_CHANNEL)
    os._exit(0)


def _call_main(entry: str) -> bytes:
    try:
        module = _load_module(entry)
        candidate_main = getattr(module, "main", None)
        if not callable(candidate_main):
            return _TAG_BAD + f"{os.path.basename(entry)} defines no main() function".encode()
        value = candidate_main()
    except MemoryError as problem:
        return _TAG_MEMORY + _describe(problem)
    except BaseException as problem:
        return _TAG_ERROR + _describe(problem)
    try:
        text = json.dumps(value)
    except MemoryError as problem:
        return _TAG_MEMORY + _describe(problem)
    except BaseException as problem:
        return _TAG_BAD + _not_json_reason(value, problem)
    if len(text) > RESULT_LIMIT_BYTES:
        return _TAG_BAD + f"result of {len(text)} bytes exceeds the limit of {RESULT_LIMIT_BYTES}".encode()
    return _TAG_RESULT + text.encode("ascii")


def _load_module(entry: str) -> Any:
    """The entry file as a module named after it (any file name works)."""
    name = os.path.splitext(os.path.basename(entry))[0]
    module = types.ModuleType(name)
    module.__file__ = entry
    sys.modules[name] = module
    with open(entry, "rb") as source:
        code = compile(source.read(), entry, "exec")
    exec(code, module.__dict__)
    return module


def _describe(problem: BaseException) -> bytes:
    """The last lines of the traceback, without the runner's own frames."""
    try:
        report = traceback.TracebackException.from_exception(problem)
        report.stack = traceback.StackSummary.from_list(
            [frame for frame in report.stack if not _is_machinery(frame.filename)]
        )
        lines = "".join(report.format()).rstrip("\n").splitlines()
        text = "\n".join(lines[-ERROR_TAIL_LINES:])[-ERROR_TAIL_CHARS:]
    except BaseException:
        text = type(problem).__name__
    return text.encode("utf-8", "replace")


def _is_machinery(filename: str) -> bool:
    return filename == __file__


def _not_json_reason(value: Any, problem: BaseException) -> bytes:
    try:
        kind = type(value).__name__
        reason = f"main() returned a value that is not JSON-serialisable ({kind}): {type(problem).__name__}: {problem}"
    except BaseException:
        reason = "main() returned a value that is not JSON-serialisable"
    return reason[:ERROR_TAIL_CHARS].encode("utf-8", "replace")


def _address_space_bytes() -> int:
    return int(_read_small_file("/proc/self/statm").split()[0]) * resource.getpagesize()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# --- the runner's own housekeeping ---------------------------------------------------------


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="sandbox job server")
    parser.add_argument("--scratch", default="/scratch", help="folder for job files (wiped between jobs)")
    parser.add_argument(
        "--max-user-processes", type=int, default=None,
        help="RLIMIT_NPROC for candidates (local backend; in containers the pids cgroup limits them)",
    )
    return parser.parse_args(argv)


def _quiet_numeric_threads() -> None:
    # One thread per candidate keeps forks safe and CPU use inside the configured limit.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def _preload_numpy() -> bool:
    try:
        import numpy  # noqa: F401  (loaded once here, shared by every forked candidate)
    except ImportError:
        return False
    return True


def _protect_runner() -> None:
    """Keep candidates (same user) from signalling, tracing or reading the runner.

    As the init of its pid namespace (in a container) the runner is immune to every signal
    sent from inside the namespace that it has no handler for, so it keeps the default
    dispositions, SIGINT included (Python's own handler would make it catchable)."""
    sys.dont_write_bytecode = True
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited: an oversized write raises, not kills
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    if os.getpid() != 1:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _write_files(workdir: str, files: dict[str, str]) -> None:
    os.mkdir(workdir)
    for name, text in files.items():
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts or "\0" in name:
            raise ValueError(f"unsafe file name {name!r}")
        target = os.path.join(workdir, name)
        if len(relative.parts) > 1:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)


def _remove_tree(path: str) -> bool:
    """Remove a file or folder the candidate may have locked (chmod 0) or nested deep."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
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


def _child_pids() -> list[int]:
    me = os.getpid()
    return [int(pid) for pid in _read_small_file(f"/proc/{me}/task/{me}/children").split()]


def _read_small_file(path: str) -> bytes:
    # os-level reads: the runner's hot path avoids the heavier io stack (see _become_candidate)
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _reap_finished() -> bool:
    reaped = False
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped = True


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _kill_everything_else() -> None:
    """SIGKILL every process this one may signal. Only for the init of a pid namespace
    (the container), where that means exactly the candidate's processes."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _oom_kill_count() -> int:
    """Out-of-memory kills so far in this cgroup (cgroup v1 or v2); 0 where unreadable."""
    for path in ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"):
        try:
            counters = _read_small_file(path)
        except OSError:
            continue
        for line in counters.split(b"\n"):
            if line.startswith(b"oom_kill "):
                return int(line[9:])
    return 0


def _remove_shared_memory_segments() -> None:
    """System V segments outlive their creator; in the container's own IPC namespace
    every one of them was made by a candidate."""
    try:
        table = _read_small_file("/proc/sysvipc/shm").splitlines()[1:]
        ids = [int(line.split()[1]) for line in table if line.strip()]
    except (OSError, ValueError, IndexError):
        return
    if ids:
        libc = ctypes.CDLL(None, use_errno=True)
        for segment in ids:
            libc.shmctl(segment, _IPC_RMID, None)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _send(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(json.dumps(message).encode("ascii") + b"\n")
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    sys.exit(main())
