"""The served-model backend against real OpenAI-protocol servers on 127.0.0.1: answers from
the tiny CodeGen and scripted diffs, a server that hangs, one that fails then answers, one
that refuses, one that answers garbage; the key kept out of everything the run writes."""

from __future__ import annotations

import json
import time

import pytest

from elm.config import ConfigError, MutationConfig, SandboxConfig, build_config
from elm.errors import UserError
from elm.experiment import start_run
from elm.mutation import MutationRequest
from elm.mutation.chat import chat_messages, diff_from_answer
from elm.mutation.diff import apply_diff
from elm.mutation.served import ServedMutator
from elm.records import Stage
from elm.report import open_run, write_report
from elm.report.views import summary_view
from elm.sandbox import Job, open_sandbox
from tests.conftest import run_elm
from tests.openai_server import DiffWriter, Flaky, Garbage, TinyCodegen, serve, serve_hanging
from tests.tiny_codegen import tiny_codegen_dir  # noqa: F401
from tests.toy_environment import SEED

KEY_VARIABLE = "ELM_TEST_SERVED_KEY"
KEY = "sk-test-5e1f0c4a9b7d"


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    return KEY


def _settings(url: str, **overrides) -> MutationConfig:
    values = dict(operator="diff", backend="openai", endpoint=url, model="scripted", api="completions",
                  max_new_tokens=64, request_timeout_s=120.0, max_retries=2)
    return MutationConfig(**{**values, **overrides})


def _requests(parents: int = 2, per_parent: int = 3) -> list[MutationRequest]:
    return [MutationRequest(parent, "point.py", SEED.replace("-0.5", f"-{parent}.5"), "Move the point.",
                            seed=parent * 100 + child)
            for parent in range(parents) for child in range(per_parent)]


def _mutate(settings: MutationConfig, requests: list[MutationRequest]):
    mutator = ServedMutator(settings)
    try:
        children = mutator.collect(mutator.submit(requests))
        return children, mutator.take_events()
    finally:
        mutator.close()


# --- answers that are diffs ----------------------------------------------------------------


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_one_request_per_parent_and_every_child_applied(api, key):
    answers = DiffWriter()
    requests = _requests()
    with serve(answers) as url:
        children, events = _mutate(_settings(url, api=api, api_key_env=KEY_VARIABLE), requests)
    assert len(answers.seen) == 2 and [seen["body"]["n"] for seen in answers.seen] == [3, 3]
    assert all(seen["authorization"] == f"Bearer {key}" for seen in answers.seen)
    assert [child.parent_id for child in children] == [request.parent_id for request in requests]
    for child, request in zip(children, requests):
        assert child.stage == "applied" and child.error is None, child.error
        assert child.source != request.source and child.operator == "diff"
        assert child.timings["request_s"] > 0
    assert len({child.source for child in children}) > 1
    assert events == []


def test_tokens_per_child_add_up_to_the_servers_usage():
    answers = DiffWriter()
    with serve(answers) as url:
        children, _ = _mutate(_settings(url), _requests(parents=1, per_parent=3))
    from tests.openai_server import count_tokens

    prompt = answers.seen[0]["body"]["prompt"]
    assert sum(child.extras["tokens"]["prompt"] for child in children) == count_tokens(prompt)
    assert all(child.extras["tokens"]["completion"] > 0 for child in children)


def test_a_server_that_ignores_n_is_asked_again_for_the_rest():
    answers = DiffWriter(max_choices=1)
    with serve(answers) as url:
        children, _ = _mutate(_settings(url, api="chat"), _requests(parents=1, per_parent=3))
    assert [seen["body"]["n"] for seen in answers.seen] == [3, 2, 1]
    assert [child.stage for child in children] == ["applied"] * 3


def test_tiny_codegen_completions_are_counted_at_their_funnel_stage(tiny_codegen_dir):
    answers = TinyCodegen(str(tiny_codegen_dir))
    requests = _requests(parents=2, per_parent=2)
    with serve(answers) as url:
        children, _ = _mutate(_settings(url, max_new_tokens=24), requests)
    assert len(answers.seen) == 2
    assert all(seen["body"]["prompt"].endswith("<DFF>") for seen in answers.seen)
    for child in children:
        assert child.stage in ("generated", "parsed", "applied")
        assert (child.source is None) == (child.stage != "applied")
        assert isinstance(child.diff, str) and "tokens" in child.extras


