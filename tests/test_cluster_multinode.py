"""A real multi-node Ray cluster on this machine: a head and a second node, each its own set
of Ray processes with its own custom resource. Diff workers (the tiny CodeGen) and node
evaluators run on both; the second node is killed mid-run, and the run completes on the
head with every iteration committed and the losses recorded in the store."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from elm.config import build_config
from elm.experiment import start_run
from elm.store import RunStore
from tests.conftest import REPO
from tests.tiny_codegen import tiny_codegen_dir  # noqa: F401

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BATCH = 4
ITERATIONS = 4


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch):
    """A head node and one more, each with one CPU (so one diff worker lands on each) and a
    resource naming it; every Ray process is stopped afterwards."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"head_node": 1}, "include_dashboard": False,
        # Notice a dead node within seconds rather than the default half minute.
        "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                           "health_check_failure_threshold": 3},
    })
    try:
        second = cluster.add_node(num_cpus=1, resources={"second_node": 1})
        cluster.wait_for_nodes()
        yield cluster, second
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def _config(model: Path, address: str):
    return build_config({
        "run": {"iterations": ITERATIONS, "batch_size": BATCH, "seed": 3, "snapshot_every": 2},
        # Two seeds, so iteration 0 sends one evaluation to each node.
        "environment": {"name": "tests.toy_environment:Toy", "options": {"broken_seed": True}},
        "mutation": {"operator": "diff", "model": str(model), "max_new_tokens": 24},
        "workers": {"num_actors": 2, "num_cpus": 1, "in_flight": 1, "max_batch_retries": 3,
                    "distributed_evaluation": True},
        "sandbox": {"backend": "local", "pool_size": 1, "timeout_s": 10},
        "ray": {"address": address},
    })


def _node_ids() -> dict[str, str]:
    """Which node holds which custom resource: {"head_node": id, "second_node": id}."""
    import ray

    return {name: node["NodeID"] for node in ray.nodes() for name in ("head_node", "second_node")
            if name in node["Resources"]}


def _worker_nodes() -> dict[str, str]:
    """Each live diff worker's node, as the worker itself describes it."""
    import ray

    described = {}
    for name in ray.util.list_named_actors():
        if "diff-worker-" in name:
            info = ray.get(ray.get_actor(name).describe.remote(), timeout=60)
            described[info["name"]] = info["node"]
    return described


def test_a_run_spreads_over_two_nodes_and_survives_losing_one(cluster, tmp_path, tiny_codegen_dir):
    cluster, second = cluster
    seen: dict[str, object] = {}

    def kill_the_second_node_after_iteration_1(metrics):
        if metrics.iteration == 1:
            seen["nodes"] = _node_ids()
            seen["workers"] = _worker_nodes()
            cluster.remove_node(second)

    run_dir = start_run(_config(tiny_codegen_dir, cluster.address), tmp_path / "run",
                        on_iteration=kill_the_second_node_after_iteration_1)

    nodes = seen["nodes"]
    assert set(nodes) == {"head_node", "second_node"}
    assert sorted(seen["workers"].values()) == sorted(nodes.values()), "one diff worker on each node"
    store = RunStore.open(run_dir, readonly=True)
    try:
        assert store.last_iteration() == ITERATIONS
        children = list(store.candidates(after_iteration=0))
        assert Counter(c.iteration for c in children) == dict.fromkeys(range(1, ITERATIONS + 1), BATCH)
        events = store.events()
    finally:
        store.close()
    evaluated = {e["iteration"]: e["detail"] for e in events if e["kind"] == "evaluations_by_node"}
    assert evaluated[0] == {nodes["head_node"]: 1, nodes["second_node"]: 1}, "a seed evaluated on each node"
    after = [detail for iteration, detail in evaluated.items() if iteration > 1]
    assert all(set(detail) == {nodes["head_node"]} for detail in after), "after the loss only the head evaluates"
    lost = [e for e in events if e["kind"] == "evaluator_lost"]
    assert [(e["iteration"], e["detail"]["node"]) for e in lost] == [(2, nodes["second_node"])]
    workers = seen["workers"]
    second_worker = next(w for w, n in workers.items() if n == nodes["second_node"])
    head_worker = next(w for w, n in workers.items() if n == nodes["head_node"])
    kinds = Counter(e["kind"] for e in events)
    assert kinds["batch_retry"] + kinds["worker_lost"] >= 1, kinds
    assert all(e["detail"]["worker"] == second_worker for e in events
               if e["kind"] in ("batch_retry", "worker_lost")), "only the lost node's worker failed"
    assert {c.extras["worker"] for c in children if c.iteration > 1} == {head_worker}


def test_a_run_without_ray_address_starts_its_own_ray_beside_a_running_cluster(cluster):
    """With `ray.address` unset, elm starts a local Ray of its own, sized for its workers,
    even where another cluster runs on the machine (a bare ray.init() would try to join it)."""
    import subprocess
    import sys

    from tests.conftest import cli_env

    head, _ = cluster
    probe = ("from elm.cluster import join_cluster, leave_cluster\n"
             "from elm.config import build_config\n"
             "import ray\n"
             "join_cluster(build_config({'environment': {'name': 'tests.toy_environment:Toy'}}))\n"
             "print(ray.get_runtime_context().gcs_address)\n"
             "leave_cluster()\n")
    environment = {key: value for key, value in cli_env().items() if key != "RAY_ADDRESS"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=environment,
                            cwd=REPO, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and result.stdout.strip() != head.address
