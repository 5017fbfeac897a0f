"""A pool of warm runners that serves jobs concurrently, whatever the backend.

Each slot of the pool holds one started runner (`sandbox/runner/` in a container or in
a local process) behind a `RunnerChannel`. `run_many` hands jobs to the slots from one
queue and puts outcomes back in job order. What goes wrong around a candidate is settled
here, the same way for every backend:

- the runner gives no answer in time (wedged): the candidate gets `timeout`, the runner
  is replaced;
- the runner dies mid-job: it is replaced; killed for memory, the job gets `memory`;
  otherwise the job is tried once more, since runners die for reasons that are not the
  candidate's (a daemon restart), and a second death reports it as `killed`;
- the runner's output holds a line that is not its answer to this job with this job's
  token (a candidate that reached the stream forged or garbled it): the job gets
  `violation`, the runner is replaced;
- the backend itself is lost (the Docker daemon is gone): the pool waits up to
  `reconnect_s` for it, then starts fresh runners and carries on, or raises
  `SandboxUnavailable` so the caller can stop cleanly.

Every replaced runner is counted by its cause; `take_events` hands the counts to the run
store as one `runners_replaced` event per iteration that replaced any (`count`, `causes`:
count per cause, `last`: the last one's reason).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from elm.records import Status
from elm.sandbox import Job, Outcome, SandboxUnavailable
from elm.sandbox.protocol import (
    ProtocolError,
    check_job,
    decode_answer,
    encode_job,
    max_answer_bytes,
    new_token,
    violation,
)

if TYPE_CHECKING:
    from elm.config import SandboxConfig

ANSWER_GRACE_S = 10.0  # beyond the job's timeout: the runner's own cleanup and the transport
SEND_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 2
RECONNECT_POLL_S = 0.5
RUNNERS_REPLACED = "runners_replaced"


class RunnerLost(Exception):
    """The runner's stream ended: the runner (or its container) is gone."""


class RunnerWedged(Exception):
    """The runner did not answer in time."""


class BackendLost(Exception):
    """The backend itself (the Docker daemon) cannot be reached."""


@dataclass(frozen=True)
class RunnerDeath:
    """Why a runner died, as far as the backend can tell."""

    description: str
    out_of_memory: bool = False


class RunnerChannel(Protocol):
    """One started runner: send a request line, receive an answer line."""

    def alive(self) -> bool:
        """False if the runner is already known to be gone (checked without waiting)."""
        ...

    def send(self, data: bytes, timeout: float) -> None: ...

    def receive_line(self, timeout: float, limit: int) -> bytes:
        """The next line; RunnerLost at end of stream, RunnerWedged after `timeout`,
        ProtocolError for a line longer than `limit`."""
        ...

    def death(self) -> RunnerDeath:
        """After RunnerLost: why it died. Raises BackendLost if the backend is gone."""
        ...

    def close(self) -> None:
        """Stop and remove the runner; never raises."""
        ...


class RunnerLauncher(Protocol):
    """Starts runners for one backend."""

    def launch(self) -> RunnerChannel:
        """A started runner that has greeted; BackendLost if the backend is unreachable,
        SandboxUnavailable if it is reachable but cannot run the runner."""
        ...

    def reachable(self) -> bool: ...

    def unavailable_message(self, waited_s: float) -> str: ...

    def after_reconnect(self) -> None:
        """Clean up what the lost backend left behind."""
        ...

    def close(self) -> None: ...