def test_requests_in_flight_are_bounded_by_concurrency():
    answers = DiffWriter()
    answers.delay_s = 0.3
    with serve(answers) as url:
        children, _ = _mutate(_settings(url, concurrency=2), _requests(parents=6, per_parent=1))
    assert len(answers.seen) == 6 and answers.most_at_once == 2
    assert all(child.stage == "applied" for child in children)


# --- servers that fail -----------------------------------------------------------------------


def test_a_hanging_server_is_cut_off_at_the_deadline_and_retried():
    requests = _requests(parents=2, per_parent=2)
    started = time.monotonic()
    with serve_hanging() as url:
        children, events = _mutate(_settings(url, request_timeout_s=1.0, max_retries=1), requests)
    elapsed = time.monotonic() - started
    assert elapsed < 60  # two 1 s attempts per parent in parallel; an unbounded wait would never end
    for child in children:
        assert child.stage == Stage.REQUESTED and child.source is None
        assert child.error == "request: timed out after 1 s (2 attempts)"
    assert sorted(event["parent"] for kind, event in events if kind == "request_retry") == [0, 1]


def test_a_500_is_retried_and_then_the_answer_counts():
    answers = Flaky(DiffWriter(), failures=1)
    with serve(answers) as url:
        children, events = _mutate(_settings(url, max_retries=1), _requests(parents=1))
    assert len(answers.seen) == 2
    assert [child.stage for child in children] == ["applied"] * 3
    [(kind, detail)] = events
    assert kind == "request_retry" and "HTTP 500" in detail["reason"] and detail["attempt"] == 2


def test_retries_run_out_on_a_server_that_keeps_failing():
    answers = Flaky(DiffWriter(), failures=100, status=503)
    with serve(answers) as url:
        children, _ = _mutate(_settings(url, max_retries=2), _requests(parents=1))
    assert len(answers.seen) == 3
    assert {child.error for child in children} == {
        "request: HTTP 503: Error code: 503 - refused with 503 (3 attempts)"}


@pytest.mark.parametrize("status", [400, 401, 404])
def test_other_4xx_answers_are_not_retried(status):
    answers = Flaky(DiffWriter(), failures=100, status=status)
    with serve(answers) as url:
        children, events = _mutate(_settings(url, max_retries=3), _requests(parents=1))
    assert len(answers.seen) == 1 and events == []
    assert all(child.stage == Stage.REQUESTED and f"HTTP {status}" in child.error for child in children)


def test_429_is_retried():
    answers = Flaky(DiffWriter(), failures=1, status=429)
    with serve(answers) as url:
        children, _ = _mutate(_settings(url, max_retries=1), _requests(parents=1))
    assert len(answers.seen) == 2 and children[0].stage == "applied"


def test_garbage_answers_are_malformed_and_not_retried():
    answers = Garbage()
    with serve(answers) as url:
        children, events = _mutate(_settings(url), _requests(parents=2))
    assert len(answers.seen) == 2 and events == []
    reasons = {child.error for child in children}
    assert all(child.stage == Stage.REQUESTED for child in children)
    assert reasons == {"request: malformed answer: the answer holds no list of choices",
                       "request: malformed answer: not a JSON completion object: "
                       "'<html>upstream is having a bad day</html>'"}


def test_a_missing_key_variable_stops_before_any_request(monkeypatch):
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    with pytest.raises(UserError, match=f"{KEY_VARIABLE}, which is not set"):
        ServedMutator(_settings("http://127.0.0.1:9/v1", api_key_env=KEY_VARIABLE))


def test_config_checks():
    with pytest.raises(ConfigError, match="needs mutation.endpoint"):
        build_config({"environment": {"name": "toy"}, "mutation": {"operator": "diff", "backend": "openai"}})
    with pytest.raises(ConfigError, match="NAME of an environment variable") as refused:
        build_config({"environment": {"name": "toy"}, "mutation": {"api_key_env": "sk-live-abc"}})
    assert "sk-live-abc" not in str(refused.value)
    with pytest.raises(ConfigError, match="mutation.api must be one of"):
        build_config({"environment": {"name": "toy"}, "mutation": {"api": "edits"}})


# --- chat answers ------------------------------------------------------------------------------


