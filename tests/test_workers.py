"""Diff workers on a local Ray with the tiny CodeGen: batches split over actors, a killed
actor's batch retried and counted, GPU requests refused on a machine without one."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from elm.config import ElmConfig, build_config
from elm.experiment import start_run
from elm.mutation import MutationRequest
from elm.mutation.workers import WorkerError, _worker_settings, open_diff_mutator, split_requests
from elm.store import RunStore
from tests.conftest import REPO, run_elm
from tests.tiny_codegen import tiny_codegen_dir  # noqa: F401
from tests.toy_environment import SEED

BATCH = 8


def _config(model: Path, **workers) -> ElmConfig:
    return build_config({
        "run": {"iterations": 4, "batch_size": BATCH, "seed": 7, "snapshot_every": 2},
        "environment": {"name": "tests.toy_environment:Toy"},
        "mutation": {"operator": "diff", "model": str(model), "max_new_tokens": 32},
        "workers": {"num_actors": 2, "num_cpus": 1, "max_batch_retries": 3, **workers},
        "sandbox": {"backend": "local", "pool_size": 2},
    })


def _requests(count: int, parents: int = 3) -> list[MutationRequest]:
    messages = ("Move the point.", "Small change.")
    return [MutationRequest(index % parents, "point.py", SEED, messages[index % 2], seed=index)
            for index in range(count)]


def _asked(requests) -> Counter:
    return Counter((r.parent_id, r.commit_message) for r in requests)


def _answered(children) -> Counter:
    return Counter((c.parent_id, c.commit_message) for c in children)


def _actor(worker: str):
    """The live Ray actor behind a diff worker, found by its name."""
    import ray

    names = [name for name in ray.util.list_named_actors() if name.endswith(f"-{worker}")]
    assert len(names) == 1, names
    return ray.get_actor(names[0])


def _pid_of(worker: str) -> int:
    """The process of an idle diff worker (asked while idle: a busy actor answers only
    after its batch)."""
    import ray

    return ray.get(_actor(worker).describe.remote(), timeout=60)["pid"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module; the mutators join it instead of starting their own."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield ray
    ray.shutdown()


# -- no Ray needed -----------------------------------------------------------------------


def test_split_keeps_each_prompt_on_one_worker_and_balances_the_load():
    requests = _requests(12)
    parts = split_requests(requests, [0, 0])
    assert _asked([r for part in parts for r in part]) == _asked(requests)
    for key in _asked(requests):
        holders = [index for index, part in enumerate(parts) if key in _asked(part)]
        assert len(holders) == 1, key
    assert sorted(len(part) for part in parts) == [6, 6]


def test_split_favours_the_worker_with_less_work_in_flight():
    parts = split_requests(_requests(6), [10, 0])
    assert [len(part) for part in parts] == [0, 6]


def test_a_worker_without_a_gpu_runs_on_cpu():
    config = _config(Path("model"))
    assert _worker_settings(config.mutation, config.workers).device == "cpu"
    with_cuda = _config(Path("model"))
    with_cuda.mutation.device = "cuda"
    with pytest.raises(WorkerError, match="workers.num_gpus"):
        _worker_settings(with_cuda.mutation, with_cuda.workers)


# -- Ray started by the run itself --------------------------------------------------------


@pytest.mark.ray
def test_a_run_with_two_workers_completes_and_stops_its_ray(tmp_path, tiny_codegen_dir):
    import ray

    run_dir = start_run(_config(tiny_codegen_dir, in_flight=2), tmp_path / "run")

    assert not ray.is_initialized()
    store = RunStore.open(run_dir)
    children = list(store.candidates("iteration > 0"))
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


# -- one shared local Ray -----------------------------------------------------------------


@pytest.mark.ray
def test_a_batch_lost_with_a_killed_worker_is_retried_and_the_worker_restarts(local_ray, tiny_codegen_dir):
    mutator = open_diff_mutator(_config(tiny_codegen_dir))
    try:
        first, second = _requests(12), _requests(12, parents=4)
        pid = _pid_of("diff-worker-0")
        tickets = [mutator.submit(first), mutator.submit(second)]
        os.kill(pid, signal.SIGKILL)  # a crash, at once: its parts cannot have been answered yet
        children = [mutator.collect(ticket) for ticket in tickets]

        assert _answered(children[0]) == _asked(first)
        assert _answered(children[1]) == _asked(second)
        events = _events_until(mutator, "worker_restart")
        retries = [detail for kind, detail in events if kind == "batch_retry"]
        assert retries and all(d["worker"] == "diff-worker-0" and d["retry_on"] == "diff-worker-1" for d in retries)
        assert mutator.retries == len(retries)
        restart = next(detail for kind, detail in events if kind == "worker_restart")
        assert restart["worker"] == "diff-worker-0" and restart["pid_before"] != restart["pid_after"]
        again = mutator.collect(mutator.submit(first))
        assert {c.extras["worker"] for c in again} == {"diff-worker-0", "diff-worker-1"}
    finally:
        mutator.close()
    assert local_ray.is_initialized()  # joined, not started: left running for its owner


@pytest.mark.ray
def test_a_run_loses_no_batch_when_a_worker_is_killed(local_ray, tmp_path, tiny_codegen_dir):
    config = _config(tiny_codegen_dir, in_flight=3)
    config.run.iterations = 5

    def kill_worker_after_first_iteration(metrics):
        if metrics.iteration == 1:
            local_ray.kill(_actor("diff-worker-0"), no_restart=True)

    run_dir = start_run(config, tmp_path / "run", on_iteration=kill_worker_after_first_iteration)

    store = RunStore.open(run_dir)
    children = list(store.candidates("iteration > 0"))
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
def test_a_batch_that_keeps_failing_stops_the_run_instead_of_vanishing(local_ray, tiny_codegen_dir):
    mutator = open_diff_mutator(_config(tiny_codegen_dir, num_actors=1, max_batch_retries=1, max_restarts=0))
    try:
        pid = _pid_of("diff-worker-0")
        ticket = mutator.submit(_requests(4))
        os.kill(pid, signal.SIGKILL)  # at once: the batch cannot have been answered yet
        with pytest.raises(WorkerError, match="failed on 2 attempts|diff workers are gone"):
            mutator.collect(ticket)
    finally:
        mutator.close()


def _events_until(mutator, kind: str, timeout_s: float = 120.0) -> list:
    events, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events += mutator.take_events()
        if any(k == kind for k, _ in events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"no {kind} event in {timeout_s} s: {events}")


@pytest.mark.ray
def test_swapped_weights_serve_the_parts_that_follow_and_survive_a_worker_restart(local_ray, tmp_path,
                                                                                 tiny_codegen_dir):
    from elm.mutation.scratch_model import build_tiny_codegen

    other = build_tiny_codegen(tmp_path / "other", seed=1)
    mutator = open_diff_mutator(_config(tiny_codegen_dir))
    try:
        before = mutator.submit(_requests(4))
        mutator.load_model(str(other), 1)
        after = mutator.submit(_requests(4))
        assert {c.extras["model_version"] for c in mutator.collect(before)} == {0}
        assert {c.extras["model_version"] for c in mutator.collect(after)} == {1}

        os.kill(_pid_of("diff-worker-0"), signal.SIGKILL)  # Ray restarts it with its first weights
        mutator.collect(mutator.submit(_requests(8)))  # its part is retried on the other worker
        _events_until(mutator, "worker_restart")
        children = mutator.collect(mutator.submit(_requests(8)))
        assert {c.extras["worker"] for c in children} == {"diff-worker-0", "diff-worker-1"}
        assert {c.extras["model_version"] for c in children} == {1}
        mutator.load_model(str(tmp_path / "absent"), 2)
        children = mutator.collect(mutator.submit(_requests(4)))
        assert {c.extras["model_version"] for c in children} == {1}  # the old weights stay
        failed = [detail for kind, detail in _events_until(mutator, "model_load_failed") if kind == "model_load_failed"]
        assert failed[0]["version"] == 2 and "not found" in failed[0]["reason"]
    finally:
        mutator.close()
