"""The runner's start: arguments, the fixed hash seed, its own uid, its protection, the
warm-up, then the job loop."""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib.machinery
import os
import platform
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from . import forkspeed
from .child import JOB_MODULES
from .forkspeed import restore_arena_allocator, take_arenas_from_the_c_heap
from .kernel import KERNEL, read_small_file
from .protocol import PROTOCOL
from .server import Runner, send
from .spawner import PR_SET_CHILD_SUBREAPER, RUNNER_FOLDER, interpreter_flags, serve_as_spawner

HASH_SEED = "0"  # string hashing, and so the order of sets of strings, is the same in every runner


_PR_SET_DUMPABLE = 4


_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


_SYSCALLS = {  # audit architecture, and the numbers of the calls that _install_syscall_filter watches
    "x86_64": (0xC000003E, {"kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
                            "rt_tgsigqueueinfo": 297, "mq_open": 240}),
    "aarch64": (0xC00000B7, {"kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138,
                             "rt_tgsigqueueinfo": 240, "mq_open": 180}),
}


def main(argv: list[str] | None = None) -> int:
    options = _parse_arguments(argv)
    forkspeed.enabled = not options.no_fork_tricks
    _fix_hash_seed(options.fixed_hash_seed)  # re-executes the runner once, at start
    if options.connect:
        _speak_over_socket(options.connect)
    if options.candidate_user is not None:
        _split_users(options.runner_uid, *options.candidate_user)
    _quiet_numeric_threads()
    default_arenas = take_arenas_from_the_c_heap()
    has_numpy = _preload_numpy()
    _protect_runner()
    sys.meta_path.insert(sys.meta_path.index(importlib.machinery.PathFinder), JOB_MODULES)
    candidate_uid = options.candidate_user[0] if options.candidate_user is not None else None
    runner = Runner(Path(options.scratch), options.max_user_processes, candidate_uid)
    runner.warm_up()
    restore_arena_allocator(default_arenas)
    gc.freeze()  # keeps the warm heap out of the collector: forked children share it untouched
    if options.spawner_channel is not None:  # a replacement spawner, started fresh (see Spawner)
        serve_as_spawner(socket.socket(fileno=options.spawner_channel), options.namespace_init)
    runner.start_spawner()
    send(
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
            send(runner.serve(line))
    return 0


def _fix_hash_seed(already_fixed: bool) -> None:
    """Run the runner again with string hashing fixed (PYTHONHASHSEED), unless it already is.

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
    command = [sys.executable, *interpreter_flags(), RUNNER_FOLDER, *sys.argv[1:], "--fixed-hash-seed"]
    os.execve(sys.executable, command, environment)


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
    parser.add_argument("--no-fork-tricks", action="store_true",
                        help="fork with os.fork() and leave the heap as CPython lays it out (see forkspeed.py)")
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
    good (spawner._become_candidate_user), and so does every candidate it forks."""
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(runner_uid, candidate_uid, runner_uid)
    except OSError as problem:
        raise SystemExit(f"sandbox runner: cannot take uid {runner_uid} as {candidate_uid}: {problem}") from None
    if _capabilities("CapPrm") or _capabilities("CapEff"):
        raise SystemExit("sandbox runner: still holds capabilities after giving up root")


def _capabilities(kind: str) -> int:
    for line in read_small_file("/proc/self/status").decode().splitlines():
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
    if os.getpid() == 1 or not KERNEL.msgqueue_limit:
        _install_syscall_filter(libc, shield_init=os.getpid() == 1, refuse_message_queues=not KERNEL.msgqueue_limit)
    if os.getpid() != 1:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


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