class RunnerPool:
    """Warm runners serving `run_many` concurrently; outcomes in the order of the jobs."""

    def __init__(self, launcher: RunnerLauncher, config: SandboxConfig, reconnect_s: float) -> None:
        self.config = config
        self.reconnect_s = reconnect_s
        self._launcher = launcher
        self._slots = [_Slot(index) for index in range(config.pool_size)]
        self._job_ids = itertools.count(1)
        self._epoch = 0  # bumped whenever the backend came back: older runners are gone
        self._backend_lock = threading.Lock()
        self._answer_limit = max_answer_bytes(config)
        self._replaced: Counter[str] = Counter()  # since the last take_events, by cause
        self._last_replaced = ""
        self._replaced_lock = threading.Lock()

    def warm_up(self) -> None:
        """Start every slot's runner (in parallel); SandboxUnavailable if one cannot start."""
        problems: list[BaseException] = []

        def start(slot: _Slot) -> None:
            try:
                self._launch(slot)
            except BackendLost:
                problems.append(SandboxUnavailable(self._launcher.unavailable_message(0.0)))
            except BaseException as problem:  # reported in the caller's thread below
                problems.append(problem)

        _run_in_threads(start, [slot for slot in self._slots if slot.channel is None])
        if problems:
            self.close()
            raise problems[0]

    def run_many(self, jobs: Sequence[Job]) -> list[Outcome]:
        jobs = list(jobs)
        for job in jobs:
            check_job(job)
        run = _Run(jobs)
        _run_in_threads(lambda slot: self._serve(slot, run), self._slots[: len(jobs)])
        if run.failure is not None:
            raise run.failure
        return run.outcomes  # type: ignore[return-value]

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        """The runners replaced since the last call, as one `runners_replaced` event (none
        if no runner was replaced)."""
        with self._replaced_lock:
            replaced, self._replaced = self._replaced, Counter()
            last = self._last_replaced
        if not replaced:
            return []
        return [(RUNNERS_REPLACED, {"count": replaced.total(), "causes": dict(replaced), "last": last})]

    def close(self) -> None:
        for slot in self._slots:
            slot.discard()
        self._launcher.close()

    def _serve(self, slot: _Slot, run: _Run) -> None:
        try:
            while (item := run.take()) is not None:
                index, attempts = item
                outcome = self._try(slot, run, index, attempts)
                if outcome is not None:
                    run.finish(index, outcome)
        except BaseException as problem:
            run.fail(problem)

    def _try(self, slot: _Slot, run: _Run, index: int, attempts: int) -> Outcome | None:
        """One attempt at one job; None when the job went back on the queue."""
        try:
            return self._attempt(slot, run.jobs[index])
        except BackendLost as problem:
            self._replace(slot, "backend_lost", str(problem))
            self._await_backend(run)
            run.put_back(index, attempts)  # the backend's fault, not the candidate's
        except _LostRunner as lost:
            if attempts + 1 < MAX_ATTEMPTS:
                run.put_back(index, attempts + 1)
            else:
                error = f"the sandbox runner died running this candidate, twice: {lost.death.description}"
                return Outcome("killed", lost.seconds, error=error)
        return None

    def _attempt(self, slot: _Slot, job: Job) -> Outcome:
        channel = self._ready_channel(slot)
        job_id, token = next(self._job_ids), new_token()
        request = encode_job(job, job_id, token, self.config)
        started = time.monotonic()
        try:
            channel.send(request, SEND_TIMEOUT_S)
            line = channel.receive_line(job.timeout_s + ANSWER_GRACE_S, self._answer_limit)
        except RunnerWedged:
            self._replace(slot, "no_answer", "no answer in time")
            waited = time.monotonic() - started
            error = f"the sandbox runner gave no answer within {waited:.1f} s and was replaced"
            return Outcome("timeout", waited, error=error)
        except ProtocolError as problem:  # longer than any answer: not the runner's
            self._replace(slot, "out_of_protocol", str(problem))
            return violation(f"{problem} on the runner's output", time.monotonic() - started).outcome
        except RunnerLost:
            seconds = time.monotonic() - started
            death = channel.death()
            self._replace(slot, "died", death.description)
            if death.out_of_memory:
                error = f"the sandbox ran out of memory and its runner was killed ({death.description}); replaced"
                return Outcome("memory", seconds, error=error)
            raise _LostRunner(death, seconds) from None
        answer = decode_answer(line, job_id, token)
        if answer.outcome.status == Status.VIOLATION:
            answer.outcome.seconds = round(time.monotonic() - started, 6)
        if answer.retire:
            self._replace(slot, "retired", f"a {answer.outcome.status} answer: {answer.outcome.error}")
        return answer.outcome

    def _ready_channel(self, slot: _Slot) -> RunnerChannel:
        if slot.channel is not None and (slot.epoch != self._epoch or not slot.channel.alive()):
            self._replace(slot, "gone_while_idle", "gone while idle")
        if slot.channel is None:
            return self._launch(slot)
        return slot.channel

    def _replace(self, slot: _Slot, cause: str, reason: str) -> None:
        slot.discard()
        with self._replaced_lock:
            self._replaced[cause] += 1
            self._last_replaced = f"runner {slot.index}, {cause}: {reason}"[:300]

    def _launch(self, slot: _Slot) -> RunnerChannel:
        epoch = self._epoch
        slot.channel = self._launcher.launch()
        slot.epoch = epoch
        return slot.channel

    def _await_backend(self, run: _Run) -> None:
        """Wait for the backend to come back, or raise SandboxUnavailable."""
        with self._backend_lock:
            if run.failure is not None:
                raise run.failure
            if self._launcher.reachable():
                return
            deadline = time.monotonic() + self.reconnect_s
            while time.monotonic() < deadline:
                time.sleep(RECONNECT_POLL_S)
                if self._launcher.reachable():
                    self._epoch += 1
                    self._launcher.after_reconnect()
                    return
            raise SandboxUnavailable(self._launcher.unavailable_message(self.reconnect_s))


class _LostRunner(Exception):
    def __init__(self, death: RunnerDeath, seconds: float) -> None:
        super().__init__(death.description)
        self.death = death
        self.seconds = seconds


class _Slot:
    def __init__(self, index: int) -> None:
        self.index = index
        self.channel: RunnerChannel | None = None
        self.epoch = 0

    def discard(self) -> None:
        if self.channel is not None:
            channel, self.channel = self.channel, None
            channel.close()


class _Run:
    """The jobs of one `run_many` call: a shared queue, the outcomes, the first failure."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.outcomes: list[Outcome | None] = [None] * len(jobs)
        self.failure: BaseException | None = None
        self._queue: deque[tuple[int, int]] = deque((index, 0) for index in range(len(jobs)))
        self._lock = threading.Lock()

    def take(self) -> tuple[int, int] | None:
        with self._lock:
            if self.failure is not None or not self._queue:
                return None
            return self._queue.popleft()

    def put_back(self, index: int, attempts: int) -> None:
        with self._lock:
            self._queue.appendleft((index, attempts))

    def finish(self, index: int, outcome: Outcome) -> None:
        self.outcomes[index] = outcome

    def fail(self, problem: BaseException) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = problem


def _run_in_threads(work: Callable[[_Slot], None], slots: Sequence[_Slot]) -> None:
    if len(slots) == 1:
        work(slots[0])
        return
    threads = [threading.Thread(target=work, args=(slot,), daemon=True) for slot in slots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class PooledSandbox:
    """The `Sandbox` methods every backend shares: each delegates to its `RunnerPool`."""

    _pool: RunnerPool

    def run_many(self, jobs: Sequence[Job]) -> list[Outcome]:
        return self._pool.run_many(jobs)

    def warm_up(self) -> None:
        """Start now the runners that replaced ones would otherwise start on first use."""
        self._pool.warm_up()

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        return self._pool.take_events()

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PooledSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
