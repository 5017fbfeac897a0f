"""`elm dataset`: a run's children as diff-model training pairs that give the child back."""

from __future__ import annotations

import json

import pytest

from elm.config import build_config
from elm.dataset import collect_examples, completion_for, read_examples
from elm.experiment import start_run
from elm.mutation.diff import apply_diff, extract_diff, unified_diff
from elm.mutation.prompt import diff_prompt
from elm.mutation.scratch_model import END_OF_TEXT
from elm.store import RunStore
from tests.conftest import run_elm


@pytest.fixture(scope="module")
def gp_run(tmp_path_factory):
    config = build_config({
        "run": {"iterations": 4, "batch_size": 8, "seed": 3, "snapshot_every": 2},
        "environment": {"name": "tests.toy_environment:Toy"},
        "mutation": {"operator": "gp"},
        "sandbox": {"backend": "local", "pool_size": 2},
    })
    return start_run(config, tmp_path_factory.mktemp("gp") / "run")


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_exported_completion_applies_to_its_parent_and_gives_the_child(gp_run, tmp_path):
    out = tmp_path / "all.jsonl"
    run_elm("dataset", str(gp_run), "--out", str(out), "--select", "all", check=True)
    lines = _lines(out)
    store = RunStore.open(gp_run)
    records = {record.id: record for record in store.candidates()}
    store.close()
    children = [r for r in records.values() if r.parent_id is not None and r.source is not None
                and r.source != records[r.parent_id].source]
    assert lines and len(lines) <= len(children)
    pairs = set()
    for line in lines:
        child, parent = records[line["candidate_id"]], records[line["parent_id"]]
        assert child.parent_id == parent.id
        assert line["prompt"] == diff_prompt(child.file_name, parent.source, child.commit_message)
        assert line["prompt"].endswith("<DFF>")
        assert line["completion"].endswith(END_OF_TEXT)
        assert apply_diff(parent.source, extract_diff(line["completion"])) == child.source
        assert line["run"] == str(gp_run)
        assert line["fitness_gain"] is None or line["fitness_gain"] == pytest.approx(
            child.fitness - parent.fitness)
        assert line["new_niche"] == (child.placement == "new")
        pairs.add((line["prompt"], line["completion"]))
    assert len(pairs) == len(lines)  # each pair once
    assert not any(records[line["candidate_id"]].operator == "seed" for line in lines)


def test_selections_nest_and_operators_filter(gp_run):
    counts = {select: collect_examples([gp_run], select)[1].examples for select in ("all", "ok", "improved", "placed")}
    assert counts["all"] >= counts["ok"] >= counts["improved"] >= counts["placed"] > 0
    assert collect_examples([gp_run], "all", operators=["diff"])[1].examples == 0


def test_drawn_messages_put_the_runs_own_messages_in_the_prompts(gp_run):
    from tests.toy_environment import Toy

    written, _ = collect_examples([gp_run], "all")
    drawn, summary = collect_examples([gp_run], "all", messages="drawn")
    store = RunStore.open(gp_run)
    records = {record.id: record for record in store.candidates()}
    store.close()
    run_messages = {message.text for message in Toy.commit_messages}
    assert drawn and summary.without_drawn_message == 0
    for example in drawn:
        child, parent = records[example.candidate_id], records[example.parent_id]
        assert child.extras["drawn_message"] in run_messages
        assert example.prompt == diff_prompt(child.file_name, parent.source, child.extras["drawn_message"])
    assert {e.completion for e in drawn} == {e.completion for e in written}  # the same diffs
    assert not any(message in e.prompt for e in written for message in run_messages)  # GP describes its edits


def test_the_same_run_twice_writes_each_pair_once(gp_run):
    once, _ = collect_examples([gp_run], "ok")
    twice, summary = collect_examples([gp_run, gp_run], "ok")
    assert len(twice) == len(once) and summary.duplicates == len(once)


def test_holdout_splits_by_prompt(gp_run, tmp_path):
    examples, summary = collect_examples([gp_run], "all", holdout=0.5)
    assert 0 < summary.heldout < summary.examples
    sides = {}
    for example in examples:
        assert sides.setdefault(example.prompt, example.split) == example.split


def test_written_examples_read_back(gp_run, tmp_path):
    out = tmp_path / "placed.jsonl"
    run_elm("dataset", str(gp_run), "--out", str(out), check=True)
    assert [e.completion for e in read_examples(out)] == [line["completion"] for line in _lines(out)]


def test_completions_mark_a_missing_final_newline():
    before, after = "a = 1\nb = 2", "a = 1\nb = 3\n"
    assert "No newline at end of file" in unified_diff(before, after)
    assert apply_diff(before, extract_diff(completion_for(before, after))) == after
    assert apply_diff(after, extract_diff(completion_for(after, before))) == before
    assert completion_for(before, after).startswith(" @@ -1,2 +1,2 @@")


def test_a_folder_that_is_not_a_run_is_one_line_and_exit_2(tmp_path):
    result = run_elm("dataset", str(tmp_path), "--out", str(tmp_path / "x.jsonl"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "not a run folder" in result.stderr
