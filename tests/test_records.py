"""The run's vocabulary (elm/records.py): every stage has its place in the funnel or before
it, the enums store as the same words as before, and a scoring failure is recorded as a
kind with the candidate, not told apart by its message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from elm.config import build_config
from elm.environment import Score
from elm.evaluator import Evaluator
from elm.records import (
    BEFORE_FUNNEL,
    FAILURE_KEY,
    FUNNEL,
    Child,
    ScoringFailure,
    Stage,
    Status,
    funnel_from_stops,
)
from elm.sandbox import Outcome
from elm.store import IterationMetrics, RunStore
from tests.toy_environment import Toy


def test_every_stage_is_in_the_funnel_or_before_it() -> None:
    assert sorted(FUNNEL + BEFORE_FUNNEL) == sorted(Stage)
    assert not set(FUNNEL) & set(BEFORE_FUNNEL)
    assert list(FUNNEL) == ["generated", "parsed", "applied", "unchanged", "duplicate",
                            "compiled", "ran", "scored", "placed"]


def test_children_without_text_are_not_generated_and_an_unknown_stage_is_refused() -> None:
    counts = funnel_from_stops({"skipped": 3, "requested": 2, "parsed": 1, "placed": 1})
    assert counts["generated"] == 2 and counts["parsed"] == 2 and counts["placed"] == 1
    with pytest.raises(ValueError, match="'lost' is neither in the funnel nor before it"):
        funnel_from_stops({"lost": 1})


def test_stages_and_statuses_are_stored_and_printed_as_their_words(tmp_path: Path) -> None:
    assert json.dumps({Stage.PLACED: Status.OK}) == '{"placed": "ok"}'
    assert f"{Status.BAD_OUTPUT}" == "bad_output"
    _evaluate(tmp_path, [Outcome("ok", 0.0, [1.0, 1.0])])
    (record,) = _stored(tmp_path)
    assert (type(record.stage), record.stage, type(record.status), record.status) == (str, "scored", str, "ok")


class _Fragile(Toy):
    """Scores like Toy, except that its scoring code breaks on some results."""

    def score(self, result: Any) -> Score:
        if result == "raise":
            raise KeyError("no such field")
        if result == "wrong type":
            return (1.0, [0.0, 0.0])  # type: ignore[return-value]  # the bug under test
        return super().score(result)


def test_a_scoring_failure_is_recorded_as_its_kind(tmp_path: Path) -> None:
    results = ["raise", "wrong type", "not a point"]
    records = _evaluate(tmp_path, [Outcome("ok", 0.0, r) for r in results])
    assert [r.status for r in records] == ["invalid"] * 3
    assert [r.extras.get(FAILURE_KEY) for r in records] == [ScoringFailure.RAISED, ScoringFailure.MALFORMED, None]
    assert [r.extras.get(FAILURE_KEY) for r in _stored(tmp_path)] == ["score_raised", "score_malformed", None]


class _Replay:
    def __init__(self, outcomes: list[Outcome]) -> None:
        self.outcomes = outcomes

    def run_many(self, jobs: list[Any]) -> list[Outcome]:
        assert len(jobs) == len(self.outcomes)
        return self.outcomes

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        return []

    def close(self) -> None:
        pass


def _evaluate(folder: Path, outcomes: list[Outcome]) -> list[Any]:
    config = build_config({"environment": {"name": "toy"}, "sandbox": {"backend": "local"}})
    evaluator = Evaluator(_Fragile(), _Replay(outcomes), config.sandbox)  # type: ignore[arg-type]
    children = [Child(parent_id=None, source=f"def point():\n    return {i}\n", operator="manual")
                for i in range(len(outcomes))]
    records = evaluator.evaluate(children, list(range(len(children))), iteration=0)
    store = RunStore.create(folder, {})
    store.record_iteration(records, IterationMetrics(0, 0.1, len(records), 0.0, 0.0, 0, None, None, 0.0, {}, {}))
    store.close()
    return records


def _stored(folder: Path) -> list[Any]:
    store = RunStore.open(folder, readonly=True)
    try:
        return list(store.candidates())
    finally:
        store.close()
