"""The host side of the runner protocol treats every answer as hostile data."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from elm.config import SandboxConfig
from elm.sandbox import Job
from elm.sandbox import protocol as host_protocol
from elm.sandbox.pool import RunnerPool
from elm.sandbox.protocol import (
    PROTOCOL,
    RESULT_ELEMENT_LIMIT,
    ProtocolError,
    check_ready,
    decode_answer,
    encode_job,
    json_elements,
    new_token,
)
from tests.conftest import runners_replaced
from tests.runner_package import runner_module

TOKEN = "0123456789abcdef0123456789abcdef"


def answer(**fields) -> bytes:
    base = {"id": 5, "token": TOKEN, "status": "ok", "seconds": 0.01, "result_json": "[1, 2]", "stdout": "",
            "error": ""}
    return json.dumps({**base, **fields}).encode()


def decode(line: bytes):
    return decode_answer(line, 5, TOKEN)


def test_a_good_answer_becomes_an_outcome():
    decoded = decode(answer(stdout="hi\n", stdout_bytes=3))
    assert (decoded.outcome.status, decoded.outcome.result, decoded.outcome.stdout) == ("ok", [1, 2], "hi\n")
    assert decoded.retire is False


def test_truncated_output_says_so():
    decoded = decode(answer(stdout="abc", stdout_bytes=999, stdout_truncated=True))
    assert decoded.outcome.stdout == "abc\n[output truncated: 999 bytes written, only the start is kept]"


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1, 2]",
        b'{"id": 5, "status": "ok", "result_json": "666"}',  # forged: no token
        answer(token="f" * 32),  # forged: a guessed token
        answer(token=None),
        answer(id=6),  # another job's answer
        answer()[:-1],  # garbled
        b"{" + answer(),  # garbled by a prefix written to the stream
    ],
)
def test_a_line_that_is_not_this_jobs_answer_with_its_token_is_a_violation(line):
    decoded = decode(line)
    assert decoded.outcome.status == "violation" and decoded.retire is True
    assert decoded.outcome.result is None
    assert decoded.outcome.error.startswith("sandbox violation: ") and "replaced" in decoded.outcome.error


def test_every_request_gets_a_fresh_token_that_the_request_carries():
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(token) == 32 for token in tokens)
    request = json.loads(encode_job(Job({"a.py": "x"}, "a.py"), 1, TOKEN, SandboxConfig()))
    assert request["token"] == TOKEN


def test_the_runner_keeps_the_hosts_protocol_constants():
    runner = runner_module("protocol")
    for name in ("PROTOCOL", "TOKEN_FIELD", "RESULT_LIMIT_BYTES"):
        assert getattr(runner, name) == getattr(host_protocol, name), name
    assert set(runner_module("server")._answer("ok")) >= {"id", host_protocol.TOKEN_FIELD, "status", "retire"}


@pytest.mark.parametrize(
    "line",
    [
        answer(status="fine"),
        answer(error=["not", "text"]),
        answer(seconds="soon"),
    ],
)
def test_answers_out_of_protocol_are_bad_output_and_retire_the_runner(line):
    decoded = decode(line)
    assert decoded.outcome.status == "bad_output" and decoded.retire is True
    assert "out of protocol" in decoded.outcome.error


@pytest.mark.parametrize("result_json", ["[" * 100000 + "]" * 100000, "{'single': 'quotes'}", None])
def test_results_that_do_not_parse_are_bad_output(result_json):
    decoded = decode(answer(result_json=result_json))
    assert decoded.outcome.status == "bad_output" and decoded.outcome.result is None


def test_error_outcomes_keep_their_status_and_message():
    decoded = decode(answer(status="timeout", result_json=None, error="wall-clock limit"))
    assert (decoded.outcome.status, decoded.outcome.error) == ("timeout", "wall-clock limit")


def test_greeting_must_speak_the_same_protocol():
    assert check_ready(json.dumps({"ready": True, "protocol": PROTOCOL}).encode())["ready"] is True
    with pytest.raises(ProtocolError, match="protocol 99"):
        check_ready(json.dumps({"ready": True, "protocol": 99}).encode())
    with pytest.raises(ProtocolError):
        check_ready(b"Traceback (most recent call last):")


def test_job_request_carries_the_limits():
    config = SandboxConfig(output_limit_bytes=1234, scratch_mb=3)
    request = json.loads(encode_job(Job({"a.py": "x"}, "a.py", timeout_s=2.5, memory_mb=99), 7, TOKEN, config))
    assert request == {"id": 7, "token": TOKEN, "files": {"a.py": "x"}, "entry": "a.py", "timeout_s": 2.5, "memory_mb": 99,
                       "output_limit_bytes": 1234, "file_limit_bytes": 3 * 1024 * 1024}


@pytest.mark.parametrize(
    "job",
    [
        Job({"a.py": ""}, "b.py"),
        Job({"/etc/a.py": "", "b.py": ""}, "b.py"),
        Job({"../a.py": "", "b.py": ""}, "b.py"),
        Job({"b.py": ""}, "b.py", timeout_s=0),
        Job({"b.py": ""}, "b.py", memory_mb=-1),
    ],
)
def test_jobs_the_runner_cannot_take_are_refused(job):
    with pytest.raises(ValueError):
        encode_job(job, 1, TOKEN, SandboxConfig())


def test_a_result_of_millions_of_values_is_refused_before_it_is_decoded():
    line = answer(result_json="[" + "{}, " * 2_000_000 + "{}]")  # 8 MB of empty objects
    tracemalloc.start()
    try:
        decoded = decode(line)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded.outcome.status == "bad_output" and decoded.outcome.result is None
    assert f"more than the limit of {RESULT_ELEMENT_LIMIT}" in decoded.outcome.error
    assert decoded.retire is False  # the candidate's fault, not the runner's
    assert peak < 3 * len(line), peak  # a copy or two of the text, no objects built from it


def test_a_result_longer_than_the_runners_cap_is_refused():
    decoded = decode(answer(result_json='"' + "x" * (8 * 1024 * 1024) + '"'))
    assert decoded.outcome.status == "bad_output" and "exceeds the limit" in decoded.outcome.error


def test_results_within_the_bounds_decode_as_before():
    values = list(range(RESULT_ELEMENT_LIMIT - 1))
    decoded = decode(answer(result_json=json.dumps(values)))
    assert decoded.outcome.status == "ok" and decoded.outcome.result == values


@pytest.mark.parametrize("text, values", [("[]", 1), ("[1, 2, 3]", 4), ('{"a": [1, {"b": null}]}', 6), ('"x"', 1)])
def test_values_are_counted_without_decoding_and_never_undercounted(text, values):
    count = json_elements(text)
    assert values <= count <= 2 * values and count == json_elements(text.encode())


def test_counting_takes_one_pass_whatever_the_text():
    for hostile in ('"' * 4_000_000, '"\\' * 2_000_000, "[" * 4_000_000):
        tracemalloc.start()
        try:
            json_elements(hostile)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1024 * 1024


class ScriptedRunner:
    """A runner channel that answers each request line with `reply(request)`."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.lines: list[bytes] = []
        self.closed = False

    def alive(self) -> bool:
        return not self.closed

    def send(self, data: bytes, timeout: float) -> None:
        self.lines += self.reply(json.loads(data))

    def receive_line(self, timeout: float, limit: int) -> bytes:
        return self.lines.pop(0)

    def close(self) -> None:
        self.closed = True


