"""The line protocol between the host and `sandbox/runner/`, shared by every backend.

The host sends one JSON job per line and reads one JSON answer per line. Answers come
from a process that lives next to hostile code, so they are decoded defensively: anything
malformed becomes a `bad_output` or `violation` outcome (and the runner is retired), never
an exception.

Every request carries a fresh random token that the runner echoes in its answer. Only the
runner ever holds it: candidates are forked from a spawner that never receives a request,
so a candidate that reaches the runner's output stream (gVisor lets it open /proc/1/fd/1)
cannot forge an answer. A line that is not this job's answer with this job's token is a
`violation`: the job gets that status and its runner is replaced, never reused.

`sandbox/runner/protocol.py` keeps its own copies of PROTOCOL, RESULT_LIMIT_BYTES and the token's
field name (it is standard library only); tests/test_sandbox_protocol.py checks they agree.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from elm.records import Status
from elm.sandbox import STATUSES, Job, Outcome

if TYPE_CHECKING:
    from elm.config import SandboxConfig

PROTOCOL = 2
TOKEN_FIELD = "token"  # the request's per-job secret, echoed in the runner's answer
TOKEN_BYTES = 16
RESULT_LIMIT_BYTES = 8 * 1024 * 1024  # the runner's own cap on a result's JSON text
# Values and keys a result may hold: about 100 bytes of host memory each once decoded, so a
# batch of results stays small whatever the candidates return. Counted before decoding.
RESULT_ELEMENT_LIMIT = 100_000
TRUNCATION_NOTE = "\n[output truncated: {total} bytes written, only the start is kept]"


class ProtocolError(Exception):
    """The runner said something that is not part of the protocol."""


@dataclass(frozen=True)
class Answer:
    """One decoded runner answer: the outcome, and whether the runner asked to be replaced."""

    outcome: Outcome
    retire: bool


def new_token() -> str:
    """A fresh secret for one request (see the module docstring)."""
    return secrets.token_hex(TOKEN_BYTES)


def encode_job(job: Job, job_id: int, token: str, config: SandboxConfig) -> bytes:
    """The request line for one job; raises ValueError for a job the runner cannot take."""
    check_job(job)
    request = {
        "id": job_id,
        TOKEN_FIELD: token,
        "files": dict(job.files),
        "entry": job.entry,
        "timeout_s": float(job.timeout_s),
        "memory_mb": int(job.memory_mb),
        "output_limit_bytes": int(config.output_limit_bytes),
        "file_limit_bytes": int(config.scratch_mb) * 1024 * 1024,
    }
    return json.dumps(request).encode("utf-8") + b"\n"


def max_answer_bytes(config: SandboxConfig) -> int:
    """An upper bound on an honest answer line: escaped result plus escaped output."""
    return 2 * RESULT_LIMIT_BYTES + 6 * int(config.output_limit_bytes) + 65536


def check_ready(line: bytes) -> dict[str, Any]:
    """The runner's greeting; raises ProtocolError if it is not a compatible runner."""
    try:
        greeting = json.loads(line)
    except ValueError:
        raise ProtocolError(f"runner greeting is not JSON: {line[:200]!r}") from None
    if not isinstance(greeting, dict) or greeting.get("ready") is not True:
        raise ProtocolError(f"unexpected runner greeting: {line[:200]!r}")
    if greeting.get("protocol") != PROTOCOL:
        raise ProtocolError(
            f"runner speaks protocol {greeting.get('protocol')!r}, the host speaks {PROTOCOL}"
        )
    return greeting


def violation(reason: str, seconds: float = 0.0) -> Answer:
    """Something other than the runner's answer came on its output stream: the job gets
    `violation` and the runner is replaced."""
    error = f"sandbox violation: {reason}; the sandbox was replaced"
    return Answer(Outcome(Status.VIOLATION, seconds, error=error), retire=True)


