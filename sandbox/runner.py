"""The sandbox job server: runs untrusted candidate programs, one forked child per job.

The runner starts once (warm: the interpreter and numpy are already loaded), then reads
one JSON job per line on stdin and answers one JSON line per job on stdout (or both over
a unix socket it connects to, with --connect):

  -> {"ready": true, "protocol": 2, ...}                          once, at start
  <- {"id", "token", "files": {name: text}, "entry", "timeout_s", "memory_mb",
      "output_limit_bytes", "file_limit_bytes"}                   one job
  -> {"id", "token", "status", "seconds", "result_json", "stdout", "stdout_bytes",
      "stdout_truncated", "error", "signal", "exit_code", "retire"}  its answer

The token is a fresh secret per job that the host accepts only back in this job's answer:
a candidate that could write to the runner's output could not forge an answer, because
the token exists only in the runner's memory (not readable to candidates, see
_protect_runner), never in the spawner's nor in a candidate's, which are forked from the
spawner, nor in any command line, environment or file. No candidate can open the runner's
streams in the first place: the runner is not dumpable, and where the kernel ignores that
for /proc/<pid>/fd (gVisor), the host starts it as root to take a uid of its own
(--runner-uid, --candidate-user: see _split_users).

Two processes share the work. The runner speaks the protocol, writes the job's files into
a fresh scratch folder, watches the candidate (its output, its result, the wall-clock
limit), classifies its end and wipes the scratch folder. The spawner, a copy of the warm
runner made once at start, does nothing but fork: for each job it forks the candidate,
kills it at the wall-clock limit, reaps it, kills whatever it left behind and reports
the exit status. Keeping the forks out of the runner matters for speed: after a fork
every page a process writes is a copy-on-write fault, and the spawner writes few pages
per job where the runner would write hundreds. The runner sleeps until the spawner's
report or the candidate's output wakes it: on a small VM every wake-up costs more than
the work it does.

Every job is answered only once what it left behind is gone: its leftover processes,
System V IPC objects and files, and a spawner it stopped or killed (replaced by a fresh
one). The cleaning up is on that job's account, in its seconds, before the host sends
the next job. A runner that cannot clean up (a process that will not die, files it
cannot remove) says so in its answer ("retire") and the host starts a new one.

The forked child makes the scratch folder its working directory and the head of
sys.path, applies rlimits, loads the entry file and calls its `main()`. The JSON text of
the return value travels back on a dedicated pipe (fd 3), so whatever the candidate
prints cannot corrupt the result or the protocol. Prints go to a second pipe, captured up
to the output limit. `"retire": true` asks the host to replace this runner.

In a container the runner is PID 1, so signals sent from inside the container cannot kill
it; locally it becomes a child subreaper. The spawner is a subreaper too, so orphans of a
candidate come back to it. A candidate can signal the spawner (same user); the runner
then reads the candidate's pipes until it ends or reaches its wall-clock limit (what it
returned or raised still counts), kills every other process and starts a new spawner:
this file run anew, not a copy of the runner, whose memory by then holds earlier jobs.
The runner runs itself again at start with a fixed hash seed (see _fix_hash_seed).
Standard library only: the same file serves every sandbox backend.

Some kernels lack what the runner uses by default: gVisor (Docker's `runsc` runtime) has
no /proc/<pid>/task/<tid>/children, no /proc/sysvipc tables, no cgroup memory files in
the container and no pidfd_open. The runner finds out once, at start (`_Kernel`), and
uses an equally strict replacement for each: a process's children from the parent field
of every /proc/<pid>/stat, System V IPC objects from the kernel's counts (*_INFO) and by
removing every id handed out since the last job, and a candidate's end from SIGCHLD.
gVisor also gives a candidate's orphans to PID 1 rather than to the spawner (a
subreaper): after every job the runner kills and reaps every child of its own but the
spawner (_clear_strays), before it answers.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.machinery
import json
import json.encoder
import marshal
import math
import os
import platform
import resource
import select
import signal
import socket
import struct
import sys
import time
import traceback
import types
import warnings
from pathlib import Path
from typing import Any

PROTOCOL = 2  # these three as in elm/sandbox/protocol.py (tests/test_sandbox_protocol.py checks)
TOKEN_FIELD = "token"
RESULT_LIMIT_BYTES = 8 * 1024 * 1024
ERROR_TAIL_LINES = 15
ERROR_TAIL_CHARS = 4000
CLEANUP_SECONDS = 5.0
SPAWNER_START_SECONDS = 60.0  # a fresh spawner loads Python and numpy anew
HASH_SEED = "0"  # string hashing, and so the order of sets of strings, is the same in every runner

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
_ORDER_HEADER = "qd"  # runner to spawner, before each order: its size, the wall-clock limit (s)
_ENDING = "iii"  # spawner to runner, after each candidate: wait status, cleared, timed out
_HUGE_PAGE = 2 * 1024 * 1024
_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25
_M_MMAP_THRESHOLD = -3  # mallopt(): C heap blocks at least this large get an mmap of their own
_ARENA_ALIGNMENT = 16384  # CPython's pool size: arenas aligned to it lose no pool to alignment
_PRECOMPILE_LIMIT_BYTES = 256 * 1024  # larger files are compiled by the child, under its limits
_PRECOMPILED_LIMIT_BYTES = 1024 * 1024  # so are files whose code is larger than this, marshalled
_COMPILE_MEMORY_BYTES = 64 * 1024 * 1024  # and files whose compiling needs more memory than this
_COMPILED_LIMIT_BYTES = 4 * 1024 * 1024  # the runner keeps at most this much compiled code, marshalled
_FD_CEILING = 65536  # descriptors below this are closed in the spawner and the child
_LIVENESS_S = 0.25  # while waiting on the spawner: how often to check it was not stopped
_IPC_TABLES = (("/proc/sysvipc/shm", "shmctl"), ("/proc/sysvipc/msg", "msgctl"), ("/proc/sysvipc/sem", "semctl"))
_IPC_PRIVATE, _IPC_CREAT = 0, 0o1000
_SHM_INFO, _MSG_INFO, _SEM_INFO = 14, 12, 19
_IPC_SCAN_LIMIT = 65536  # ids handed out in one job beyond which the runner is retired instead
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_SYSCALLS = {  # audit architecture, and the numbers of the calls that _install_syscall_filter watches
    "x86_64": (0xC000003E, {"kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
                            "rt_tgsigqueueinfo": 297, "mq_open": 240}),
    "aarch64": (0xC00000B7, {"kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138,
                             "rt_tgsigqueueinfo": 240, "mq_open": 180}),
}
_OOM_COUNTERS = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")
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
    _fix_hash_seed(options.fixed_hash_seed)  # re-executes this file once, at start
    if options.connect:
        _speak_over_socket(options.connect)
    if options.candidate_user is not None:
        _split_users(options.runner_uid, *options.candidate_user)
    _quiet_numeric_threads()
    default_arenas = _take_arenas_from_the_c_heap()
    has_numpy = _preload_numpy()
    _protect_runner()
    sys.meta_path.insert(sys.meta_path.index(importlib.machinery.PathFinder), _JOB_MODULES)
    candidate_uid = options.candidate_user[0] if options.candidate_user is not None else None
    runner = Runner(Path(options.scratch), options.max_user_processes, candidate_uid)
    runner.warm_up()
    _restore_arena_allocator(default_arenas)
    gc.freeze()  # keeps the warm heap out of the collector: forked children share it untouched
    if options.spawner_channel is not None:  # a replacement spawner, started fresh (see Spawner)
        _serve_as_spawner(socket.socket(fileno=options.spawner_channel), options.namespace_init)
    runner.start_spawner()
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
        if _KERNEL.msgqueue_limit:  # else mq_open is refused outright (see _install_syscall_filter)
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
        order = marshal.dumps((workdir, job.entry, self._limits(job), _precompile(workdir, job.files)))
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

    def _follow(self, watch: _Watch, deadline: float) -> _Ending | None:
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
        while any(pid != lost and _is_running(pid) for pid in _descendants(os.getpid())):
            if time.monotonic() > limit:
                return False
            time.sleep(0.01)
        return True

    def _clean_up(self, job: _JobRequest, watch: _Watch, ending: _Ending | None) -> tuple[bool, bool]:
        """Leftover processes, System V IPC objects, pipes, files, and a fresh spawner in
        place of a lost one: (all cleared, files wiped)."""
        cleared = ending.cleared if ending is not None else self._drop_spawner()
        if cleared:
            cleared = _clear_strays(self.spawner.pid if self.spawner is not None else None)
        if cleared and self.is_namespace_init:
            cleared = _remove_ipc_objects()
        watch.drain_and_close()
        wiped = self._wipe_job_files(self.workdir, job.files) or self._wipe_scratch()
        if self.spawner is None and cleared and wiped:
            try:
                self.start_spawner(fresh=True)
            except SpawnerLost:
                cleared = False
        return cleared, wiped

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
        return _clear_processes(self.is_namespace_init)

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
                compiled = _precompile(self.workdir, files) if round_number % 2 else {}  # both import paths
                _JOB_MODULES.compiled = compiled
                _call_main(self.workdir, "_elm_warm_up.py", compiled)
                for name in files:
                    sys.modules.pop(name[:-3], None)
        finally:
            _JOB_MODULES.compiled = {}
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


class SpawnerLost(Exception):
    """The spawner stopped answering: killed or stopped, most likely by a candidate."""


class _Ending:
    """The spawner's report on a finished candidate."""

    def __init__(self, wait_status: int, cleared: bool, timed_out: bool) -> None:
        self.wait_status = wait_status
        self.cleared = cleared
        self.timed_out = timed_out


