"""Evaluation spread over a Ray cluster: one evaluator per node, each with its own pool.

`DistributedSandbox(config)` joins the cluster (`ray.address`, or a local Ray) and pins one
`NodeEvaluator` actor to every alive node. Each evaluator opens the configured backend
(`open_sandbox(config.sandbox)`) on its own node, so each node runs candidates in its own
warm Docker pool (or local runners). `run_many` splits the jobs into one contiguous share
per node and puts the outcomes back in job order.

A share lost with its evaluator (the node or the actor died) goes to another evaluator,
up to `workers.max_batch_retries` times; `retries` counts them. Selected by
`workers.distributed_evaluation: true`; the default runs the sandbox in this process, no
Ray needed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from elm.cluster import error_reason, join_cluster, leave_cluster
from elm.sandbox import Job, Outcome, SandboxUnavailable, open_sandbox

if TYPE_CHECKING:
    from elm.config import ElmConfig, SandboxConfig

# Closing a pool removes its containers; give it this long before the actor is killed.
_CLOSE_TIMEOUT_S = 60.0
_START_TIMEOUT_S = 300.0
_RESTART_POLL_S = 0.2


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
        return {"node": context.get_node_id(), "error": self.error}

    def run_many(self, jobs: Sequence[Job]) -> list[Outcome]:
        if self.sandbox is None:
            raise SandboxUnavailable(self.error or "the node's sandbox is not open")
        return self.sandbox.run_many(jobs)

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None


@dataclass
class _Evaluator:
    node: str
    address: str
    actor: Any
    lost: bool = False


@dataclass
class _Share:
    start: int
    jobs: list[Job]
    evaluator: int = -1
    ref: Any = None
    attempts: int = 0


class DistributedSandbox:
    """`Sandbox` over one evaluator actor per alive Ray node."""

    def __init__(self, config: ElmConfig) -> None:
        self.max_retries = config.workers.max_batch_retries
        self.retries = 0
        self._evaluators: list[_Evaluator] = []
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._closed = False
        join_cluster(config)
        try:
            self._start(config)
        except BaseException:
            self.close()
            raise

    @property
    def nodes(self) -> list[str]:
        """Node ids, one per evaluator."""
        return [evaluator.node for evaluator in self._evaluators]

    def run_many(self, jobs: Sequence[Job]) -> list[Outcome]:
        import ray
        from ray.exceptions import ObjectLostError, RayActorError

        self._forget_dead_nodes()
        shares = self._shares(list(jobs))
        outcomes: list[Outcome] = [None] * len(jobs)  # type: ignore[list-item]
        for share in shares:
            while True:
                try:
                    results = ray.get(share.ref)
                    break
                except (RayActorError, ObjectLostError) as error:
                    self._retry(share, error)
            outcomes[share.start:share.start + len(share.jobs)] = results
        if shares:
            by_node = Counter(self._evaluators[share.evaluator].node for share in shares
                              for _ in share.jobs)
            self._events.append(("evaluations_by_node", dict(by_node)))
        return outcomes

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        """What happened since the last call, for the run store: each `run_many`'s jobs per
        node (`evaluations_by_node`) and each evaluator lost (`evaluator_lost`)."""
        events, self._events = self._events, []
        return events

    def close(self) -> None:
        import ray

        if self._closed:
            return
        self._closed = True
        if ray.is_initialized() and self._evaluators:
            closing = [e.actor.close.remote() for e in self._evaluators if not e.lost]
            if closing:
                ray.wait(closing, num_returns=len(closing), timeout=_CLOSE_TIMEOUT_S)
            for evaluator in self._evaluators:
                ray.kill(evaluator.actor, no_restart=True)
        self._evaluators = []
        leave_cluster()

    def _start(self, config: ElmConfig) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = ray.remote(NodeEvaluator)
        for node in [node for node in ray.nodes() if node["Alive"]]:
            actor = remote.options(
                num_cpus=0,  # it waits on its pool; the model workers keep the CPU reservations
                max_restarts=config.workers.max_restarts,
                max_task_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(config.sandbox)
            self._evaluators.append(_Evaluator(node["NodeID"], node.get("NodeManagerAddress", "?"), actor))
        if not self._evaluators:
            raise SandboxUnavailable("the Ray cluster has no alive node to evaluate on")
        self._check_started()

    def _check_started(self) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            infos = ray.get([e.actor.describe.remote() for e in self._evaluators], timeout=_START_TIMEOUT_S)
        except GetTimeoutError:
            raise SandboxUnavailable(f"the node evaluators did not start within {_START_TIMEOUT_S:.0f} s") from None
        except RayActorError as error:
            raise SandboxUnavailable(f"a node evaluator failed to start: {error_reason(error)}") from None
        for evaluator, info in zip(self._evaluators, infos):
            if info["error"]:
                raise SandboxUnavailable(f"node {evaluator.address}: {info['error']}")

    def _forget_dead_nodes(self) -> None:
        """Mark the evaluators of nodes the cluster reports dead as lost, so no share is
        sent to them (an evaluator that dies on a live node is found when its share fails)."""
        import ray

        alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        for evaluator in self._evaluators:
            if not evaluator.lost and evaluator.node not in alive:
                evaluator.lost = True
                self._events.append(("evaluator_lost", {"node": evaluator.node, "address": evaluator.address,
                                                        "reason": "the node left the cluster"}))

    def _shares(self, jobs: list[Job]) -> list[_Share]:
        """Contiguous shares of near-equal size, one per live evaluator, each started."""
        live = self._live()
        count = min(len(live), len(jobs))
        shares, start = [], 0
        for position in range(count):
            size = len(jobs) // count + (position < len(jobs) % count)
            share = _Share(start, jobs[start:start + size])
            self._launch(share, live[position])
            shares.append(share)
            start += size
        return shares

    def _launch(self, share: _Share, index: int) -> None:
        share.evaluator = index
        share.attempts += 1
        share.ref = self._evaluators[index].actor.run_many.remote(share.jobs)

    def _retry(self, share: _Share, error: Exception) -> None:
        failed = self._evaluators[share.evaluator]
        if not failed.lost and not _comes_back(failed.actor):
            failed.lost = True
            self._events.append(("evaluator_lost", {"node": failed.node, "address": failed.address,
                                                    "reason": error_reason(error)}))
        if share.attempts > self.max_retries:
            raise SandboxUnavailable(
                f"{len(share.jobs)} evaluations failed on {share.attempts} attempts "
                f"(workers.max_batch_retries={self.max_retries}); last: {error_reason(error)}"
            )
        live = self._live()
        others = [index for index in live if index != share.evaluator] or live
        self.retries += 1
        self._launch(share, others[self.retries % len(others)])

    def _live(self) -> list[int]:
        live = [index for index, evaluator in enumerate(self._evaluators) if not evaluator.lost]
        if not live:
            raise SandboxUnavailable("every node evaluator is gone; the run can be continued with elm resume")
        return live


def _comes_back(actor: Any) -> bool:
    """Whether an evaluator that failed a share answers again (Ray restarted it)."""
    import time

    import ray
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            info = ray.get(actor.describe.remote(), timeout=max(deadline - time.monotonic(), 0.0))
        except ActorUnavailableError:  # between death and restart
            time.sleep(_RESTART_POLL_S)
            continue
        except (RayActorError, GetTimeoutError):
            return False
        return info["error"] is None
    return False
