"""What a run leaves and prints when nobody watches a terminal: a clean run folder (no
SQLite side files) and plain progress lines in the log."""

from __future__ import annotations

import re

from elm.progress import PLAIN_EVERY
from tests.conftest import run_elm


def test_clean_end_leaves_no_wal_and_logs_plain_progress_lines(toy_config, tmp_path):
    out = tmp_path / "run"
    iterations = PLAIN_EVERY + 2
    result = run_elm("run", str(toy_config(iterations=iterations)), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("run.sqlite*")) == ["run.sqlite"]

    lines = [line for line in result.stderr.splitlines() if line.startswith("iteration ")]
    assert [line.split(" | ")[0] for line in lines] == [  # the seeds, every PLAIN_EVERY, the last
        f"iteration 0/{iterations}", f"iteration {PLAIN_EVERY}/{iterations}", f"iteration {iterations}/{iterations}"]
    assert all(re.search(r"coverage [\d.]+% \| QD \S+ \| best \S+ \| [\d.]+ evals/s \| valid \d+/\d+ applied", line)
               for line in lines)
    assert "…" not in result.stderr

    inspected = run_elm("inspect", str(out), "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert sorted(p.name for p in out.glob("run.sqlite*")) == ["run.sqlite"]


def test_quiet_run_prints_no_progress(toy_config, tmp_path):
    result = run_elm("run", str(toy_config(iterations=2)), "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("iteration ")]
