"""Commit message selection: the weighted draw, the Thompson-sampling bandit, the message
drawn for each child, and per-message statistics; a killed bandit run resumes the same."""

import json
from collections import Counter

import numpy as np
import pytest

from elm.environment import CommitMessage
from elm.mutation import Child, MutationRequest
from elm.mutation.messages import DRAWN_MESSAGE, MessageBandit, mark_drawn_messages
from elm.store import MessageOutcome, RunStore
from tests.conftest import run_elm
from tests.test_resume import _kill_after

MESSAGES = (CommitMessage("good", 1.0), CommitMessage("bad", 1.0), CommitMessage("never", 0.0))


def _outcome(iteration, message, tries, placed):
    return MessageOutcome(iteration, message, tries, tries, placed, placed, 0, 0)


def test_the_bandit_follows_the_evidence_and_never_draws_a_zero_weight():
    bandit = MessageBandit(MESSAGES, lag=1)
    bandit.record([_outcome(1, "good", 40, 30), _outcome(1, "bad", 40, 0)])
    picks = Counter(bandit.choose(200, np.random.default_rng(0), iteration=2))
    assert picks["good"] > 190 and picks["never"] == 0


def test_the_weights_are_the_prior():
    for heavy, light in (("first", "second"), ("second", "first")):
        weights = {heavy: 9.0, light: 1.0}
        bandit = MessageBandit([CommitMessage(t, weights[t]) for t in ("first", "second")], lag=1)
        picks = Counter(bandit.choose(500, np.random.default_rng(1), iteration=1))
        assert picks[heavy] > 450
    even = MessageBandit((CommitMessage("first", 1.0), CommitMessage("second", 1.0)), lag=1)
    assert 200 < Counter(even.choose(500, np.random.default_rng(1), iteration=1))["first"] < 300


def test_outcomes_count_only_once_the_lag_has_passed():
    lagged = MessageBandit(MESSAGES, lag=2)
    lagged.record([_outcome(4, "bad", 50, 50)])
    fresh = MessageBandit(MESSAGES, lag=2)
    # Iteration 5 draws with what was committed up to iteration 3: the same as knowing nothing.
    assert (lagged.choose(50, np.random.default_rng(2), iteration=5)
            == fresh.choose(50, np.random.default_rng(2), iteration=5))
    assert Counter(lagged.choose(100, np.random.default_rng(2), iteration=6))["bad"] > 90


def test_each_child_is_marked_with_the_message_drawn_for_it():
    requests = [MutationRequest(1, "p.py", "x = 1\n", "good", 0), MutationRequest(1, "p.py", "x = 1\n", "bad", 1),
                MutationRequest(2, "p.py", "y = 2\n", "good", 2)]
    children = [Child(1, "x = 3\n", "diff", commit_message="bad"),   # a model's child keeps its message
                Child(2, "y = 1\n", "gp", commit_message="changed constant 2 to 1"),
                Child(1, "x = 2\n", "diff", commit_message="good")]
    mark_drawn_messages(requests, children)
    assert [c.extras[DRAWN_MESSAGE] for c in children] == ["bad", "good", "good"]


def _bandit_config(toy_config, iterations):
    path = toy_config(iterations=iterations)
    path.write_text(path.read_text().replace("operator: gp", "operator: gp\n  message_selection: bandit"))
    return path


def _choices(run_dir):
    store = RunStore.open(run_dir, readonly=True)
    try:
        return [(c.id, c.extras.get(DRAWN_MESSAGE), c.source, c.stage) for c in store.candidates()]
    finally:
        store.close()


@pytest.mark.slow
def test_a_killed_bandit_run_resumes_with_the_same_choices(toy_config, tmp_path):
    config = _bandit_config(toy_config, iterations=16)
    whole = tmp_path / "whole"
    run_elm("run", str(config), "--out", str(whole), "--quiet", check=True)
    killed = tmp_path / "killed"
    _kill_after(killed, config, committed=5)
    store = RunStore.open(killed, readonly=True)
    assert store.last_iteration() < 16
    store.close()
    run_elm("resume", str(killed), "--quiet", check=True)
    expected = _choices(whole)
    assert len(expected) == 1 + 16 * 8
    assert len({message for _, message, _, _ in expected if message}) > 1
    assert _choices(killed) == expected

    result = run_elm("inspect", str(killed), "--messages", "--json", check=True)
    rows = json.loads(result.stdout)
    assert [row["text"] for row in rows] == ["Move the point.", "Small change."]
    assert sum(row["tries"] for row in rows) == 16 * 8
    assert sum(row["placed"] for row in rows) == sum(row["new"] + row["improved"] for row in rows) > 0
    assert all(0 <= row["posterior_mean"] <= 1 for row in rows)
    text = run_elm("inspect", str(killed), "--messages", check=True).stdout
    assert "Commit messages (bandit selection)" in text and "Move" in text and "tries" in text
    assert "Commit messages" in (killed / "report.html").read_text()
