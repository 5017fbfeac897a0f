"""The spawner: a copy of the warm runner that only forks candidates, reaps them and
clears what they leave behind, and the runner's handle on it (`Spawner`)."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import struct
import sys
import time

from . import forkspeed
from .child import EXIT_NO_RESULT_CHANNEL, FD_CEILING, address_space_bytes, become_candidate
from .forkspeed import back_heap_with_huge_pages, plain_fork
from .kernel import KERNEL
from .processes import CLEANUP_SECONDS, clear_processes, is_running, kill_quietly

SPAWNER_START_SECONDS = 60.0  # a fresh spawner loads Python and numpy anew


PR_SET_CHILD_SUBREAPER = 36


_ORDER_HEADER = "qd"  # runner to spawner, before each order: its size, the wall-clock limit (s)


_ENDING = "iii"  # spawner to runner, after each candidate: wait status, cleared, timed out


LIVENESS_S = 0.25  # while waiting on the spawner: how often to check it was not stopped


class SpawnerLost(Exception):
    """The spawner stopped answering: killed or stopped, most likely by a candidate."""


class Ending:
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
        `candidate_uid`: the uid the spawner takes for good (see startup._split_users)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:
            ours.close()
            if candidate_uid is not None:
                _become_candidate_user(candidate_uid)
            if fresh:
                _exec_fresh_spawner(theirs, is_namespace_init, scratch)  # never returns
            serve_as_spawner(theirs, is_namespace_init)  # never returns
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
        return is_running(self.pid)

    def ending(self, timeout: float) -> Ending:
        wait_status, cleared, timed_out = struct.unpack(_ENDING, self._receive(struct.calcsize(_ENDING), timeout))
        return Ending(wait_status, bool(cleared), bool(timed_out))

    def close(self) -> None:
        self._channel.close()

    def _receive(self, size: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        try:
            while not select.select([self._channel], [], [], min(max(deadline - time.monotonic(), 0), LIVENESS_S))[0]:
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


def serve_as_spawner(channel: socket.socket, is_namespace_init: bool) -> None:
    """The spawner's whole life (in the forked copy of the runner). Kept to one loop of
    C-level calls: after each fork every page it writes is a copy-on-write fault again,
    and in Python 3.11 each Python function it calls writes to its code object's page."""
    try:
        _prepare_spawner(channel)
        back_heap_with_huge_pages()
        fork = plain_fork()
        channel.sendall(struct.pack("q", address_space_bytes()))
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
                become_candidate(order, out_write, result_write)
            os.close(out_write)
            os.close(result_write)
            timed_out = _await_exit(pid, timeout_s)
            # The candidate's process group (its own, see become_candidate) ends in one call,
            # before its leader is reaped and the group's id could be reused: a fork bomb that
            # stays in its group is not chased one process at a time while the rest fork on
            # (by this subreaper, or under gVisor, which hands orphans to PID 1, the runner).
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass  # no process left in the group
            wait_status = os.waitpid(pid, 0)[1]
            order[:] = bytes(order_size)
            order.release()
            cleared = _no_children_left() or clear_processes(is_namespace_init)
            channel.sendall(struct.pack(_ENDING, wait_status, cleared, timed_out))
    except BaseException:
        pass  # the runner is gone (end of stream) or this process is beyond repair
    os._exit(0)


def _become_candidate_user(uid: int) -> None:
    """In the forked spawner: the candidate uid as real, effective and saved uid, so no
    candidate can take back the runner's (see startup._split_users)."""
    try:
        os.setresuid(uid, uid, uid)
    except OSError:
        os._exit(EXIT_NO_RESULT_CHANNEL)


def _exec_fresh_spawner(channel: socket.socket, is_namespace_init: bool, scratch: str) -> None:
    """In the forked child: run the runner anew as a spawner on `channel` (see startup.main)."""
    try:
        kept = _keep_only(channel)
        os.set_inheritable(kept, True)
        command = [sys.executable, *interpreter_flags(), RUNNER_FOLDER, "--scratch", scratch,
                   "--fixed-hash-seed", "--spawner-channel", str(kept)]
        if is_namespace_init:
            command.append("--namespace-init")
        if not forkspeed.enabled:
            command.append("--no-fork-tricks")
        os.execv(sys.executable, command)
    finally:
        os._exit(EXIT_NO_RESULT_CHANNEL)


def _await_exit(pid: int, timeout_s: float) -> bool:
    """Wait for the candidate to end, killing it at its wall-clock limit; True if killed."""
    if not KERNEL.pidfd:
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
            kill_quietly(pid)
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


def _keep_only(channel: socket.socket) -> int:
    """Point stdin and stdout (the runner's protocol streams) at /dev/null and close every
    other descriptor but stderr and `channel`; returns the channel's descriptor."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    kept = channel.fileno()
    os.closerange(3, kept)
    os.closerange(kept + 1, FD_CEILING)
    return kept


def _prepare_spawner(channel: socket.socket) -> None:
    """Detach from the runner's protocol streams; become the reaper of candidates' orphans."""
    _keep_only(channel)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if not KERNEL.pidfd:
        signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGCHLD,))  # see _await_exit_by_sigchld
    _seed_random_generators()  # here: os.fork() just reseeded Python's generator in this process
    # Done once here rather than in every child: fd 1 is the capture pipe there.
    sys.stdout.reconfigure(line_buffering=True, errors="backslashreplace")


RUNNER_FOLDER = os.path.dirname(os.path.abspath(__file__))  # run as a program: see __main__.py


def interpreter_flags() -> list[str]:
    return ["-s", "-P"] if sys.version_info >= (3, 11) else ["-s"]


def _seed_random_generators() -> None:
    """Every candidate starts from the same state of Python's and numpy's global random
    generators, so evaluating a program twice gives the same result."""
    import random

    random.seed(0)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(0)
