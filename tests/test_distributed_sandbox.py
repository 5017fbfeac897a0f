"""Evaluation over a Ray cluster: one evaluator per node with its own (local) sandbox pool,
on a single-node local Ray; outcomes in job order, a killed evaluator's share retried once
it is back, and the retry and the restart recorded as events."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter

import pytest

from elm.archive import Archive
from elm.config import build_config
from elm.evaluator import Evaluator
from elm.loop import EvolutionLoop
from elm.mutation.gp import GPMutator
from elm.sandbox import Job
from elm.sandbox.distributed import DistributedSandbox
from elm.store import RunStore
from tests.conftest import REPO
from tests.toy_environment import Toy

pytestmark = pytest.mark.ray


def _config(iterations: int = 3):
    return build_config({
        "run": {"iterations": iterations, "batch_size": 8, "seed": 5, "snapshot_every": 2},
        "environment": {"name": "tests.toy_environment:Toy"},
        "mutation": {"operator": "gp"},
        "workers": {"distributed_evaluation": True, "max_batch_retries": 2},
        "sandbox": {"backend": "local", "pool_size": 2, "timeout_s": 10},
    })


def _job(body: str) -> Job:
    return Job({"task.py": f"def main():\n{body}\n"}, "task.py", timeout_s=10)


def _evaluators(ray) -> list:
    """The live node evaluators, found by their names as any Ray client finds them."""
    return [ray.get_actor(name) for name in ray.util.list_named_actors() if "-node-evaluator-" in name]


def _dies_within(ray, actor, seconds: float) -> bool:
    """True once a call to `actor` fails because it is dead. ray.kill is asynchronous: a
    call sent just after it may still reach the living actor and be answered."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ray.get(actor.describe.remote(), timeout=seconds)
        except ray.exceptions.RayActorError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray whose workers keep their scratch folders under a folder of this test, so
    an evaluator killed before it could clean up leaves nothing behind."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    scratch = tmp_path_factory.mktemp("evaluator-tmp")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "TMPDIR": str(scratch)}})
    yield ray, scratch
    ray.shutdown()
    shutil.rmtree(scratch, ignore_errors=True)


def test_one_evaluator_per_node_returns_outcomes_in_job_order(local_ray):
    ray, scratch = local_ray
    sandbox = DistributedSandbox(_config())
    try:
        nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
        actors = _evaluators(ray)
        assert len(actors) == len(nodes)
        assert list(scratch.glob("elm-sandbox-*")), "the evaluator opens its pool on its node"
        jobs = [_job(f"    return {index}") for index in range(5)] + [_job("    raise ValueError('no')")]
        outcomes = sandbox.run_many(jobs)
        events = sandbox.take_events()
    finally:
        sandbox.close()
    assert events == [("evaluations_by_node", {nodes[0]: 6})]
    assert [o.status for o in outcomes] == ["ok"] * 5 + ["error"]
    assert [o.result for o in outcomes[:5]] == [0, 1, 2, 3, 4]
    assert "ValueError" in outcomes[5].error
    assert not list(scratch.glob("elm-sandbox-*")), "closing closes every node's pool"
    assert all(_dies_within(ray, actor, seconds=60) for actor in actors)


def test_a_share_lost_with_its_evaluator_is_run_again(local_ray):
    ray, _ = local_ray
    sandbox = DistributedSandbox(_config())
    try:
        (evaluator,) = _evaluators(ray)
        # The kill comes 0.5 s in; the sleep leaves it seconds to land (ray.kill is asynchronous).
        killer = threading.Timer(0.5, lambda: ray.kill(evaluator, no_restart=False))
        killer.start()
        outcomes = sandbox.run_many([_job("    import time\n    time.sleep(4)\n    return 'slept'")] * 2)
        killer.join()
        events = sandbox.take_events()
    finally:
        sandbox.close()
    assert [(o.status, o.result) for o in outcomes] == [("ok", "slept")] * 2
    # The only evaluator: its share waits for Ray to restart it, then runs there again.
    assert Counter(kind for kind, _ in events) == {"evaluator_restart": 1, "evaluation_retry": 1,
                                                   "evaluations_by_node": 1}, events
    retry = next(detail for kind, detail in events if kind == "evaluation_retry")
    assert retry["evaluator"] == retry["retry_on"] == "node-evaluator-0"
    assert retry["jobs"] == 2 and retry["attempt"] == 2


def test_the_loop_runs_with_distributed_evaluation(local_ray, tmp_path):
    config = _config(iterations=3)
    environment = Toy()
    archive = Archive(environment.descriptor_space, config.archive, qd_offset=environment.qd_offset)
    store = RunStore.create(tmp_path, {"archive": archive.layout()})
    sandbox = DistributedSandbox(config)
    try:
        evaluator = Evaluator(environment, sandbox, config.sandbox)
        EvolutionLoop(config, environment, archive, GPMutator(), evaluator, store).run()
        candidates = list(store.candidates())
    finally:
        sandbox.close()
        store.close()
    assert Counter(c.iteration for c in candidates) == {0: 1, 1: 8, 2: 8, 3: 8}
    # Reused children (the same program as an earlier one) never reach the sandbox.
    ran = [c for c in candidates if c.status not in ("mutation_failed", "syntax_error", "duplicate", "unchanged")]
    assert ran and all("sandbox_s" in c.timings for c in ran)
    assert any(c.status == "ok" for c in candidates[1:])