def test_chat_answers_are_read_from_fences_bare_text_and_search_replace():
    changed = SEED.replace("x = 1.5", "x = 2.5")
    hunk = "@@ -1,3 +1,3 @@\n def point():\n-    x = 1.5\n+    x = 2.5\n     y = -0.5\n"
    fenced = f"Sure.\n```diff\n{hunk}```\nThis moves the point."
    other_fence_first = f"```python\nprint('hi')\n```\n```\n{hunk}```"
    bare = f"Here you go:\n\n{hunk}"
    search_replace = ("point.py\n<<<<<<< SEARCH\n    x = 1.5\n=======\n    x = 2.5\n>>>>>>> REPLACE\n")
    for answer in (fenced, other_fence_first, bare, search_replace):
        assert apply_diff(SEED, diff_from_answer(answer)) == changed, answer
    assert diff_from_answer("I cannot help with that.") == "I cannot help with that."


def test_chat_messages_carry_the_file_and_the_commit_message():
    system, user = chat_messages("point.py", SEED, "Move the point.")
    assert system["role"] == "system" and "unified diff" in system["content"]
    assert "point.py" in user["content"] and SEED in user["content"] and "Move the point." in user["content"]


# --- whole runs ----------------------------------------------------------------------------------

_TOY_RUN = {
    "run": {"iterations": 2, "batch_size": 6, "seed": 3},
    "environment": {"name": "tests.toy_environment:Toy"},
    "mutation": {"operator": "diff", "backend": "openai", "model": "scripted", "children_per_parent": 3},
    "sandbox": {"backend": "local", "pool_size": 1},
}


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_a_served_run_places_children_counts_tokens_and_keeps_the_key_out(api, tmp_path, key):
    answers = DiffWriter()
    with serve(answers) as url:
        config = build_config(_TOY_RUN, [f"mutation.endpoint={url}", f"mutation.api={api}",
                                         f"mutation.api_key_env={KEY_VARIABLE}",
                                         "mutation.price_per_mtok={prompt: 2.0, completion: 6.0}"])
        out = start_run(config, tmp_path / "run")
    assert all(seen["authorization"] == f"Bearer {key}" for seen in answers.seen)
    with open_run(out) as run:
        summary = summary_view(run)
        placed = [c for c in run.candidates() if c.stage == "placed" and c.parent_id is not None]
    assert placed and all(c.diff and c.extras["tokens"]["completion"] > 0 for c in placed)
    tokens = summary["tokens"]
    assert tokens["prompt"] > 0 and tokens["completion"] > 0
    assert tokens["per_placed_child"] == pytest.approx((tokens["prompt"] + tokens["completion"]) / len(placed))
    assert tokens["cost"] == pytest.approx((tokens["prompt"] * 2.0 + tokens["completion"] * 6.0) / 1e6)
    write_report(out, renders=0)
    assert "Model tokens" in (out / "report.html").read_text()
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_a_run_against_a_hanging_server_exits_0_with_every_child_failed(tmp_path):
    config = tmp_path / "toy.yaml"
    config.write_text(json.dumps(_TOY_RUN))
    out = tmp_path / "run"
    with serve_hanging() as url:
        result = run_elm("run", str(config), "--out", str(out), f"mutation.endpoint={url}",
                         "mutation.request_timeout_s=1", "mutation.max_retries=0")
    assert result.returncode == 0, result.stderr
    with open_run(out) as run:
        mutated = [c for c in run.candidates() if c.parent_id is not None]
        summary = run.summary()
        assert summary["funnel"]["generated"] == 0  # no child got past its request
        assert summary["seed_funnel"]["generated"] == 1
    assert len(mutated) == 12
    assert {(c.status, c.stage, c.error) for c in mutated} == {
        ("mutation_failed", Stage.REQUESTED, "request: timed out after 1 s")}


def test_the_local_sandbox_does_not_pass_the_key_variable(key):
    program = f"import os\ndef main():\n    return [os.environ.get('{KEY_VARIABLE}'), os.environ.get('PATH') is not None]\n"
    job = Job({"candidate.py": program}, "candidate.py", timeout_s=20, memory_mb=256)
    box = open_sandbox(SandboxConfig(backend="local", pool_size=1), hidden_env=[KEY_VARIABLE])
    try:
        [outcome] = box.run_many([job])
    finally:
        box.close()
    assert outcome.status == "ok", outcome.error
    assert outcome.result == [None, True]
