"""What the kernel under the runner offers, found once at start.

Some kernels lack what the runner uses by default: gVisor (Docker's `runsc` runtime) has
no /proc/<pid>/task/<tid>/children, no /proc/sysvipc tables, no cgroup memory files in
the container and no pidfd_open. `KERNEL` says which, and the runner uses an equally strict
replacement for each: a process's children from the parent field of every
/proc/<pid>/stat, System V IPC objects from the kernel's counts (*_INFO) and by removing
every id handed out since the last job (`IpcIds`), and a candidate's end from SIGCHLD.
"""

from __future__ import annotations

import ctypes
import os
import resource

IPC_RMID = 0


IPC_TABLES = (("/proc/sysvipc/shm", "shmctl"), ("/proc/sysvipc/msg", "msgctl"), ("/proc/sysvipc/sem", "semctl"))


_IPC_PRIVATE, _IPC_CREAT = 0, 0o1000


_SHM_INFO, _MSG_INFO, _SEM_INFO = 14, 12, 19


_IPC_SCAN_LIMIT = 65536  # ids handed out in one job beyond which the runner is retired instead


_OOM_COUNTERS = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")


def read_small_file(path: str) -> bytes:
    # os-level reads: the runner's hot path avoids the heavier io stack (see become_candidate)
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


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
            self._libc.semctl(ident, 0, IPC_RMID)
        else:
            getattr(self._libc, f"{kind}ctl")(ident, IPC_RMID, None)


class _Kernel:
    """What the kernel under the runner offers, found once at start (see the module
    docstring): each missing feature has its replacement."""

    def __init__(self) -> None:
        me = os.getpid()
        self.children_files = os.path.exists(f"/proc/{me}/task/{me}/children")
        self.pidfd = _has_pidfd()
        self.oom_counter = next((path for path in _OOM_COUNTERS if os.path.exists(path)), None)
        self.msgqueue_limit = _can_set_limit(resource.RLIMIT_MSGQUEUE)
        has_tables = all(os.path.exists(table) for table, _ in IPC_TABLES)
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


KERNEL = _Kernel()
