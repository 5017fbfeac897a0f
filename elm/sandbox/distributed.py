"""Evaluation spread over a Ray cluster: one evaluator per node, each with its own pool.

`DistributedSandbox(config)` joins the cluster (`ray.address`, or a local Ray) and pins one
`NodeEvaluator` actor to every alive node. Each evaluator opens the configured backend
(`open_sandbox(config.sandbox)`) on its own node, so each node runs candidates in its own
warm Docker pool (or local runners). `run_many` splits the jobs into one contiguous share
per node and puts the outcomes back in job order.

The evaluators are an `ActorPool` (`elm/actor_pool.py`), with the diff workers' policy: a
share lost with its evaluator (the node or the actor died) goes to another evaluator, up to
`workers.max_batch_retries` times (`evaluation_retry` events); Ray restarts a dead one up
to `workers.max_restarts` times (`evaluator_restart`); one gone for good, or whose node
left the cluster, is an `evaluator_lost`. Selected by `workers.distributed_evaluation:
true`; the default runs the sandbox in this process, no Ray needed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from elm.actor_pool import ActorPool, EventKinds, Member, Share
from elm.cluster import join_cluster, leave_cluster
from elm.sandbox import Job, Outcome, SandboxUnavailable, open_sandbox

if TYPE_CHECKING:
    from elm.config import ElmConfig, SandboxConfig

Event = tuple[str, dict[str, Any]]
EVALUATOR_NAME = "node-evaluator-{index}"
EVALUATOR_EVENTS = EventKinds(retry="evaluation_retry", lost="evaluator_lost", restart="evaluator_restart",
                              unit="jobs")
# Closing a pool removes its containers; give it this long before the actor is killed.
_CLOSE_TIMEOUT_S = 60.0
_START_TIMEOUT_S = 300.0


class NodeEvaluator:
    """A Ray actor owning one node's sandbox (created through `ray.remote`)."""

    def __init__(self, settings: SandboxConfig) -> None:
        self.error: str | None = None
        self.sandbox = None
        try:
            self.sandbox = open_sandbox(settings)
        except SandboxUnavailable as error:  # reported by describe(), not a restart loop
            self.error = " ".join(str(error).split())

    def describe(self) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        return {"node": context.get_node_id(), "pid": os.getpid(), "error": self.error}

    def run_many(self, jobs: Sequence[Job]) -> tuple[list[Outcome], list[Event]]:
        """The outcomes of `jobs`, and the events of the node's sandbox since the last call."""
        if self.sandbox is None:
            raise SandboxUnavailable(self.error or "the node's sandbox is not open")
        return self.sandbox.run_many(jobs), self.sandbox.take_events()

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None


class DistributedSandbox:
    """`Sandbox` over one evaluator actor per alive Ray node."""

    def __init__(self, config: ElmConfig) -> None:
        self._closed = False
        self._nodes: list[str] = []  # the node of each evaluator, in pool order
        self._events: list[Event] = []
        self._pool: ActorPool | None = None
        join_cluster(config)
        try:
            self._start(config)
        except BaseException:
            self.close()
            raise

    def run_many(self, jobs: Sequence[Job]) -> list[Outcome]:
        self._forget_dead_nodes()
        jobs = list(jobs)
        shares = self._shares(jobs)
        outcomes: list[Outcome] = []
        for share, (share_outcomes, node_events) in zip(shares, self._live_pool().gather(shares)):
            outcomes += share_outcomes
            self._events += [(kind, {**detail, "node": self._nodes[share.member]}) for kind, detail in node_events]
        if shares:
            by_node = Counter(self._nodes[share.member] for share in shares for _ in range(share.size))
            self._events.append(("evaluations_by_node", dict(by_node)))
        return outcomes

    def take_events(self) -> list[Event]:
        """What happened since the last call, for the run store: each `run_many`'s jobs per
        node (`evaluations_by_node`), the nodes' own sandbox events (with the node), and
        the pool's retries, restarts and losses."""
        self._forget_dead_nodes()
        events, self._events = self._events, []
        return self._live_pool().take_events() + events

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.close(closing=lambda actor: actor.close.remote(), timeout_s=_CLOSE_TIMEOUT_S)
        leave_cluster()

    def _live_pool(self) -> ActorPool:
        if self._pool is None or self._closed:
            raise SandboxUnavailable("the distributed sandbox is closed")
        return self._pool

    def _start(self, config: ElmConfig) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [node for node in ray.nodes() if node["Alive"]]
        if not nodes:
            raise SandboxUnavailable("the Ray cluster has no alive node to evaluate on")
        members = []
        for index, node in enumerate(nodes):
            name = EVALUATOR_NAME.format(index=index)
            address = node.get("NodeManagerAddress", "?")
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            members.append(Member(name, (config.sandbox,), options={"scheduling_strategy": strategy},
                                  tags={"evaluator": name, "node": node["NodeID"], "address": address}))
        self._nodes = [node["NodeID"] for node in nodes]
        pool = ActorPool(NodeEvaluator, members, role="node evaluator", error=SandboxUnavailable,
                         kinds=EVALUATOR_EVENTS, max_restarts=config.workers.max_restarts,
                         max_retries=config.workers.max_batch_retries, start_timeout_s=_START_TIMEOUT_S,
                         share_timeout_s=config.workers.share_timeout_s)
        self._pool = pool
        # num_cpus=0: it waits on its pool; the model workers keep the CPU reservations.
        for member, info in zip(members, pool.start({"num_cpus": 0})):
            if info["error"]:
                raise SandboxUnavailable(f"node {member.tags['address']}: {info['error']}")

    def _forget_dead_nodes(self) -> None:
        """Give up on the evaluators of nodes the cluster reports dead, so no share is sent
        to them (an evaluator that dies on a live node is found when its share fails)."""
        import ray

        pool = self._live_pool()
        alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        for index, node in enumerate(self._nodes):
            if node not in alive:
                pool.lose(index, "the node left the cluster")

    def _shares(self, jobs: list[Job]) -> list[Share]:
        """Contiguous shares of near-equal size, one per evaluator to use, each sent."""
        pool = self._live_pool()
        targets = pool.targets()
        count = min(len(targets), len(jobs))
        shares, start = [], 0
        for position in range(count):
            size = len(jobs) // count + (position < len(jobs) % count)
            share = Share(call=partial(_run_many, jobs[start:start + size]), size=size)
            shares.append(pool.send(share, targets[position]))
            start += size
        return shares


def _run_many(jobs: list[Job], actor: Any) -> Any:
    return actor.run_many.remote(jobs)
