"""Diff workers in a run on a shared local Ray: a worker killed mid-run loses no batch, and
weights swapped during the run serve the parts that follow and survive a worker restart."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from elm.experiment import start_run
from elm.mutation.workers import open_diff_mutator
from elm.store import RunStore
from tests.diff_workers import BATCH, actor_of, events_until, local_ray, pid_of, worker_config, worker_requests  # noqa: F401
from tests.tiny_codegen import tiny_codegen_dir  # noqa: F401


@pytest.mark.ray
def test_a_run_loses_no_batch_when_a_worker_is_killed(local_ray, tmp_path, tiny_codegen_dir):
    config = worker_config(tiny_codegen_dir, in_flight=3)
    config.run.iterations = 5

    def kill_worker_after_first_iteration(metrics):
        if metrics.iteration == 1:
            local_ray.kill(actor_of("diff-worker-0"), no_restart=True)

    run_dir = start_run(config, tmp_path / "run", on_iteration=kill_worker_after_first_iteration)

    store = RunStore.open(run_dir)
    children = list(store.candidates(after_iteration=0))
    assert Counter(c.iteration for c in children) == dict.fromkeys(range(1, 6), BATCH)
    events = store.events()
    kinds = Counter(event["kind"] for event in events)
    assert kinds["batch_retry"] >= 1
    assert all(e["detail"]["worker"] == "diff-worker-0" for e in events if e["kind"] == "batch_retry")
    assert kinds["worker_lost"] == 1
    retried = [c for c in children if c.extras.get("worker_attempts", 1) > 1]
    assert retried and all(c.extras["worker"] == "diff-worker-1" for c in retried)
    store.close()


@pytest.mark.ray
def test_swapped_weights_serve_the_parts_that_follow_and_survive_a_worker_restart(local_ray, tmp_path,
                                                                                 tiny_codegen_dir):
    from elm.mutation.scratch_model import build_tiny_codegen

    other = build_tiny_codegen(tmp_path / "other", seed=1)
    mutator = open_diff_mutator(worker_config(tiny_codegen_dir))
    try:
        before = mutator.submit(worker_requests(4))
        mutator.load_model(str(other), 1)
        after = mutator.submit(worker_requests(4))
        assert {c.extras["model_version"] for c in mutator.collect(before)} == {0}
        assert {c.extras["model_version"] for c in mutator.collect(after)} == {1}

        os.kill(pid_of("diff-worker-0"), signal.SIGKILL)  # Ray restarts it with its first weights
        mutator.collect(mutator.submit(worker_requests(8)))  # its part is retried on the other worker
        events_until(mutator, "worker_restart")
        children = mutator.collect(mutator.submit(worker_requests(8)))
        assert {c.extras["worker"] for c in children} == {"diff-worker-0", "diff-worker-1"}
        assert {c.extras["model_version"] for c in children} == {1}
        mutator.load_model(str(tmp_path / "absent"), 2)
        children = mutator.collect(mutator.submit(worker_requests(4)))
        assert {c.extras["model_version"] for c in children} == {1}  # the old weights stay
        failed = [detail for kind, detail in events_until(mutator, "model_load_failed") if kind == "model_load_failed"]
        assert failed[0]["version"] == 2 and "not found" in failed[0]["reason"]
    finally:
        mutator.close()
