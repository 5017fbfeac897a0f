"""The forked child: becomes the candidate, runs its main() and never returns.

Also what the child needs ready before the fork: job modules compiled by the runner and
the finder that imports them, and the result's encoding.
"""

from __future__ import annotations

import importlib.machinery
import json
import json.encoder
import marshal
import os
import resource
import signal
import sys
import traceback
import types
import warnings
from typing import Any

from .kernel import KERNEL, read_small_file
from .protocol import RESULT_LIMIT_BYTES

ERROR_TAIL_LINES = 15


ERROR_TAIL_CHARS = 4000


_RESULT_FD = 3


TAG_RESULT, TAG_ERROR, TAG_MEMORY, TAG_BAD = b"R", b"E", b"M", b"B"


EXIT_NO_RESULT_CHANNEL = 70


_PRECOMPILE_LIMIT_BYTES = 256 * 1024  # larger files are compiled by the child, under its limits


_PRECOMPILED_LIMIT_BYTES = 1024 * 1024  # so are files whose code is larger than this, marshalled


_COMPILE_MEMORY_BYTES = 64 * 1024 * 1024  # and files whose compiling needs more memory than this


_COMPILED_LIMIT_BYTES = 4 * 1024 * 1024  # the runner keeps at most this much compiled code, marshalled


FD_CEILING = 65536  # descriptors below this are closed in the spawner and the child


def become_candidate(order: bytes, out_write: int, result_write: int) -> None:
    """Runs in the forked child. Kept lean for the same reason as the spawner."""
    try:
        workdir, entry, limits, compiled = marshal.loads(order)
        JOB_MODULES.compiled = compiled
        os.setsid()
        result_copy = os.dup(result_write)
        os.dup2(out_write, 1)
        os.dup2(out_write, 2)
        os.dup2(result_copy, _RESULT_FD)  # stdin is already /dev/null (see spawner._prepare_spawner)
        os.closerange(_RESULT_FD + 1, FD_CEILING)
        if not KERNEL.pidfd:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGCHLD,))  # blocked in the spawner only
        for kind, soft, hard in limits:
            resource.setrlimit(kind, (soft, hard))
        os.chdir(workdir)
        sys.path.insert(0, workdir)
        sys.argv = [entry]
    except BaseException:
        os._exit(EXIT_NO_RESULT_CHANNEL)
    message = call_main(workdir, entry, compiled)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    try:
        write_all(_RESULT_FD, message)
        os.closerange(1, _RESULT_FD + 1)  # done: the runner may answer before this process is gone
    except BaseException:
        os._exit(EXIT_NO_RESULT_CHANNEL)
    os._exit(0)


def call_main(workdir: str, entry: str, compiled: dict[str, tuple[str, types.CodeType]]) -> bytes:
    path = os.path.join(workdir, entry)
    try:
        module = _load_entry(path, compiled)
        candidate_main = getattr(module, "main", None)
        if not callable(candidate_main):
            return TAG_BAD + f"{entry} defines no main() function".encode()
        value = candidate_main()
    except MemoryError as problem:
        return TAG_MEMORY + _describe(problem)
    except BaseException as problem:
        return TAG_ERROR + _describe(problem)
    try:
        text = "".join(_encode_json(value, 0))
    except MemoryError as problem:
        return TAG_MEMORY + _describe(problem)
    except BaseException as problem:
        return TAG_BAD + _not_json_reason(value, problem)
    if len(text) > RESULT_LIMIT_BYTES:
        return TAG_BAD + f"result of {len(text)} bytes exceeds the limit of {RESULT_LIMIT_BYTES}".encode()
    return TAG_RESULT + text.encode("ascii")


def _refuse_to_encode(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


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


def precompile(workdir: str, files: dict[str, str]) -> dict[str, tuple[str, types.CodeType]]:
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
        soft = address_space_bytes() + self.extra
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


JOB_MODULES = _JobModuleFinder()


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


def address_space_bytes() -> int:
    return int(read_small_file("/proc/self/statm").split()[0]) * resource.getpagesize()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