class Spawner:
    """The runner's handle on its fork server (see the module docstring).

    They talk over a socket pair. Runner to spawner: an order (its size and the wall-clock
    limit, then the job's parameters for the child, marshalled) with the two write ends of
    the job's pipes attached. Spawner to runner: the candidate's wait status, whether its
    leftovers were cleared and whether it was killed at the limit; and once, at start,
    the spawner's address space size (the base of every candidate's RLIMIT_AS)."""

    def __init__(self, is_namespace_init: bool, scratch: str, fresh: bool, candidate_uid: int | None = None) -> None:
        """`fresh`: run this file anew in the spawner instead of serving from a copy of the
        runner. The first spawner is a copy made before any job; a replacement must not be
        one, since by then the runner's memory holds earlier jobs' requests and answers.
        `candidate_uid`: the uid the spawner takes for good (see _split_users)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:
            ours.close()
            if candidate_uid is not None:
                _become_candidate_user(candidate_uid)
            if fresh:
                _exec_fresh_spawner(theirs, is_namespace_init, scratch)  # never returns
            _serve_as_spawner(theirs, is_namespace_init)  # never returns
        theirs.close()
        self._channel = ours
        greeting = self._receive(8, SPAWNER_START_SECONDS if fresh else CLEANUP_SECONDS)
        (self.address_space_bytes,) = struct.unpack("q", greeting)

    def spawn(self, order: bytes, timeout_s: float, out_write: int, result_write: int) -> None:
        """Have the candidate forked, to be killed after `timeout_s`; does not wait."""
        try:
            self._channel.settimeout(CLEANUP_SECONDS)
            header = struct.pack(_ORDER_HEADER, len(order), timeout_s)
            sent = self._channel.sendmsg([header, order], [_fd_message(out_write, result_write)])
            if sent < len(header) + len(order):  # one call, one wake-up of the spawner, mostly
                self._channel.sendall((header + order)[sent:])
        except OSError as problem:  # socket.timeout included
            raise SpawnerLost(str(problem)) from None

    def fileno(self) -> int:
        """Readable when the spawner reported (or is gone)."""
        return self._channel.fileno()

    def running(self) -> bool:
        """False once the spawner is stopped or dead: a candidate signalled it."""
        return _is_running(self.pid)

    def ending(self, timeout: float) -> _Ending:
        wait_status, cleared, timed_out = struct.unpack(_ENDING, self._receive(struct.calcsize(_ENDING), timeout))
        return _Ending(wait_status, bool(cleared), bool(timed_out))

    def close(self) -> None:
        self._channel.close()

    def _receive(self, size: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        try:
            while not select.select([self._channel], [], [], min(max(deadline - time.monotonic(), 0), _LIVENESS_S))[0]:
                if time.monotonic() >= deadline or not self.running():
                    raise SpawnerLost("no report from the spawner: stopped, stuck or gone")
            self._channel.settimeout(max(deadline - time.monotonic(), 0.001))
            data = self._channel.recv(size, socket.MSG_WAITALL)
        except OSError as problem:
            raise SpawnerLost(str(problem)) from None
        if len(data) != size:
            raise SpawnerLost("the spawner is gone")
        return data


def _fd_message(*fds: int) -> tuple[int, int, bytes]:
    return socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds)


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
            events = poller.poll(math.ceil(min(remaining, _LIVENESS_S) * 1000))
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
        return self.result.startswith(_TAG_RESULT) and not self.result_overflow

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
    watch: _Watch, ending: _Ending | None, job: _JobRequest, oom_killed: bool, outlived_limit: bool
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
        "id": None, TOKEN_FIELD: None, "status": status, "seconds": 0.0, "result_json": None,
        "stdout": "", "stdout_bytes": 0, "stdout_truncated": False, "error": "", "signal": None, "exit_code": None,
        "retire": False,
    }
    answer.update(fields)
    return answer


# --- the spawner: forks candidates, reaps them, clears their leftovers ---------------------


def _serve_as_spawner(channel: socket.socket, is_namespace_init: bool) -> None:
    """The spawner's whole life (in the forked copy of the runner). Kept to one loop of
    C-level calls: after each fork every page it writes is a copy-on-write fault again,
    and in Python 3.11 each Python function it calls writes to its code object's page."""
    try:
        _prepare_spawner(channel)
        _back_heap_with_huge_pages()
        fork = _plain_fork()
        channel.sendall(struct.pack("q", _address_space_bytes()))
        descriptors_size = socket.CMSG_SPACE(2 * 4)
        header_size = struct.calcsize(_ORDER_HEADER)
        # Orders land in one buffer, zeroed once each candidate is gone, so that no later
        # candidate finds an earlier one's files in the memory it is forked from.
        buffer = bytearray(0)
        while True:
            header, descriptors, _, _ = channel.recvmsg(header_size, descriptors_size)
            out_write, result_write = _received_descriptors(header, descriptors)
            order_size, timeout_s = struct.unpack(_ORDER_HEADER, header)
            if order_size > len(buffer):
                buffer = bytearray(order_size)
            order = memoryview(buffer)[:order_size]
            if channel.recv_into(order, order_size, socket.MSG_WAITALL) != order_size:
                raise EOFError("end of orders")
            pid = fork()
            if pid == 0:
                _become_candidate(order, out_write, result_write)
            os.close(out_write)
            os.close(result_write)
            timed_out = _await_exit(pid, timeout_s)
            wait_status = os.waitpid(pid, 0)[1]
            order[:] = bytes(order_size)
            order.release()
            cleared = _no_children_left() or _clear_processes(is_namespace_init)
            channel.sendall(struct.pack(_ENDING, wait_status, cleared, timed_out))
    except BaseException:
        pass  # the runner is gone (end of stream) or this process is beyond repair
    os._exit(0)


