"""The diff model on a pool of Ray actors, one model copy each.

`open_diff_mutator(config)` joins (or starts) the Ray cluster, starts `workers.num_actors`
`DiffWorker` actors with `workers.num_gpus` and `workers.num_cpus` each, and returns a
`RayDiffMutator`. `submit` splits a batch into one part per worker, keeping requests that
share a prompt (same parent and commit message) together so they still share one prefill,
and returns at once; `collect` waits for the parts. Any number of batches may be in flight:
each worker takes its parts in order while the loop evaluates earlier children.

The workers are an `ActorPool` (`elm/actor_pool.py`), which owns what happens when one
fails: a part lost with its worker (killed, crashed, node gone) is sent again to a live
worker, up to `workers.max_batch_retries` times (`batch_retry` events); Ray restarts a
dead worker up to `workers.max_restarts` times (`worker_restart`, after which it swaps in
the latest weights again), and one gone for good is a `worker_lost`. Nothing is dropped:
a part that cannot be generated stops the run with an error, and the run resumes from its
last iteration.

Timings on every child: `generate_s` (its share of the model's sampling time), `worker_s`
(its share of its worker's busy time for the part), `queue_s` (how long its part waited
for the worker) and `collect_wait_s` (how long the loop waited in `collect` for the whole
batch: generation the loop could not hide). `extras["worker"]` names the worker.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from elm.actor_pool import ActorPool, EventKinds, Member, Share
from elm.cluster import check_worker_resources, error_reason, join_cluster, leave_cluster
from elm.errors import UserError
from elm.mutation import Child, MutationRequest

if TYPE_CHECKING:
    from elm.config import ElmConfig, MutationConfig, WorkersConfig

WORKER_NAME = "diff-worker-{index}"
WORKER_EVENTS = EventKinds(retry="batch_retry", lost="worker_lost", restart="worker_restart", unit="requests")
# Loading the 350M model from local disk takes seconds; a worker still not up after this
# is waiting for resources no node has, or is stuck.
_START_TIMEOUT_S = 600.0

Event = tuple[str, dict[str, Any]]


class WorkerError(UserError):
    """The diff workers could not start, or could not generate a batch."""


class WorkerUnusable(WorkerError):
    """A worker restarted without its model: its parts go to another worker."""


class DiffWorker:
    """A Ray actor holding one copy of the diff model (created through `ray.remote`)."""

    def __init__(self, name: str, settings: MutationConfig) -> None:
        from elm.mutation.diff_mutator import DiffMutator
        from elm.mutation.model import DiffModel

        self.name = name
        self.settings = settings
        self.load_error: str | None = None
        self.mutator: DiffMutator | None = None
        self.model_version = 0
        try:
            model = DiffModel.load(settings.model, dtype=settings.dtype, device=settings.device)
            self.mutator = DiffMutator(model, settings)
        except UserError as error:  # reported by describe(): one line, no restart loop
            self.load_error = " ".join(str(error).split())

    def describe(self) -> dict[str, Any]:
        import ray

        device = str(self.mutator.model.device) if self.mutator else None
        return {"name": self.name, "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "device": device, "error": self.load_error}

    def propose(self, requests: Sequence[MutationRequest], submitted_at: float) -> tuple[list[Child], dict[str, Any]]:
        started_at = time.time()
        started = time.perf_counter()
        if self.mutator is None:
            raise WorkerUnusable(f"{self.name} has no model: {self.load_error}")
        children = self.mutator.propose(requests)
        for child in children:
            child.extras["model_version"] = self.model_version
        busy_s = time.perf_counter() - started
        return children, {"queue_s": max(0.0, started_at - submitted_at), "busy_s": busy_s}

    def load_model(self, model: str, version: int) -> str | None:
        """Swap in other weights for the parts that follow; None, or why the old ones stay."""
        from elm.mutation.diff_mutator import DiffMutator
        from elm.mutation.model import DiffModel

        settings = dataclasses.replace(self.settings, model=model)
        try:
            mutator = DiffMutator(DiffModel.load(model, dtype=settings.dtype, device=settings.device), settings)
        except UserError as error:
            return " ".join(str(error).split())
        self.mutator, self.model_version, self.load_error = mutator, version, None
        return None


def open_diff_mutator(config: ElmConfig) -> RayDiffMutator:
    """Start the workers (each loads `config.mutation.model`); ready when this returns."""
    return RayDiffMutator(config)


def split_requests(requests: Sequence[MutationRequest], loads: Sequence[int]) -> list[list[MutationRequest]]:
    """One list of requests per worker: prompt groups kept whole, each group given to the
    worker with the least work (`loads` is each worker's outstanding requests), largest first."""
    groups: dict[tuple[int, str, str], list[MutationRequest]] = {}
    for request in requests:
        groups.setdefault((request.parent_id, request.file_name, request.commit_message), []).append(request)
    totals = list(loads)
    parts: list[list[MutationRequest]] = [[] for _ in loads]
    for group in sorted(groups.values(), key=len, reverse=True):
        slot = min(range(len(totals)), key=lambda index: (totals[index], index))
        parts[slot].extend(group)
        totals[slot] += len(group)
    return parts


class RayDiffMutator:
    """Mutates programs with diff models held by Ray actors; see the module docstring."""

    name = "diff"
    max_in_flight: int | None = None  # batches queue on the actors; workers.in_flight bounds them

    def __init__(self, config: ElmConfig) -> None:
        shape = config.workers  # workers.*: how many, what each reserves, retries
        self._events: list[Event] = []
        self._closed = False
        self._model: tuple[str, int] | None = None  # swapped-in weights: (folder, version)
        self._loading: list[tuple[str, Any, tuple[str, int]]] = []  # (worker, ref, model)
        names = [WORKER_NAME.format(index=index) for index in range(shape.num_actors)]
        settings = _worker_settings(config.mutation, config.workers)
        self._pool = ActorPool(
            DiffWorker, [Member(name, (name, settings), tags={"worker": name}) for name in names], role="diff worker",
            error=WorkerError, kinds=WORKER_EVENTS, max_restarts=shape.max_restarts,
            max_retries=shape.max_batch_retries, start_timeout_s=_START_TIMEOUT_S,
            share_timeout_s=shape.share_timeout_s, unusable=(WorkerUnusable,), on_restart=self._reload,
        )
        join_cluster(config)
        try:
            check_worker_resources(config.workers)
            self._start_workers(shape)
        except BaseException:
            self.close()
            raise

    # -- the Mutator protocol -------------------------------------------------------------

    def submit(self, requests: Sequence[MutationRequest]) -> list[Share]:
        """One share of the pool per worker given requests (a part of the batch)."""
        self._pool.check_health()
        targets = self._pool.targets()
        parts = []
        for index, part in zip(targets, split_requests(requests, self._pool.loads(targets))):
            if part:
                parts.append(self._pool.send(Share(call=partial(_propose, part), size=len(part)), index))
        return parts

    def collect(self, ticket: list[Share]) -> list[Child]:
        started = time.perf_counter()
        results = self._pool.gather(ticket)
        children = [child for share, (part_children, stats) in zip(ticket, results)
                    for child in _annotated(part_children, stats, self._pool.name(share.member), share)]
        waited = time.perf_counter() - started
        for child in children:
            child.timings["collect_wait_s"] = waited
        self._pool.check_health()
        return children

    def take_events(self) -> list[Event]:
        pool_events = self._pool.take_events()
        self._check_loads()
        events, self._events = self._events, []
        return pool_events + events

    def load_model(self, model: str, version: int) -> None:
        """Every worker swaps to the weights in `model` after the parts already sent to it;
        the children it writes from then on carry `version`. Returns at once; a worker
        that cannot load them keeps its weights, and says so in a `model_load_failed` event."""
        self._model = (model, version)
        for index, actor in self._pool.actors():
            self._loading.append((self._pool.name(index), actor.load_model.remote(model, version), self._model))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.close()
        leave_cluster()

    @property
    def workers(self) -> int:
        """Workers not known to be gone."""
        return len(self._pool.actors())

    # -- workers ----------------------------------------------------------------------------

    def _start_workers(self, shape: WorkersConfig) -> None:
        infos = self._pool.start({"num_gpus": shape.num_gpus, "num_cpus": shape.num_cpus})
        for name, info in zip(self._pool.names(), infos):
            if info["error"]:
                raise WorkerError(f"{name} could not load the diff model: {info['error']}")

    def _reload(self, index: int) -> None:
        """Ray restarts a worker with the weights it started with: swap the latest in again."""
        if self._model is not None:
            actor = self._pool.actor(index)
            self._loading.append((self._pool.name(index), actor.load_model.remote(*self._model), self._model))

    def _check_loads(self) -> None:
        import ray
        from ray.exceptions import RayActorError

        if not self._loading:
            return
        ready, _ = ray.wait([ref for _, ref, _ in self._loading], num_returns=len(self._loading), timeout=0)
        for entry in [entry for entry in self._loading if entry[1] in ready]:
            self._loading.remove(entry)
            worker, ref, (model, version) = entry
            try:
                problem = ray.get(ref)
            except RayActorError as error:  # its restart reloads the model (see _reload)
                problem = error_reason(error)
            if problem:
                self._events.append(("model_load_failed", {"worker": worker, "version": version,
                                                           "model": model, "reason": problem}))


def _propose(requests: list[MutationRequest], actor: Any) -> Any:
    """A part's call on a worker, stamped when it is sent (again)."""
    return actor.propose.remote(requests, time.time())


def _worker_settings(settings: MutationConfig, workers: WorkersConfig) -> MutationConfig:
    """The mutation settings a worker loads with: a worker that reserves no GPU runs on CPU
    (Ray leaves every GPU visible to it, so `auto` would take one unreserved)."""
    if workers.num_gpus > 0:
        return settings
    if settings.device.startswith("cuda"):
        raise WorkerError(
            f"mutation.device={settings.device} but workers.num_gpus=0; reserve a GPU per worker "
            "with workers.num_gpus (e.g. 1, or 0.5 to share one) or use mutation.device=cpu"
        )
    return dataclasses.replace(settings, device="cpu")


def _annotated(children: list[Child], stats: dict[str, Any], worker: str, share: Share) -> list[Child]:
    busy_share = stats["busy_s"] / max(len(children), 1)
    for child in children:
        child.timings["worker_s"] = busy_share
        child.timings["queue_s"] = stats["queue_s"]
        child.extras["worker"] = worker
        if share.attempts > 1:
            child.extras["worker_attempts"] = share.attempts
    return children
