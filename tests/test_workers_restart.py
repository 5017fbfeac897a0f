"""A killed diff worker on a shared local Ray: its batch is retried on the other worker and
it restarts; a batch that keeps failing stops the run instead of vanishing."""

from __future__ import annotations

import os
import signal

import pytest

from elm.mutation.workers import WorkerError, open_diff_mutator
from tests.diff_workers import answered, asked, events_until, local_ray, pid_of, worker_config, worker_requests  # noqa: F401
from tests.tiny_codegen import tiny_codegen_dir  # noqa: F401


@pytest.mark.ray
def test_a_batch_lost_with_a_killed_worker_is_retried_and_the_worker_restarts(local_ray, tiny_codegen_dir):
    mutator = open_diff_mutator(worker_config(tiny_codegen_dir))
    try:
        first, second = worker_requests(12), worker_requests(12, parents=4)
        pid = pid_of("diff-worker-0")
        tickets = [mutator.submit(first), mutator.submit(second)]
        os.kill(pid, signal.SIGKILL)  # a crash, at once: its parts cannot have been answered yet
        children = [mutator.collect(ticket) for ticket in tickets]

        assert answered(children[0]) == asked(first)
        assert answered(children[1]) == asked(second)
        events = events_until(mutator, "worker_restart")
        retries = [detail for kind, detail in events if kind == "batch_retry"]
        assert retries and all(d["worker"] == "diff-worker-0" and d["retry_on"] == "diff-worker-1" for d in retries)
        assert all(d["attempt"] == 2 and d["requests"] > 0 for d in retries)  # each part retried once
        restart = next(detail for kind, detail in events if kind == "worker_restart")
        assert restart["worker"] == "diff-worker-0" and restart["pid_before"] != restart["pid_after"]
        again = mutator.collect(mutator.submit(first))
        assert {c.extras["worker"] for c in again} == {"diff-worker-0", "diff-worker-1"}
    finally:
        mutator.close()
    assert local_ray.is_initialized()  # joined, not started: left running for its owner


@pytest.mark.ray
def test_a_batch_that_keeps_failing_stops_the_run_instead_of_vanishing(local_ray, tiny_codegen_dir):
    mutator = open_diff_mutator(worker_config(tiny_codegen_dir, num_actors=1, max_batch_retries=1, max_restarts=0))
    try:
        pid = pid_of("diff-worker-0")
        ticket = mutator.submit(worker_requests(4))
        os.kill(pid, signal.SIGKILL)  # at once: the batch cannot have been answered yet
        with pytest.raises(WorkerError, match="failed on 2 attempts|diff workers are gone"):
            mutator.collect(ticket)
    finally:
        mutator.close()