def _become_candidate_user(uid: int) -> None:
    """In the forked spawner: the candidate uid as real, effective and saved uid, so no
    candidate can take back the runner's (see _split_users)."""
    try:
        os.setresuid(uid, uid, uid)
    except OSError:
        os._exit(_EXIT_NO_RESULT_CHANNEL)


def _exec_fresh_spawner(channel: socket.socket, is_namespace_init: bool, scratch: str) -> None:
    """In the forked child: run this file anew as a spawner on `channel` (see main)."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        kept = channel.fileno()
        os.closerange(3, kept)
        os.closerange(kept + 1, _FD_CEILING)
        os.set_inheritable(kept, True)
        command = [sys.executable, *_interpreter_flags(), os.path.abspath(__file__), "--scratch", scratch,
                   "--fixed-hash-seed", "--spawner-channel", str(kept)]
        if is_namespace_init:
            command.append("--namespace-init")
        os.execv(sys.executable, command)
    finally:
        os._exit(_EXIT_NO_RESULT_CHANNEL)


def _await_exit(pid: int, timeout_s: float) -> bool:
    """Wait for the candidate to end, killing it at its wall-clock limit; True if killed."""
    if not _KERNEL.pidfd:
        return _await_exit_by_sigchld(pid, timeout_s)
    pidfd = os.pidfd_open(pid)
    try:
        if select.select([pidfd], [], [], timeout_s)[0]:
            return False
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return True
    finally:
        os.close(pidfd)


def _await_exit_by_sigchld(pid: int, timeout_s: float) -> bool:
    """_await_exit without pidfd_open: SIGCHLD stays blocked in the spawner (see
    _prepare_spawner), so a child's end waits as a pending signal that sigtimedwait takes.
    The candidate is not reaped here, so its pid is still its own when it is killed."""
    deadline = time.monotonic() + timeout_s
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _kill_quietly(pid)
            return True
        signal.sigtimedwait((signal.SIGCHLD,), remaining)  # any child's end, or a stop: look again
    return False


def _received_descriptors(header: bytes, descriptors: list[tuple[int, int, bytes]]) -> tuple[int, int]:
    if len(header) != struct.calcsize(_ORDER_HEADER) or len(descriptors) != 1 or len(descriptors[0][2]) != 8:
        raise EOFError("end of orders")
    out_write, result_write = struct.unpack("2i", descriptors[0][2])
    return out_write, result_write


def _no_children_left() -> bool:
    """The common case, in one system call: the candidate left no process behind."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def _prepare_spawner(channel: socket.socket) -> None:
    """Detach from the runner's protocol streams; become the reaper of candidates' orphans."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    kept = channel.fileno()
    os.closerange(3, kept)
    os.closerange(kept + 1, _FD_CEILING)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if not _KERNEL.pidfd:
        signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGCHLD,))  # see _await_exit_by_sigchld
    _seed_random_generators()  # here: os.fork() just reseeded Python's generator in this process
    # Done once here rather than in every child: fd 1 is the capture pipe there.
    sys.stdout.reconfigure(line_buffering=True, errors="backslashreplace")


def _back_heap_with_huge_pages() -> None:
    """Turn the warm heap into transparent huge pages, where the kernel allows it.

    fork() copies one page-table entry per 4 KiB page of private memory, and the child's
    exit drops them all again: with numpy loaded that is about 5,000 entries, most of the
    cost of a fork. A 2 MiB huge page is one entry. A candidate that writes into one gets
    its own copy of just the 4 KiB it touched, as before; so does the spawner, which writes
    to a few of them after every fork: those stay split, the rest stay huge. The kernel
    may refuse (no transparent huge pages, no MADV_COLLAPSE before Linux 6.1): forks then
    stay as they were, nothing else changes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    try:
        with open("/proc/self/maps") as maps:
            regions = [line.split() for line in maps]
    except OSError:
        return
    for fields in regions:
        anonymous = len(fields) == 5 or fields[5] == "[heap]"
        if fields[1] != "rw-p" or not anonymous:
            continue
        low, high = (int(bound, 16) for bound in fields[0].split("-"))
        start, end = -(-low // _HUGE_PAGE) * _HUGE_PAGE, high // _HUGE_PAGE * _HUGE_PAGE
        if end > start:
            libc.madvise(start, end - start, _MADV_HUGEPAGE)
            libc.madvise(start, end - start, _MADV_COLLAPSE)


class _ArenaAllocator(ctypes.Structure):
    """CPython's PyObjectArenaAllocator: where the small-object allocator gets its arenas."""

    _fields_ = [("ctx", ctypes.c_void_p), ("alloc", ctypes.c_void_p), ("free", ctypes.c_void_p)]


def _take_arenas_from_the_c_heap() -> _ArenaAllocator | None:
    """Until _restore_arena_allocator, have Python's object memory come from the C heap;
    returns the allocator to restore (None where this is not possible: no glibc).

    By default each 1 MiB arena of Python's small-object allocator is an mmap of its own,
    and they land in the gaps between the many shared libraries numpy loads: almost none
    spans an aligned 2 MiB range, so _back_heap_with_huge_pages could not give the
    spawner's warm heap huge pages. Taken from the C heap (one region, grown with brk),
    numpy's import and the warm-up fill one region that can. Arenas freed in the meantime
    are kept (the free function is abs(), which ignores its arguments: libc has no
    function that frees a block given second). Once restored, the default allocator
    unmaps any of these arenas that empties later: an aligned whole-page range inside a
    block glibc counts as in use and so never touches again."""
    libc = ctypes.CDLL(None)
    try:
        from_heap = _ArenaAllocator(
            _ARENA_ALIGNMENT,  # ctx, passed as aligned_alloc's first argument
            ctypes.cast(libc.aligned_alloc, ctypes.c_void_p),
            ctypes.cast(libc.abs, ctypes.c_void_p),
        )
        set_mmap_threshold = libc.mallopt
    except AttributeError:
        return None
    # 1 MiB arenas must come from the heap itself, not from mmaps of their own. The
    # threshold stays: it lets candidates' arrays up to 4 MiB reuse heap memory.
    if set_mmap_threshold(_M_MMAP_THRESHOLD, 4 * 1024 * 1024) != 1:
        return None
    default = _ArenaAllocator()
    ctypes.pythonapi.PyObject_GetArenaAllocator(ctypes.byref(default))
    ctypes.pythonapi.PyObject_SetArenaAllocator(ctypes.byref(from_heap))
    return default


def _restore_arena_allocator(default: _ArenaAllocator | None) -> None:
    if default is not None:
        ctypes.pythonapi.PyObject_SetArenaAllocator(ctypes.byref(default))


def _plain_fork() -> Any:
    """libc's fork(), called with the GIL held, without os.fork()'s Python-level hooks.

    Those hooks (threading's lock reset, random's reseed) run Python code in the child,
    and in Python 3.11 running code writes to the code objects it runs: about 190
    copy-on-write faults per candidate, more than the rest of the fork. The spawner is
    single-threaded, so there is nothing for them to repair; the random state they would
    reseed is seeded once, on purpose, when the spawner starts (_seed_random_generators)."""
    fork = ctypes.PyDLL(None, use_errno=True).fork
    fork.restype = ctypes.c_int
    fork.argtypes = []

    def checked_fork() -> int:
        pid = fork()
        if pid < 0:
            raise OSError(ctypes.get_errno(), "fork failed")
        return pid

    return checked_fork


def _clear_strays(spawner: int | None) -> bool:
    """Kill and reap every child of the runner but its spawner; False if some would not
    die. Orphans of a candidate go to the spawner (a subreaper), except under gVisor
    (2022), which hands them to PID 1, the runner: killed here, each one's own children
    come to the runner in turn, until none is left."""
    deadline = time.monotonic() + CLEANUP_SECONDS
    while strays := [pid for pid in _child_pids() if pid != spawner]:
        for pid in strays:
            _kill_quietly(pid)
        if not _reap(strays):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
    return True


def _reap(pids: list[int]) -> bool:
    """Reap those of these children that have ended; True if any had."""
    reaped = False
    for pid in pids:
        try:
            reaped = os.waitpid(pid, os.WNOHANG)[0] == pid or reaped
        except ChildProcessError:
            reaped = True  # reaped already
    return reaped


def _clear_processes(is_namespace_init: bool) -> bool:
    """Kill and reap every child of this process (as a subreaper: every process a
    candidate left); False if some would not die.

    In a container (the runner is the namespace's init) one kill(-1) reaches every
    process but the caller and init, so a fork bomb cannot outrun it."""
    deadline = time.monotonic() + CLEANUP_SECONDS
    while True:
        children = _child_pids()
        if not children:
            _reap_finished()
            return True
        if is_namespace_init:
            _kill_everything_else()
        else:
            for pid in children:
                _kill_quietly(pid)
        if not _reap_finished():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)


