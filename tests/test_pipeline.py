"""`elm bench pipeline`: the real loop, Ray worker and local sandbox, sequential then
pipelined. Only the shape of the figures is checked here; speed is the bench's to report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_elm


@pytest.mark.ray
@pytest.mark.slow
def test_pipeline_bench_reports_both_loops_and_the_stages_of_the_sequential_one():
    result = run_elm("bench", "pipeline", "--json", "--iterations", "2", "--batch-size", "4",
                     "--new-tokens", "16", "--repeats", "1", check=True)
    figures = json.loads(result.stdout)

    for key in ("sequential_s", "pipelined_s", "slower_stage_s", "generation_s", "evaluation_s"):
        assert figures[key] > 0, key
    assert figures["slower_stage_s"] == max(figures["generation_s"], figures["evaluation_s"])
    assert figures["generation_s"] + figures["evaluation_s"] == pytest.approx(figures["sequential_s"], abs=0.002)
    # The ratio comes from the unrounded times; the printed times are rounded to 1 ms.
    pipelined, slower, half_ms = figures["pipelined_s"], figures["slower_stage_s"], 0.0005
    assert (pipelined - half_ms) / (slower + half_ms) - half_ms <= figures["ratio"] <= (pipelined + half_ms) / (slower - half_ms) + half_ms
    assert figures["candidates"] == 1 + 2 * 4
    assert figures["evaluated"] == figures["candidates"]  # every child ran in the sandbox
    # Zero when the sandbox's own overhead already takes as long as generating (a busy machine).
    assert figures["eval_ms"] >= 0 and figures["sandbox_backend"] == "local"
    assert 0 < figures["generation_busy"] <= 1 and 0 < figures["evaluation_busy"] <= 1