class ScriptedLauncher:
    def __init__(self, *replies) -> None:
        self.replies = iter(replies)
        self.launched: list[ScriptedRunner] = []

    def launch(self) -> ScriptedRunner:
        self.launched.append(ScriptedRunner(next(self.replies)))
        return self.launched[-1]

    def close(self) -> None:
        pass


def honest(request) -> list[bytes]:
    return [answer(id=request["id"], token=request["token"], result_json=json.dumps(request["id"]))]


def forger(request) -> list[bytes]:  # a candidate's line reaches the stream ahead of the runner's answer
    return [answer(id=request["id"], token="0" * 32, result_json="666"), *honest(request)]


def test_the_pool_never_reuses_a_runner_whose_output_held_a_forged_answer():
    launcher = ScriptedLauncher(forger, honest)
    pool = RunnerPool(launcher, SandboxConfig(pool_size=1), reconnect_s=0.0)
    jobs = [Job({"a.py": "x"}, "a.py")] * 3
    forged, *after = pool.run_many(jobs)
    assert (forged.status, forged.result) == ("violation", None) and "sandbox violation" in forged.error
    assert [(outcome.status, outcome.result) for outcome in after] == [("ok", 2), ("ok", 3)]
    assert [runner.closed for runner in launcher.launched] == [True, False] and runners_replaced(pool) == 1