# --- the child: becomes the candidate, never returns -------------------------------------


def _become_candidate(order: bytes, out_write: int, result_write: int) -> None:
    """Runs in the forked child. Kept lean for the same reason as the spawner."""
    try:
        workdir, entry, limits, compiled = marshal.loads(order)
        _JOB_MODULES.compiled = compiled
        os.setsid()
        result_copy = os.dup(result_write)
        os.dup2(out_write, 1)
        os.dup2(out_write, 2)
        os.dup2(result_copy, _RESULT_FD)  # stdin is already /dev/null (see _prepare_spawner)
        os.closerange(_RESULT_FD + 1, _FD_CEILING)
        if not _KERNEL.pidfd:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGCHLD,))  # blocked in the spawner only
        for kind, soft, hard in limits:
            resource.setrlimit(kind, (soft, hard))
        os.chdir(workdir)
        sys.path.insert(0, workdir)
        sys.argv = [entry]
    except BaseException:
        os._exit(_EXIT_NO_RESULT_CHANNEL)
    message = _call_main(workdir, entry, compiled)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    try:
        _write_all(_RESULT_FD, message)
        os.closerange(1, _RESULT_FD + 1)  # done: the runner may answer before this process is gone
    except BaseException:
        os._exit(_EXIT_NO_RESULT_CHANNEL)
    os._exit(0)


