"""Diff workers without Ray and in runs that start their own Ray: batches split over actors,
a run with two workers, GPU requests refused on a machine without one."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from elm.experiment import start_run
from elm.mutation.workers import WorkerError, _worker_settings, split_requests
from elm.store import RunStore
from tests.conftest import run_elm
from tests.diff_workers import BATCH, asked, worker_config, worker_requests
from tests.tiny_codegen import tiny_codegen_dir  # noqa: F401

# -- no Ray needed -----------------------------------------------------------------------


def test_split_keeps_each_prompt_on_one_worker_and_balances_the_load():
    requests = worker_requests(12)
    parts = split_requests(requests, [0, 0])
    assert asked([r for part in parts for r in part]) == asked(requests)
    for key in asked(requests):
        holders = [index for index, part in enumerate(parts) if key in asked(part)]
        assert len(holders) == 1, key
    assert sorted(len(part) for part in parts) == [6, 6]


def test_split_favours_the_worker_with_less_work_in_flight():
    parts = split_requests(worker_requests(6), [10, 0])
    assert [len(part) for part in parts] == [0, 6]


def test_a_worker_without_a_gpu_runs_on_cpu():
    config = worker_config(Path("model"))
    assert _worker_settings(config.mutation, config.workers).device == "cpu"
    with_cuda = worker_config(Path("model"))
    with_cuda.mutation.device = "cuda"
    with pytest.raises(WorkerError, match="workers.num_gpus"):
        _worker_settings(with_cuda.mutation, with_cuda.workers)


# -- Ray started by the run itself --------------------------------------------------------


@pytest.mark.ray
def test_a_run_with_two_workers_completes_and_stops_its_ray(tmp_path, tiny_codegen_dir):
    import ray

    run_dir = start_run(worker_config(tiny_codegen_dir, in_flight=2), tmp_path / "run")

    assert not ray.is_initialized()
    store = RunStore.open(run_dir)
    children = list(store.candidates(after_iteration=0))
    assert len(children) == 4 * BATCH
    assert Counter(c.iteration for c in children) == {1: BATCH, 2: BATCH, 3: BATCH, 4: BATCH}
    assert {c.extras["worker"] for c in children} == {"diff-worker-0", "diff-worker-1"}
    for child in children:
        assert child.operator == "diff"
        assert {"generate_s", "worker_s", "queue_s", "collect_wait_s"} <= set(child.timings)
    assert [m.iteration for m in store.metrics()] == [0, 1, 2, 3, 4]
    assert store.events() == []
    store.close()


@pytest.mark.ray
def test_asking_for_a_gpu_without_one_is_a_one_line_error(tmp_path, tiny_codegen_dir):
    config = tmp_path / "gpu.yaml"
    config.write_text(
        "environment: {name: tests.toy_environment:Toy}\n"
        f"mutation: {{operator: diff, model: {tiny_codegen_dir}}}\n"
        "sandbox: {backend: local}\n"
    )
    result = run_elm("run", str(config), "workers.num_gpus=1", "--out", str(tmp_path / "run"), "--quiet")

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "workers.num_gpus=1 but the Ray cluster has no GPU" in lines[0]
    assert "workers.num_gpus=0" in lines[0]
    assert not (tmp_path / "run").exists()
