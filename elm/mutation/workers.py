"""The diff model on a pool of Ray actors, one model copy each.

`open_diff_mutator(config)` joins (or starts) the Ray cluster, starts `workers.num_actors`
`DiffWorker` actors with `workers.num_gpus` and `workers.num_cpus` each, and returns a
`RayDiffMutator`. `submit` splits a batch into one part per worker, keeping requests that
share a prompt (same parent and commit message) together so they still share one prefill,
and returns at once; `collect` waits for the parts. Any number of batches may be in flight:
each worker takes its parts in order while the loop evaluates earlier children.

A part lost with its worker (killed, crashed, node gone) is sent again to a live worker,
up to `workers.max_batch_retries` times, and every retry is an event; Ray restarts a dead
worker up to `workers.max_restarts` times. Nothing is dropped: a part that cannot be
generated stops the run with an error, and the run resumes from its last iteration.

Timings on every child: `generate_s` (its share of the model's sampling time), `worker_s`
(its share of its worker's busy time for the part), `queue_s` (how long its part waited
for the worker) and `collect_wait_s` (how long the loop waited in `collect` for the whole
batch: generation the loop could not hide). `extras["worker"]` names the worker.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from elm.cluster import check_worker_resources, error_reason, join_cluster, leave_cluster
from elm.errors import UserError
from elm.mutation import Child, MutationRequest

if TYPE_CHECKING:
    from elm.config import ElmConfig, MutationConfig, WorkersConfig

WORKER_NAME = "diff-worker-{index}"
# Ray's name for a worker actor: unique per pool, so pools in one cluster never collide.
ACTOR_NAME = "elm-{pool}-{worker}"
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


@dataclass
class _Part:
    """Some requests of a batch, on one worker."""

    requests: list[MutationRequest]
    slot: int = -1
    ref: Any = None
    submitted_at: float = 0.0
    attempts: int = 0


@dataclass
class _Batch:
    parts: list[_Part] = field(default_factory=list)


@dataclass
class _Slot:
    """One worker and what the mutator knows of it."""

    name: str
    actor: Any
    pid: int
    outstanding: int = 0
    ping: Any = None  # a describe() call in flight after a failure
    lost: bool = False


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
        self._shape = config.workers  # workers.*: how many, what each reserves, retries
        self.retries = 0
        self._events: list[Event] = []
        self._slots: list[_Slot] = []
        self._closed = False
        self._model: tuple[str, int] | None = None  # swapped-in weights: (folder, version)
        self._loading: list[tuple[str, Any, tuple[str, int]]] = []  # (worker, ref, model)
        settings = _worker_settings(config.mutation, config.workers)
        join_cluster(config)
        try:
            check_worker_resources(config.workers)
            self._start_workers(settings)
        except BaseException:
            self.close()
            raise

    # -- the Mutator protocol -------------------------------------------------------------

    def submit(self, requests: Sequence[MutationRequest]) -> _Batch:
        self._check_pings()
        live = self._usable_slots()
        loads = [self._slots[index].outstanding for index in live]
        batch = _Batch()
        for index, part_requests in zip(live, split_requests(requests, loads)):
            if part_requests:
                part = _Part(part_requests)
                self._launch(part, index)
                batch.parts.append(part)
        return batch

    def collect(self, ticket: _Batch) -> list[Child]:
        started = time.perf_counter()
        results = self._wait_for_parts(ticket.parts)
        children = [child for part in ticket.parts for child in results[id(part)]]
        waited = time.perf_counter() - started
        for child in children:
            child.timings["collect_wait_s"] = waited
        self._check_pings()
        return children

    def take_events(self) -> list[Event]:
        self._check_pings()
        self._check_loads()
        events, self._events = self._events, []
        return events

    def load_model(self, model: str, version: int) -> None:
        """Every worker swaps to the weights in `model` after the parts already sent to it;
        the children it writes from then on carry `version`. Returns at once; a worker
        that cannot load them keeps its weights, and says so in a `model_load_failed` event."""
        self._model = (model, version)
        for slot in self._slots:
            if not slot.lost:
                self._loading.append((slot.name, slot.actor.load_model.remote(model, version), self._model))

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
            except RayActorError as error:  # its restart reloads the model (see _check_pings)
                problem = error_reason(error)
            if problem:
                self._events.append(("model_load_failed", {"worker": worker, "version": version,
                                                           "model": model, "reason": problem}))

    def close(self) -> None:
        import ray

        if self._closed:
            return
        self._closed = True
        if ray.is_initialized():
            for slot in self._slots:
                ray.kill(slot.actor, no_restart=True)
        self._slots = []
        leave_cluster()

    @property
    def workers(self) -> int:
        """Workers not known to be gone."""
        return sum(not slot.lost for slot in self._slots)

    # -- starting ---------------------------------------------------------------------------

    def _start_workers(self, settings: MutationConfig) -> None:
        import ray

        options = {
            "num_gpus": self._shape.num_gpus,
            "num_cpus": self._shape.num_cpus,
            "max_restarts": self._shape.max_restarts,
            "max_task_retries": 0,  # retries are the mutator's, so each one is counted
        }
        remote = ray.remote(DiffWorker)
        pool = uuid.uuid4().hex[:8]
        names = [WORKER_NAME.format(index=index) for index in range(self._shape.num_actors)]
        actors = [remote.options(name=ACTOR_NAME.format(pool=pool, worker=name), **options).remote(name, settings)
                  for name in names]
        self._slots = [_Slot(name, actor, pid=0) for name, actor in zip(names, actors)]
        for slot, info in zip(self._slots, self._describe_all(actors)):
            if info["error"]:
                raise WorkerError(f"{slot.name} could not load the diff model: {info['error']}")
            slot.pid = info["pid"]

    def _describe_all(self, actors: list[Any]) -> list[dict[str, Any]]:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            return ray.get([actor.describe.remote() for actor in actors], timeout=_START_TIMEOUT_S)
        except GetTimeoutError:
            raise WorkerError(
                f"the diff workers did not start within {_START_TIMEOUT_S:.0f} s; "
                "`ray status` shows what the cluster can place"
            ) from None
        except RayActorError as error:
            raise WorkerError(f"a diff worker failed to start: {error_reason(error)}") from None

    # -- parts ------------------------------------------------------------------------------

    def _launch(self, part: _Part, index: int) -> None:
        slot = self._slots[index]
        part.slot = index
        part.attempts += 1
        part.submitted_at = time.time()
        part.ref = slot.actor.propose.remote(part.requests, part.submitted_at)
        slot.outstanding += len(part.requests)

    def _wait_for_parts(self, parts: list[_Part]) -> dict[int, list[Child]]:
        """Children of every part, by id(part); a part that fails is sent again at once,
        while the others keep running."""
        import ray
        from ray.exceptions import ObjectLostError, RayActorError

        results: dict[int, list[Child]] = {}
        waiting = list(parts)
        while waiting:
            ready, _ = ray.wait([part.ref for part in waiting], num_returns=1)
            part = next(part for part in waiting if part.ref == ready[0])
            slot = self._slots[part.slot]
            slot.outstanding -= len(part.requests)
            try:
                children, stats = ray.get(part.ref)
            except (RayActorError, ObjectLostError, WorkerUnusable) as error:
                self._retry(part, error)
                continue
            results[id(part)] = _annotated(children, stats, slot.name, part)
            waiting.remove(part)
        return results

    def _retry(self, part: _Part, error: Exception) -> None:
        failed = self._slots[part.slot]
        self._suspect(part.slot)
        if part.attempts > self._shape.max_batch_retries:
            raise WorkerError(
                f"{len(part.requests)} mutation requests failed on {part.attempts} attempts "
                f"(workers.max_batch_retries={self._shape.max_batch_retries}); last: {error_reason(error)}; "
                "the run can be continued with elm resume"
            )
        index = self._retry_slot(avoid=part.slot)
        self.retries += 1
        self._events.append(("batch_retry", {
            "worker": failed.name, "retry_on": self._slots[index].name, "requests": len(part.requests),
            "attempt": part.attempts + 1, "error": type(error).__name__, "reason": error_reason(error),
        }))
        self._launch(part, index)

    def _usable_slots(self) -> list[int]:
        """Workers not known to have failed; else those that may still come back."""
        healthy = [i for i, slot in enumerate(self._slots) if not slot.lost and slot.ping is None]
        if healthy:
            return healthy
        recovering = [i for i, slot in enumerate(self._slots) if not slot.lost]
        if not recovering:
            raise WorkerError(
                f"all {len(self._slots)} diff workers are gone (workers.max_restarts={self._shape.max_restarts}); "
                "the run can be continued with elm resume"
            )
        return recovering

    def _retry_slot(self, avoid: int) -> int:
        usable = self._usable_slots()
        others = [index for index in usable if index != avoid] or usable
        return min(others, key=lambda index: (self._slots[index].outstanding, index))

    # -- worker health ----------------------------------------------------------------------

    def _suspect(self, index: int) -> None:
        """Ask a worker that failed a part who it is now: a new process means Ray restarted
        it, an error that it is gone for good. Its answer is read without waiting."""
        slot = self._slots[index]
        if slot.ping is None and not slot.lost:
            slot.ping = slot.actor.describe.remote()

    def _check_pings(self) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        pinged = [slot for slot in self._slots if slot.ping is not None]
        if not pinged:
            return
        ready, _ = ray.wait([slot.ping for slot in pinged], num_returns=len(pinged), timeout=0)
        for slot in [slot for slot in pinged if slot.ping in ready]:
            try:
                info = ray.get(slot.ping)
            except ActorUnavailableError:  # still restarting: ask again later
                slot.ping = slot.actor.describe.remote()
                continue
            except RayActorError as error:
                slot.ping, slot.lost = None, True
                self._events.append(("worker_lost", {"worker": slot.name, "reason": error_reason(error)}))
                continue
            slot.ping = None
            if info["error"]:
                slot.lost = True
                self._events.append(("worker_lost", {"worker": slot.name, "reason": info["error"]}))
            elif info["pid"] != slot.pid:
                self._events.append(("worker_restart", {"worker": slot.name, "pid_before": slot.pid,
                                                         "pid_after": info["pid"], "node": info["node"]}))
                slot.pid = info["pid"]
                if self._model is not None:  # Ray restarts it with the weights it started with
                    self._loading.append((slot.name, slot.actor.load_model.remote(*self._model), self._model))


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


def _annotated(children: list[Child], stats: dict[str, Any], worker: str, part: _Part) -> list[Child]:
    share = stats["busy_s"] / max(len(children), 1)
    for child in children:
        child.timings["worker_s"] = share
        child.timings["queue_s"] = stats["queue_s"]
        child.extras["worker"] = worker
        if part.attempts > 1:
            child.extras["worker_attempts"] = part.attempts
    return children