def _call_main(workdir: str, entry: str, compiled: dict[str, tuple[str, types.CodeType]]) -> bytes:
    path = os.path.join(workdir, entry)
    try:
        module = _load_entry(path, compiled)
        candidate_main = getattr(module, "main", None)
        if not callable(candidate_main):
            return _TAG_BAD + f"{entry} defines no main() function".encode()
        value = candidate_main()
    except MemoryError as problem:
        return _TAG_MEMORY + _describe(problem)
    except BaseException as problem:
        return _TAG_ERROR + _describe(problem)
    try:
        text = "".join(_encode_json(value, 0))
    except MemoryError as problem:
        return _TAG_MEMORY + _describe(problem)
    except BaseException as problem:
        return _TAG_BAD + _not_json_reason(value, problem)
    if len(text) > RESULT_LIMIT_BYTES:
        return _TAG_BAD + f"result of {len(text)} bytes exceeds the limit of {RESULT_LIMIT_BYTES}".encode()
    return _TAG_RESULT + text.encode("ascii")


def _refuse_to_encode(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json.dumps(value) with its defaults, minus its Python-level wrappers: in the child every
# Python function called costs copy-on-write faults (see _plain_fork).
_encode_json = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    {}, _refuse_to_encode, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
)


def _load_entry(path: str, compiled: dict[str, tuple[str, types.CodeType]]) -> Any:
    """The entry file as a module named after it (any file name works)."""
    name = os.path.splitext(os.path.basename(path))[0]
    module = types.ModuleType(name)
    module.__file__ = path
    sys.modules[name] = module
    known = compiled.get(name)
    if known is not None and known[0] == path:
        code = known[1]
    else:
        with open(path, "rb") as source:
            code = compile(source.read(), path, "exec")
    exec(code, module.__dict__)
    return module


def _precompile(workdir: str, files: dict[str, str]) -> dict[str, tuple[str, types.CodeType]]:
    """Code objects for the job's top-level modules, compiled here in the runner so that
    the child does not compile them (nor walk the file-system import path) itself.

    What does not compile cleanly (a syntax error, even a warning), is large, or compiles
    to a large code object is left to the child, which compiles it under its limits and
    reports it as before. The time spent here counts in the job's seconds and limit."""
    compiled = {}
    for name, text in files.items():
        stem = name[:-3]
        if not name.endswith(".py") or not stem.isidentifier() or len(text) > _PRECOMPILE_LIMIT_BYTES:
            continue
        path = os.path.join(workdir, name)
        code = _COMPILED.get(path, text)
        if code is _NOT_COMPILED:
            code = _compile_cleanly(path, text)
        if code is not None:
            compiled[stem] = (path, code)
    return compiled


