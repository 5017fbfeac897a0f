"""Finding, killing and reaping the processes and System V IPC objects a job left behind."""

from __future__ import annotations

import ctypes
import os
import signal
import time

from .kernel import IPC_RMID, IPC_TABLES, KERNEL, read_small_file

CLEANUP_SECONDS = 5.0


def stray_children(spawner: int | None) -> list[int]:
    """The runner's children but its spawner. Orphans of a candidate go to the spawner (a
    subreaper), except under gVisor (2022), which hands them to PID 1, the runner."""
    return [pid for pid in _child_pids() if pid != spawner]


def reap_dead_strays(spawner: int | None) -> bool:
    """Reap those children of the runner but its spawner that have ended; True if no
    other is left."""
    strays = stray_children(spawner)
    return not strays or (_reap(strays) and not stray_children(spawner))


def clear_strays(spawner: int | None) -> bool:
    """Kill and reap every child of the runner but its spawner; False if some would not
    die. Each one's own children come to the runner in turn, until none is left."""
    deadline = time.monotonic() + CLEANUP_SECONDS
    while strays := stray_children(spawner):
        for pid in strays:
            kill_quietly(pid)
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


def clear_processes(is_namespace_init: bool) -> bool:
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
                kill_quietly(pid)
        if not _reap_finished():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)


def _child_pids() -> list[int]:
    me = os.getpid()
    if not KERNEL.children_files:
        return _children_by_parent().get(me, [])
    return [int(pid) for pid in read_small_file(f"/proc/{me}/task/{me}/children").split()]


def _children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from the parent field of each /proc/<pid>/stat (where
    /proc/<pid>/task/<tid>/children is missing; the runner and spawner are single-threaded)."""
    found: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            parent = int(read_small_file(f"/proc/{name}/stat").rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        found.setdefault(parent, []).append(int(name))
    return found


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


def kill_quietly(pid: int) -> None:
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


def remove_ipc_objects() -> bool:
    """Remove every System V shared-memory segment, message queue and semaphore set: they
    outlive their creator, and in the container's own IPC namespace every one of them was
    made by a candidate. False if some are still there afterwards."""
    if KERNEL.ipc_ids is not None:
        return KERNEL.ipc_ids.remove_all()
    removed = False
    libc = None
    for table, remover in IPC_TABLES:
        for ident in _ipc_ids(table):
            libc = libc or ctypes.CDLL(None, use_errno=True)
            if remover == "semctl":
                libc.semctl(ident, 0, IPC_RMID)
            else:
                getattr(libc, remover)(ident, IPC_RMID, None)
            removed = True
    return not removed or not any(_ipc_ids(table) for table, _ in IPC_TABLES)


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


def is_running(pid: int) -> bool:
    """Alive and not stopped: neither a zombie nor stopped by a signal or a tracer."""
    try:
        state = read_small_file(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X", b"T", b"t")


def descendants(pid: int) -> list[int]:
    if not KERNEL.children_files:
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
                children = [int(child) for child in read_small_file(f"/proc/{parent}/task/{thread}/children").split()]
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