def decode_answer(line: bytes, job_id: int, token: str) -> Answer:
    """Turn an answer line into an Outcome. A line that is not this job's answer with its
    token is a `violation`; this job's answer otherwise malformed is `bad_output`. Both
    retire the runner."""
    try:
        answer = json.loads(line)
    except (ValueError, RecursionError):
        return violation(f"a line that is not an answer on the runner's output: {line[:80]!r}")
    if not isinstance(answer, dict) or answer.get("id") != job_id or answer.get(TOKEN_FIELD) != token:
        return violation(f"a line on the runner's output that is not its answer to job {job_id} "
                         f"(forged or garbled): {line[:80]!r}")
    try:
        status = answer.get("status")
        if status not in STATUSES:
            raise ProtocolError(f"unknown status {status!r}")
        seconds = float(answer.get("seconds") or 0.0)
        error = _text(answer.get("error"))
        stdout = _stdout(answer)
        retire = bool(answer.get("retire"))
        extras = {
            key: answer[key]
            for key in ("signal", "exit_code", "stdout_bytes", "stdout_truncated")
            if answer.get(key) is not None
        }
    except (ValueError, TypeError, ProtocolError, RecursionError) as problem:
        outcome = Outcome("bad_output", 0.0, error=f"sandbox runner answered out of protocol: {problem}")
        return Answer(outcome, retire=True)
    outcome = Outcome(status, seconds, stdout=stdout, error=error, extras=extras)
    if status == Status.OK:
        _attach_result(outcome, answer.get("result_json"))
    return Answer(outcome, retire)


def _attach_result(outcome: Outcome, result_json: Any) -> None:
    """Parse the candidate's JSON text; hostile text (too deep, too large, holding too many
    values, not JSON) is bad_output. The bounds are checked before any object is built."""
    if isinstance(result_json, str) and len(result_json) > RESULT_LIMIT_BYTES:
        _refuse_result(outcome, f"result of {len(result_json)} bytes exceeds the limit of {RESULT_LIMIT_BYTES}")
        return
    if isinstance(result_json, str) and (count := json_elements(result_json)) > RESULT_ELEMENT_LIMIT:
        _refuse_result(outcome,
                       f"result holds about {count} values and keys, more than the limit of {RESULT_ELEMENT_LIMIT}")
        return
    try:
        if not isinstance(result_json, str):
            raise ValueError("no result text")
        outcome.result = json.loads(result_json)
    except (ValueError, RecursionError) as problem:
        _refuse_result(outcome, f"result is not valid JSON: {type(problem).__name__}: {str(problem)[:200]}")


def _refuse_result(outcome: Outcome, reason: str) -> None:
    outcome.status = Status.BAD_OUTPUT
    outcome.error = reason


def json_elements(text: str | bytes) -> int:
    """An upper bound on the values and keys `json.loads(text)` would build, counted in
    one pass of C without building any: every value but the first follows a comma, a
    colon or an opening bracket. Those inside strings count too (a result is rarely
    text full of them, and telling them apart would take a pass in Python)."""
    if isinstance(text, bytes):
        return 1 + sum(text.count(mark) for mark in (b"[", b"{", b",", b":"))
    return 1 + sum(text.count(mark) for mark in ("[", "{", ",", ":"))


def _stdout(answer: dict[str, Any]) -> str:
    shown = _text(answer.get("stdout"))
    if answer.get("stdout_truncated"):
        return shown + TRUNCATION_NOTE.format(total=int(answer.get("stdout_bytes") or 0))
    return shown


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def check_job(job: Job) -> None:
    """Raise ValueError for a job the runner cannot take (a caller's mistake)."""
    if job.entry not in job.files:
        raise ValueError(f"job entry {job.entry!r} is not one of its files")
    if not (job.timeout_s > 0 and job.memory_mb > 0):
        raise ValueError("job timeout_s and memory_mb must be positive")
    for name in job.files:
        path = PurePosixPath(name)
        if not name or path.is_absolute() or ".." in path.parts or "\0" in name:
            raise ValueError(f"unsafe job file name {name!r}")