class _CompiledSources:
    """Code objects by (path, source text), so that a file that comes with every job (an
    environment's harness) is compiled once: at most `limit_bytes` of them (as marshalled),
    the oldest dropped first. Code objects are immutable; each child executes its own copy."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self._entries: dict[tuple[str, str], tuple[types.CodeType | None, int]] = {}

    def get(self, path: str, text: str) -> Any:
        entry = self._entries.get((path, text))
        return _NOT_COMPILED if entry is None else entry[0]

    def put(self, path: str, text: str, code: types.CodeType | None, size: int) -> None:
        if size > self.limit_bytes:
            return
        self._entries[(path, text)] = (code, size)
        self.held_bytes += size
        while self.held_bytes > self.limit_bytes:
            oldest = next(iter(self._entries))
            self.held_bytes -= self._entries.pop(oldest)[1]


_COMPILED = _CompiledSources(_COMPILED_LIMIT_BYTES)
_NOT_COMPILED = object()


def _compile_cleanly(path: str, text: str) -> types.CodeType | None:
    """The code object, if it compiles without a warning, within _COMPILE_MEMORY_BYTES
    more memory, to at most _PRECOMPILED_LIMIT_BYTES marshalled; else None. Either way
    remembered in _COMPILED, which counts the source text and the marshalled code."""
    code, size = None, len(text)
    try:
        with warnings.catch_warnings(), _more_memory_at_most(_COMPILE_MEMORY_BYTES):
            warnings.simplefilter("error")
            candidate = compile(text.encode("utf-8"), path, "exec", dont_inherit=True)
            marshalled = len(marshal.dumps(candidate))
        if marshalled <= _PRECOMPILED_LIMIT_BYTES:
            code, size = candidate, size + marshalled
    except Exception:  # SyntaxError, ValueError (null bytes), RecursionError, MemoryError, a warning
        pass
    _COMPILED.put(path, text, code, size)
    return code


class _more_memory_at_most:
    """Within the block, this process may map at most `extra` more bytes (RLIMIT_AS)."""

    def __init__(self, extra: int) -> None:
        self.extra = extra

    def __enter__(self) -> None:
        self.saved = resource.getrlimit(resource.RLIMIT_AS)
        soft = _address_space_bytes() + self.extra
        hard = self.saved[1]
        resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))

    def __exit__(self, *exc_info: object) -> None:
        resource.setrlimit(resource.RLIMIT_AS, self.saved)


class _JobModuleFinder:
    """Imports the job's precompiled modules. It sits just before the file-system finder,
    where the job folder's own files would be found (it is first on sys.path)."""

    def __init__(self) -> None:
        self.compiled: dict[str, tuple[str, types.CodeType]] = {}

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        known = self.compiled.get(name)
        if known is None or path is not None:
            return None
        spec = importlib.machinery.ModuleSpec(name, self, origin=known[0])
        spec.has_location = True  # so the module gets its __file__
        return spec

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        exec(self.compiled[module.__name__][1], module.__dict__)


_JOB_MODULES = _JobModuleFinder()


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


def _fix_hash_seed(already_fixed: bool) -> None:
    """Run this file again with string hashing fixed (PYTHONHASHSEED), unless it already is.

    Hashes of strings are salted per interpreter, so the iteration order of a set of
    strings would differ from one runner to the next, and with it the result of a
    candidate that iterates one. `python3 -I` ignores PYTHONHASHSEED, so the runner runs
    itself again without -E, its isolation kept: no user site folder (-s), no script folder
    on sys.path (-P), and no other PYTHON* variable in its environment."""
    if not sys.flags.hash_randomization:
        return
    if already_fixed:
        raise SystemExit("sandbox runner: the interpreter ignored PYTHONHASHSEED; cannot fix string hashing")
    environment = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    environment["PYTHONHASHSEED"] = HASH_SEED
    command = [sys.executable, *_interpreter_flags(), os.path.abspath(__file__), *sys.argv[1:], "--fixed-hash-seed"]
    os.execve(sys.executable, command, environment)


def _interpreter_flags() -> list[str]:
    return ["-s", "-P"] if sys.version_info >= (3, 11) else ["-s"]


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="sandbox job server")
    parser.add_argument("--fixed-hash-seed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--spawner-channel", type=int, help=argparse.SUPPRESS)  # serve as a fresh spawner
    parser.add_argument("--namespace-init", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default="/scratch", help="folder for job files (wiped between jobs)")
    parser.add_argument("--connect", help="unix socket to speak the protocol over, instead of stdin/stdout")
    parser.add_argument(
        "--max-user-processes", type=int, default=None,
        help="RLIMIT_NPROC for candidates (local backend; in containers the pids cgroup limits them)",
    )
    parser.add_argument("--runner-uid", type=int, help="started as root: the runner's own uid (with --candidate-user)")
    parser.add_argument("--candidate-user", type=_user_and_group, metavar="UID:GID",
                        help="started as root: the candidates' uid and gid, which the runner also acts as")
    options = parser.parse_args(argv)
    if (options.runner_uid is None) != (options.candidate_user is None):
        parser.error("--runner-uid and --candidate-user go together")
    return options


