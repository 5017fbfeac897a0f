"""CPython fork-speed tricks, and the switch that turns them off (`enabled`).

After a fork every page a process writes costs a copy-on-write fault (about 4 µs each on
a small VM). These cut a candidate's faults: libc's plain fork() instead of os.fork()
(whose Python-level hooks write to code objects), pymalloc's arenas taken from the C heap
while the runner warms up (so the warm heap is one region), and that heap turned into
transparent huge pages where the kernel allows it (a fork copies one page-table entry per
2 MiB instead of per 4 KiB). With `enabled` off (`--no-fork-tricks`) the runner forks with
os.fork() and leaves its heap as CPython lays it out: slower, with the same results.
"""

from __future__ import annotations

import ctypes
import os
import random
from collections.abc import Callable

_HUGE_PAGE = 2 * 1024 * 1024


_MADV_HUGEPAGE = 14


_MADV_COLLAPSE = 25


_M_MMAP_THRESHOLD = -3  # mallopt(): C heap blocks at least this large get an mmap of their own


_ARENA_ALIGNMENT = 16384  # CPython's pool size: arenas aligned to it lose no pool to alignment

enabled = True  # off: every function here does what CPython does by itself


def back_heap_with_huge_pages() -> None:
    """Turn the warm heap into transparent huge pages, where the kernel allows it.

    fork() copies one page-table entry per 4 KiB page of private memory, and the child's
    exit drops them all again: with numpy loaded that is about 5,000 entries, most of the
    cost of a fork. A 2 MiB huge page is one entry. A candidate that writes into one gets
    its own copy of just the 4 KiB it touched, as before; so does the spawner, which writes
    to a few of them after every fork: those stay split, the rest stay huge. The kernel
    may refuse (no transparent huge pages, no MADV_COLLAPSE before Linux 6.1): forks then
    stay as they were, nothing else changes."""
    if not enabled:
        return
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


def take_arenas_from_the_c_heap() -> _ArenaAllocator | None:
    """Until restore_arena_allocator, have Python's object memory come from the C heap;
    returns the allocator to restore (None where this is not possible: no glibc).

    By default each 1 MiB arena of Python's small-object allocator is an mmap of its own,
    and they land in the gaps between the many shared libraries numpy loads: almost none
    spans an aligned 2 MiB range, so back_heap_with_huge_pages could not give the
    spawner's warm heap huge pages. Taken from the C heap (one region, grown with brk),
    numpy's import and the warm-up fill one region that can. Arenas freed in the meantime
    are kept (the free function is abs(), which ignores its arguments: libc has no
    function that frees a block given second). Once restored, the default allocator
    unmaps any of these arenas that empties later: an aligned whole-page range inside a
    block glibc counts as in use and so never touches again."""
    if not enabled:
        return None
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


def restore_arena_allocator(default: _ArenaAllocator | None) -> None:
    if default is not None:
        ctypes.pythonapi.PyObject_SetArenaAllocator(ctypes.byref(default))


def plain_fork() -> Callable[[], int]:
    """libc's fork(), called with the GIL held, without os.fork()'s Python-level hooks.

    Those hooks (threading's lock reset, random's reseed) run Python code in the child,
    and in Python 3.11 running code writes to the code objects it runs: about 190
    copy-on-write faults per candidate, more than the rest of the fork. The spawner is
    single-threaded, so there is nothing for them to repair; the random state they would
    reseed is seeded once, on purpose, when the spawner starts (seed_random_generators).
    Switched off: os.fork(), with the child's random state put back as its parent's."""
    if not enabled:
        return _fork_keeping_random_state
    fork = ctypes.PyDLL(None, use_errno=True).fork
    fork.restype = ctypes.c_int
    fork.argtypes = []

    def checked_fork() -> int:
        pid = fork()
        if pid < 0:
            raise OSError(ctypes.get_errno(), "fork failed")
        return pid

    return checked_fork


def _fork_keeping_random_state() -> int:
    state = random.getstate()
    pid = os.fork()
    if pid == 0:
        random.setstate(state)  # os.fork() reseeded it
    return pid
