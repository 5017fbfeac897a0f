"""What the diff-worker tests share: a small diff run's config, requests, the live Ray actor
behind a worker, and one local Ray per test module."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

from elm.config import ElmConfig, build_config
from elm.mutation import MutationRequest
from tests.conftest import REPO
from tests.toy_environment import SEED

BATCH = 8


def worker_config(model: Path, **workers) -> ElmConfig:
    return build_config({
        "run": {"iterations": 4, "batch_size": BATCH, "seed": 7, "snapshot_every": 2},
        "environment": {"name": "tests.toy_environment:Toy"},
        "mutation": {"operator": "diff", "model": str(model), "max_new_tokens": 32},
        "workers": {"num_actors": 2, "num_cpus": 1, "max_batch_retries": 3, **workers},
        "sandbox": {"backend": "local", "pool_size": 2},
    })


def worker_requests(count: int, parents: int = 3) -> list[MutationRequest]:
    messages = ("Move the point.", "Small change.")
    return [MutationRequest(index % parents, "point.py", SEED, messages[index % 2], seed=index)
            for index in range(count)]


def asked(requests) -> Counter:
    return Counter((r.parent_id, r.commit_message) for r in requests)


def answered(children) -> Counter:
    return Counter((c.parent_id, c.commit_message) for c in children)


def actor_of(worker: str):
    """The live Ray actor behind a diff worker, found by its name."""
    import ray

    names = [name for name in ray.util.list_named_actors() if name.endswith(f"-{worker}")]
    assert len(names) == 1, names
    return ray.get_actor(names[0])


def pid_of(worker: str) -> int:
    """The process of an idle diff worker (asked while idle: a busy actor answers only
    after its batch)."""
    import ray

    return ray.get(actor_of(worker).describe.remote(), timeout=60)["pid"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (its own, even beside another test's cluster); the
    mutators join it instead of starting their own."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield ray
    ray.shutdown()


def events_until(source, kind: str, timeout_s: float = 120.0) -> list:
    """The events `source.take_events()` gives (a mutator, an actor pool) until one of `kind`."""
    events, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events += source.take_events()
        if any(k == kind for k, _ in events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"no {kind} event in {timeout_s} s: {events}")