def _user_and_group(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not UID:GID: {text!r}") from None


def _speak_over_socket(path: str) -> None:
    """Connect to the host's socket and make it stdin and stdout: the protocol goes
    straight to the host process instead of through the container's attached streams."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(path)
    os.dup2(connection.fileno(), 0)
    os.dup2(connection.fileno(), 1)
    connection.close()


def _split_users(runner_uid: int, candidate_uid: int, gid: int) -> None:
    """Started as root with CAP_SETUID and CAP_SETGID only: keep `runner_uid` as the real
    and saved uid and act as `candidate_uid`, giving up every capability.

    Under gVisor (2022) a process may open /proc/<pid>/fd/* of every process of its own uid,
    dumpable or not; the runner's protocol streams, opened by the container as root with
    mode 0600, are refused to a candidate of another uid, as Linux refuses them to a
    candidate of the same uid. A candidate may signal a process whose real or saved uid is
    its own: neither is the runner's. The runner, acting as the candidates' uid, still
    signals them and removes their files and IPC objects; the spawner takes that uid for
    good (_become_candidate_user), and so does every candidate it forks."""
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(runner_uid, candidate_uid, runner_uid)
    except OSError as problem:
        raise SystemExit(f"sandbox runner: cannot take uid {runner_uid} as {candidate_uid}: {problem}") from None
    if _capabilities("CapPrm") or _capabilities("CapEff"):
        raise SystemExit("sandbox runner: still holds capabilities after giving up root")


def _capabilities(kind: str) -> int:
    for line in _read_small_file("/proc/self/status").decode().splitlines():
        if line.startswith(kind + ":"):
            return int(line.split()[1], 16)
    raise SystemExit(f"sandbox runner: /proc/self/status has no {kind}")


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


def _seed_random_generators() -> None:
    """Every candidate starts from the same state of Python's and numpy's global random
    generators, so evaluating a program twice gives the same result."""
    import random

    random.seed(0)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(0)


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
    if os.getpid() == 1 or not _KERNEL.msgqueue_limit:
        _install_syscall_filter(libc, shield_init=os.getpid() == 1, refuse_message_queues=not _KERNEL.msgqueue_limit)
    if os.getpid() != 1:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _install_syscall_filter(libc: Any, shield_init: bool, refuse_message_queues: bool) -> None:
    """A seccomp filter for this process and all it forks: with `shield_init`, a signal
    sent to PID 1 (the runner) by number is dropped and the call returns 0, as Linux does
    for the init of a pid namespace (gVisor delivers it); with `refuse_message_queues`
    (RLIMIT_MSGQUEUE cannot be set: gVisor refuses every change of it), mq_open fails,
    since a POSIX message queue outlives its creator and no later job may find one. Calls
    of another architecture and x32 calls are refused altogether."""
    arch, numbers = _SYSCALLS.get(platform.machine(), (None, {}))
    if arch is None:
        raise SystemExit(f"sandbox runner: no system call filter for {platform.machine()}")
    allow, refuse, dropped = 0x7FFF0000, 0x00050000 | 13, 0x00050000  # ALLOW, ERRNO(EACCES), ERRNO(0)
    load, equal, at_least, give = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
    signalling = [numbers[name] for name in ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")]
    refused = [numbers["mq_open"]] if refuse_message_queues else []
    shielded = signalling if shield_init else []
    program = [(load, 0, 0, 4), (equal, 1, 0, arch), (give, 0, 0, refuse),  # seccomp_data.arch
               (load, 0, 0, 0), (at_least, 0, 1, 0x40000000), (give, 0, 0, refuse)]  # .nr; x32
    for number in refused:
        program += [(equal, 0, 1, number), (give, 0, 0, refuse)]
    for index, number in enumerate(shielded):  # to the argument check below the allow
        program.append((equal, len(shielded) - index, 0, number))
    program.append((give, 0, 0, allow))
    if shielded:
        program += [(load, 0, 0, 16), (equal, 0, 1, 1), (give, 0, 0, dropped), (give, 0, 0, allow)]  # args[0]
    filters = (ctypes.c_uint64 * len(program))(
        *(code | jump_true << 16 | jump_false << 24 | value << 32 for code, jump_true, jump_false, value in program)
    )
    fprog = struct.pack("HxxxxxxP", len(program), ctypes.addressof(filters))
    libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.c_char_p(fprog), 0, 0) != 0:
        raise SystemExit(f"sandbox runner: cannot install its system call filter: {os.strerror(ctypes.get_errno())}")


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
            _write_all(fd, data)
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


def _child_pids() -> list[int]:
    me = os.getpid()
    if not _KERNEL.children_files:
        return _children_by_parent().get(me, [])
    return [int(pid) for pid in _read_small_file(f"/proc/{me}/task/{me}/children").split()]


def _children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from the parent field of each /proc/<pid>/stat (where
    /proc/<pid>/task/<tid>/children is missing; the runner and spawner are single-threaded)."""
    found: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            parent = int(_read_small_file(f"/proc/{name}/stat").rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        found.setdefault(parent, []).append(int(name))
    return found


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
    """Out-of-memory kills so far in this cgroup (cgroup v1 or v2); 0 where the kernel
    keeps no such count (gVisor: there an out-of-memory kill ends the whole container,
    which the host reports)."""
    if _KERNEL.oom_counter is None:
        return 0
    try:
        counters = _read_small_file(_KERNEL.oom_counter)
    except OSError:
        return 0
    for line in counters.split(b"\n"):
        if line.startswith(b"oom_kill "):
            return int(line[9:])
    return 0


def _remove_ipc_objects() -> bool:
    """Remove every System V shared-memory segment, message queue and semaphore set: they
    outlive their creator, and in the container's own IPC namespace every one of them was
    made by a candidate. False if some are still there afterwards."""
    if _KERNEL.ipc_ids is not None:
        return _KERNEL.ipc_ids.remove_all()
    removed = False
    libc = None
    for table, remover in _IPC_TABLES:
        for ident in _ipc_ids(table):
            libc = libc or ctypes.CDLL(None, use_errno=True)
            if remover == "semctl":
                libc.semctl(ident, 0, _IPC_RMID)
            else:
                getattr(libc, remover)(ident, _IPC_RMID, None)
            removed = True
    return not removed or not any(_ipc_ids(table) for table, _ in _IPC_TABLES)


def _ipc_ids(table: str) -> list[int]:
    try:
        fd = os.open(table, os.O_RDONLY)
        try:
            chunks = [os.read(fd, 65536)]
            while chunks[-1]:  # one read when the table is short, as it nearly always is
                chunks.append(os.read(fd, 65536))
        finally:
            os.close(fd)
        lines = b"".join(chunks).splitlines()[1:]
        return [int(line.split()[1]) for line in lines if line.strip()]
    except (OSError, ValueError, IndexError):
        return []


def _is_running(pid: int) -> bool:
    """Alive and not stopped: neither a zombie nor stopped by a signal or a tracer."""
    try:
        state = _read_small_file(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X", b"T", b"t")


def _descendants(pid: int) -> list[int]:
    if not _KERNEL.children_files:
        return _descendants_by_parent(pid)
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for thread in threads:
            try:
                children = [int(child) for child in _read_small_file(f"/proc/{parent}/task/{thread}/children").split()]
            except (OSError, ValueError):
                continue
            found += children
            pending += children
    return found


def _descendants_by_parent(pid: int) -> list[int]:
    children = _children_by_parent()
    found: list[int] = []
    pending = [pid]
    while pending:
        below = children.get(pending.pop(), [])
        found += below
        pending += below
    return found


class _IpcIds:
    """System V IPC objects where /proc/sysvipc does not list them (gVisor).

    The kernel's *_INFO counts say whether any object of a kind exists. Ids are handed out
    in increasing order, so every object made since the last sweep has an id between the
    last sweep's probe and a new probe object's id: a sweep removes each of those ids and
    must leave the count at zero. A wrapped or too wide range, or a count above zero
    afterwards, fails the clean-up (the host then replaces the runner)."""

    _KINDS = ("shm", "msg", "sem")

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._marks = {kind: self._probe(kind) for kind in self._KINDS}

    def remove_all(self) -> bool:
        cleared = True
        for kind in self._KINDS:
            if self._count(kind) != 0:
                cleared = self._sweep(kind) and cleared
        return cleared

    def _sweep(self, kind: str) -> bool:
        newest, oldest = self._probe(kind), self._marks[kind]
        if newest < 0 or not 0 <= oldest < newest <= oldest + _IPC_SCAN_LIMIT:
            return False
        for ident in range(oldest + 1, newest):
            self._remove(kind, ident)
        self._marks[kind] = newest
        return self._count(kind) == 0

    def _count(self, kind: str) -> int:
        """Shared-memory pages, message queues or semaphore sets that exist (-1: unknown)."""
        info = (ctypes.c_ulong * 16)()  # larger than shm_info, msginfo and seminfo
        if kind == "shm":
            done = self._libc.shmctl(0, _SHM_INFO, info)
            return info[1] if done >= 0 else -1  # shm_tot, after the int used_ids and padding
        if kind == "msg":
            done = self._libc.msgctl(0, _MSG_INFO, info)
            return ctypes.cast(info, ctypes.POINTER(ctypes.c_int))[0] if done >= 0 else -1  # msgpool
        done = self._libc.semctl(0, 0, _SEM_INFO, info)
        return ctypes.cast(info, ctypes.POINTER(ctypes.c_int))[7] if done >= 0 else -1  # semusz

    def _probe(self, kind: str) -> int:
        """The id the kernel hands out next: made and removed at once (-1: none free)."""
        flags = _IPC_CREAT | 0o600
        if kind == "shm":
            ident = self._libc.shmget(_IPC_PRIVATE, 1, flags)
        elif kind == "msg":
            ident = self._libc.msgget(_IPC_PRIVATE, flags)
        else:
            ident = self._libc.semget(_IPC_PRIVATE, 1, flags)
        if ident >= 0:
            self._remove(kind, ident)
        return ident

    def _remove(self, kind: str, ident: int) -> None:
        if kind == "sem":
            self._libc.semctl(ident, 0, _IPC_RMID)
        else:
            getattr(self._libc, f"{kind}ctl")(ident, _IPC_RMID, None)


class _Kernel:
    """What the kernel under the runner offers, found once at start (see the module
    docstring): each missing feature has its replacement."""

    def __init__(self) -> None:
        me = os.getpid()
        self.children_files = os.path.exists(f"/proc/{me}/task/{me}/children")
        self.pidfd = _has_pidfd()
        self.oom_counter = next((path for path in _OOM_COUNTERS if os.path.exists(path)), None)
        self.msgqueue_limit = _can_set_limit(resource.RLIMIT_MSGQUEUE)
        has_tables = all(os.path.exists(table) for table, _ in _IPC_TABLES)
        # Only the init of the container's IPC namespace sweeps ids (see Runner._clean_up).
        self.ipc_ids = None if has_tables or me != 1 else _IpcIds()


def _can_set_limit(kind: int) -> bool:
    try:
        resource.setrlimit(kind, resource.getrlimit(kind))  # no change: only whether it is allowed
    except (ValueError, OSError):
        return False
    return True


def _has_pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _send(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(json.dumps(message).encode("ascii") + b"\n")
    sys.stdout.buffer.flush()


_KERNEL = _Kernel()

if __name__ == "__main__":
    sys.exit(main())
