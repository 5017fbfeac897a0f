"""Online stage 2: a diff run fine-tunes its model in a separate process, swaps the weights
into its Ray workers, records the versions, and resumes with the latest one after kill -9."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest

from elm.config import ConfigError, build_config
from elm.dataset import write_examples
from elm.store import RunStore
from tests.conftest import REPO, cli_env, run_elm
from tests.test_finetune import _examples
from tests.tiny_codegen import tiny_codegen_dir  # noqa: F401

CONFIG = """\
run: {{iterations: {iterations}, batch_size: 4, seed: 5, snapshot_every: 5}}
environment: {{name: tests.toy_environment:Toy}}
mutation:
  operator: diff
  model: {model}
  max_new_tokens: 24
  finetune_every: 2
  finetune_steps: 3
  finetune_batch_size: 2
  finetune_data: {data}
workers: {{num_actors: 1, num_cpus: 1, in_flight: 1}}
sandbox: {{backend: local, pool_size: 1}}
"""


def _versions(run_dir) -> Counter:
    try:
        with sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT json_extract(extras, '$.model_version') FROM candidates "
                              "WHERE operator = 'diff'").fetchall()
    except sqlite3.Error:
        return Counter()
    return Counter(row[0] for row in rows)


def test_finetune_every_needs_the_diff_operator():
    with pytest.raises(ConfigError, match="mutation.operator=diff"):
        build_config({"environment": {"name": "toy"}, "mutation": {"operator": "gp", "finetune_every": 2}})


@pytest.mark.ray
@pytest.mark.slow
def test_weights_are_swapped_during_the_run_and_a_killed_run_resumes_with_the_latest(tmp_path, tiny_codegen_dir):
    data = tmp_path / "data.jsonl"
    write_examples(_examples(), data)
    config = tmp_path / "online.yaml"
    config.write_text(CONFIG.format(iterations=400, model=tiny_codegen_dir, data=data))
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "elm.cli", "run", str(config), "--out", str(run_dir), "--quiet"],
        env=cli_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while _versions(run_dir).get(1, 0) < 4 and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before a model update"
            time.sleep(0.5)
        assert _versions(run_dir).get(1, 0) >= 4, "no children from the fine-tuned weights in time"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        subprocess.run(["pkill", "-KILL", "-s", str(process.pid)], check=False)

    store = RunStore.open(run_dir, readonly=True)
    updates = [e for e in store.events() if e["kind"] == "model_updated"]
    last = store.last_iteration()
    store.close()
    assert updates and updates[0]["detail"]["version"] == 1
    detail = updates[0]["detail"]
    assert detail["examples"] + detail["heldout_examples"] == 16 and detail["eval_loss_after"] > 0
    assert (run_dir / "models" / "v1" / "config.json").is_file()
    before = _versions(run_dir)
    assert before[0] > 0 and before[1] > 0  # two model versions wrote children

    latest = max(u["detail"]["version"] for u in updates)
    run_elm("resume", str(run_dir), f"run.iterations={last + 2}", "mutation.finetune_every=1000", "--quiet",
            check=True)
    store = RunStore.open(run_dir, readonly=True)
    resumed = [c.extras["model_version"] for c in store.candidates(after_iteration=last)]
    store.close()
    assert resumed and set(resumed) == {latest}



def test_inspect_and_the_report_show_the_funnel_per_model_version(tmp_path):
    import json

    from elm.report import write_report
    from elm.store import CandidateRecord, IterationMetrics

    store = RunStore.create(tmp_path, {"environment": "toy"})
    outcomes = [(0, "generated", "mutation_failed"), (0, "parsed", "mutation_failed"), (1, "applied", "syntax_error"),
                (1, "scored", "ok"), (1, "generated", "mutation_failed")]
    records = [CandidateRecord(id=index, iteration=1, parent_id=None, operator="diff", file_name="point.py",
                               source=None, stage=stage, status=status, extras={"model_version": version})
               for index, (version, stage, status) in enumerate(outcomes)]
    metrics = IterationMetrics(1, 1.0, len(records), 0.0, 0.0, 0, None, None, 1.0, {}, {})
    store.record_iteration(records, metrics, events=[("model_updated", {"version": 1})])
    store.close()

    summary = json.loads(run_elm("inspect", str(tmp_path), "--json", check=True).stdout)
    by_version = summary["funnel_by_model_version"]
    assert by_version["0"]["generated"] == 2 and by_version["0"]["parsed"] == 1 and by_version["0"]["applied"] == 0
    assert by_version["1"]["generated"] == 3 and by_version["1"]["applied"] == 2 and by_version["1"]["scored"] == 1
    assert "per diff-model version" in run_elm("inspect", str(tmp_path), check=True).stdout
    write_report(tmp_path)
    assert "funnel-by-version" in (tmp_path / "report.html").read_text()
