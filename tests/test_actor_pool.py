"""The actor pool's one policy, on small actors of a shared local Ray: a share lost with its
actor runs on another member and the loss is recorded; with every member gone the pool
says so at once instead of waiting for one to come back."""

from __future__ import annotations

import os
import time
from functools import partial

import pytest

from elm.actor_pool import ActorPool, EventKinds, Member, Share
from elm.errors import UserError
from tests.diff_workers import events_until, local_ray  # noqa: F401

pytestmark = pytest.mark.ray

KINDS = EventKinds(retry="echo_retry", lost="echo_lost", restart="echo_restart", unit="values")


class Echo:
    """A member that answers with its name after a while."""

    def __init__(self, name: str) -> None:
        self.name = name

    def describe(self) -> dict:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "error": None}

    def echo(self, value: str, seconds: float) -> tuple[str, str]:
        time.sleep(seconds)
        return self.name, value

    def echo_slow_on(self, slow: str, value: str) -> tuple[str, str]:
        """Stuck (for far longer than any test waits) on the member named `slow`."""
        time.sleep(3600 if self.name == slow else 0)
        return self.name, value


class EchoError(UserError):
    pass


def _echo(value: str, seconds: float, actor) -> object:
    return actor.echo.remote(value, seconds)


def _pool(names: list[str], max_retries: int = 2) -> ActorPool:
    members = [Member(name, (name,), tags={"echo": name}) for name in names]
    pool = ActorPool(Echo, members, role="echo", error=EchoError, kinds=KINDS, max_restarts=0,
                     max_retries=max_retries, start_timeout_s=120)
    pool.start({"num_cpus": 0})
    return pool


def _kill_when_busy(ray, pool: ActorPool, index: int, share: Share) -> None:
    """Kill a member once its share has surely reached it (ray.kill is asynchronous)."""
    ray.wait([share.ref], timeout=1.0)
    ray.kill(pool.actor(index), no_restart=True)


def test_a_share_lost_with_its_member_runs_on_another_and_the_loss_is_recorded(local_ray):
    pool = _pool(["first", "second"])
    try:
        share = pool.send(Share(partial(_echo, "x", 5.0), size=1), 0)
        _kill_when_busy(local_ray, pool, 0, share)
        assert pool.gather([share]) == [("second", "x")]
        assert share.attempts == 2
        events = events_until(pool, "echo_lost", 60.0)
        assert [kind for kind, _ in events] == ["echo_retry", "echo_lost"]
        retry = events[0][1]
        assert (retry["echo"], retry["retry_on"], retry["values"], retry["attempt"]) == ("first", "second", 1, 2)
        assert events[1][1]["echo"] == "first"
        assert pool.targets() == [1]  # the lost member gets no more work
        assert pool.gather([pool.send(Share(partial(_echo, "y", 0.0), size=1), 1)]) == [("second", "y")]
    finally:
        pool.close()


def test_with_every_member_gone_the_pool_says_so_instead_of_waiting(local_ray):
    pool = _pool(["only"], max_retries=3)
    try:
        share = pool.send(Share(partial(_echo, "x", 5.0), size=1), 0)
        _kill_when_busy(local_ray, pool, 0, share)
        with pytest.raises(EchoError, match="all 1 echos are gone"):
            pool.gather([share])
    finally:
        pool.close()


def _echo_slow_on(slow: str, value: str, actor) -> object:
    return actor.echo_slow_on.remote(slow, value)


def test_a_member_stuck_past_the_share_deadline_is_restarted_and_its_share_runs_elsewhere(local_ray):
    members = [Member(name, (name,), tags={"echo": name}) for name in ("first", "second")]
    pool = ActorPool(Echo, members, role="echo", error=EchoError, kinds=KINDS, max_restarts=1,
                     max_retries=2, start_timeout_s=120, share_timeout_s=2.0)
    pool.start({"num_cpus": 0})
    try:
        share = pool.send(Share(partial(_echo_slow_on, "first", "x"), size=1), 0)
        assert pool.gather([share]) == [("second", "x")]
        events = events_until(pool, "echo_restart", 60.0)
        retry = next(detail for kind, detail in events if kind == "echo_retry")
        assert (retry["echo"], retry["retry_on"], retry["error"]) == ("first", "second", "TimeoutError")
        assert "workers.share_timeout_s=2.0 s" in retry["reason"]
    finally:
        pool.close()
