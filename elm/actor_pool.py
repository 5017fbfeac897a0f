"""A pool of Ray actors of one class, and the one policy for their failures.

The diff workers (`elm/mutation/workers.py`) and the node evaluators
(`elm/sandbox/distributed.py`) are each an `ActorPool`:

- `start` creates one named actor per `Member` (Ray restarts a dead one up to
  `max_restarts` times; Ray itself retries no call, so every retry is the pool's and is
  counted) and asks each to `describe()` itself within `start_timeout_s`.
- `send` runs a `Share` of work on a member: a call the pool can make again on another
  actor. `gather` returns the results of shares in their order.
- A share lost with its actor (killed, crashed, node gone, or an answer of one of the
  `unusable` errors) is sent to another healthy member, up to `max_retries` times, each
  time a `retry` event; after that, or once every member is gone, the pool's error.
- A member that failed a share is asked `describe()` without waiting for the answer: a
  new process means Ray restarted it (a `restart` event, then `on_restart`), an error that
  it is gone for good (a `lost` event), and it never gets work again.
- Nothing blocks for long: results and answers are polled in slices of `POLL_S` with the
  members' health read between, and a share that waits for a member to come back gives up
  after `start_timeout_s`. A member that holds a share longer than `share_timeout_s` is
  stuck: it is killed (Ray restarts it if it may) and the share is lost with it.

`EventKinds` names the events, so each user keeps the words the store already holds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from elm.cluster import error_reason

# Ray's name for an actor: unique per pool, so pools in one cluster never collide.
ACTOR_NAME = "elm-{pool}-{member}"
POLL_S = 1.0

Event = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class EventKinds:
    """What the pool's events are called, and how they count the work of a share."""

    retry: str
    lost: str
    restart: str
    unit: str  # the detail key of a retried share's size, and its noun in messages


@dataclass(frozen=True)
class Member:
    """One actor to start: its name, its constructor's arguments, the Ray options of its
    own, what each event about it carries."""

    name: str
    args: tuple[Any, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass
class Share:
    """Work for one member: `call(actor)` starts it and returns Ray's reference."""

    call: Callable[[Any], Any]
    size: int
    member: int = -1
    ref: Any = None
    attempts: int = 0
    parked_at: float | None = None  # waiting for a healthy member since then
    started_at: float = 0.0
    overdue: bool = False  # its member was killed for holding it too long
    last_error: BaseException | None = None


@dataclass
class _State:
    member: Member
    actor: Any = None
    pid: int = 0
    outstanding: int = 0
    ping: Any = None  # a describe() call in flight after a failure
    lost: bool = False


class ActorPool:
    """Actors of one class and their work; see the module docstring."""

    def __init__(self, actor_class: type, members: Sequence[Member], *, role: str, error: type[Exception],
                 kinds: EventKinds, max_restarts: int, max_retries: int, start_timeout_s: float,
                 share_timeout_s: float | None = None, unusable: tuple[type[BaseException], ...] = (),
                 on_restart: Callable[[int], None] | None = None) -> None:
        self.role = role  # "diff worker": how messages name a member
        self._actor_class = actor_class
        self._states = [_State(member) for member in members]
        self._error = error
        self._kinds = kinds
        self._max_restarts = max_restarts
        self._max_retries = max_retries
        self._start_timeout_s = start_timeout_s
        self._share_timeout_s = share_timeout_s
        self._unusable = unusable
        self._on_restart = on_restart
        self._events: list[Event] = []

    # -- members ------------------------------------------------------------------------------

    def start(self, options: dict[str, Any]) -> list[dict[str, Any]]:
        """Create every member (`actor_class(*member.args)`) with the Ray `options` they
        share; each one's `describe()` once all have answered, in member order."""
        import ray

        remote = ray.remote(self._actor_class)
        pool = uuid.uuid4().hex[:8]
        for state in self._states:
            state.actor = remote.options(
                name=ACTOR_NAME.format(pool=pool, member=state.member.name),
                max_restarts=self._max_restarts, max_task_retries=0, **options, **state.member.options,
            ).remote(*state.member.args)
        infos = self._describe_all()
        for state, info in zip(self._states, infos):
            state.pid = info["pid"]
        return infos

    def name(self, index: int) -> str:
        return self._states[index].member.name

    def names(self) -> list[str]:
        return [state.member.name for state in self._states]

    def actor(self, index: int) -> Any:
        return self._states[index].actor

    def actors(self) -> list[tuple[int, Any]]:
        """(index, actor) of every member not known to be gone."""
        return [(index, state.actor) for index, state in enumerate(self._states) if not state.lost]

    def targets(self) -> list[int]:
        """Members to give new work: the healthy ones, else those that may still come back."""
        healthy = self._healthy()
        if healthy:
            return healthy
        recovering = [index for index, state in enumerate(self._states) if not state.lost]
        if not recovering:
            raise self._error(
                f"all {len(self._states)} {self.role}s are gone (workers.max_restarts={self._max_restarts}); "
                "the run can be continued with elm resume"
            )
        return recovering

    def loads(self, indices: Sequence[int]) -> list[int]:
        """The work each member has in flight, in the units of its shares."""
        return [self._states[index].outstanding for index in indices]

    def lose(self, index: int, reason: str) -> None:
        """Give up on a member found gone by other means (its node left the cluster)."""
        state = self._states[index]
        if not state.lost:
            state.lost, state.ping = True, None
            self._events.append((self._kinds.lost, {**state.member.tags, "reason": reason}))

    # -- work ---------------------------------------------------------------------------------

    def send(self, share: Share, index: int) -> Share:
        """Start `share` on member `index`, or keep it until a member is healthy if that
        one is not."""
        if index in self._healthy():
            self._launch(share, index)
        else:
            share.parked_at = time.monotonic()
        return share

    def gather(self, shares: Sequence[Share]) -> list[Any]:
        """The result of every share, in order; failed shares go to other members meanwhile."""
        import ray

        results: dict[int, Any] = {}
        waiting = list(shares)
        while waiting:
            self.check_health()
            self._launch_parked(waiting)
            running = [share for share in waiting if share.ref is not None]
            if not running:
                time.sleep(POLL_S / 10)
                continue
            ready, _ = ray.wait([share.ref for share in running], num_returns=1, timeout=POLL_S)
            self._stop_overdue([share for share in running if share.ref not in ready])
            for share in [share for share in running if share.ref in ready]:
                done, result = self._result(share)
                if done:
                    results[id(share)] = result
                    waiting.remove(share)
        return [results[id(share)] for share in shares]

    def take_events(self) -> list[Event]:
        """Retries, restarts and losses since the last call."""
        self.check_health()
        events, self._events = self._events, []
        return events

    def check_health(self) -> None:
        """Read, without waiting, the answers of members asked who they are after a failure."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        pinged = [state for state in self._states if state.ping is not None]
        if not pinged:
            return
        ready, _ = ray.wait([state.ping for state in pinged], num_returns=len(pinged), timeout=0)
        for index, state in enumerate(self._states):
            if state.ping is None or state.ping not in ready:
                continue
            try:
                info = ray.get(state.ping)
            except ActorUnavailableError:  # still restarting: ask again later
                state.ping = state.actor.describe.remote()
                continue
            except RayActorError as error:
                self.lose(index, error_reason(error))
                continue
            self._answered(index, info)

    def close(self, closing: Callable[[Any], Any] | None = None, timeout_s: float = 0.0) -> None:
        """Call `closing(actor)` on every member not gone and wait up to `timeout_s` for
        them, then end every actor for good."""
        import ray

        if not ray.is_initialized():
            return
        started = [state for state in self._states if state.actor is not None]
        if closing is not None:
            calls = [closing(state.actor) for state in started if not state.lost]
            if calls:
                ray.wait(calls, num_returns=len(calls), timeout=timeout_s)
        for state in started:
            ray.kill(state.actor, no_restart=True)

    # -- inside -------------------------------------------------------------------------------

    def _describe_all(self) -> list[dict[str, Any]]:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            return ray.get([state.actor.describe.remote() for state in self._states], timeout=self._start_timeout_s)
        except GetTimeoutError:
            raise self._error(
                f"the {self.role}s did not start within {self._start_timeout_s:.0f} s; "
                "`ray status` shows what the cluster can place"
            ) from None
        except RayActorError as error:
            raise self._error(f"a {self.role} failed to start: {error_reason(error)}") from None

    def _healthy(self) -> list[int]:
        return [index for index, state in enumerate(self._states) if not state.lost and state.ping is None]

    def _launch(self, share: Share, index: int) -> None:
        state = self._states[index]
        share.member, share.parked_at = index, None
        share.attempts += 1
        share.started_at, share.overdue = time.monotonic(), False
        share.ref = share.call(state.actor)
        state.outstanding += share.size

    def _result(self, share: Share) -> tuple[bool, Any]:
        """(True, result) of a finished share, or (False, None) when it failed and was sent
        again (or parked)."""
        import ray
        from ray.exceptions import ObjectLostError, RayActorError

        self._states[share.member].outstanding -= share.size
        try:
            return True, ray.get(share.ref)
        except (RayActorError, ObjectLostError, *self._unusable) as error:
            if share.overdue:
                self._retry(share, TimeoutError(f"no answer within workers.share_timeout_s={self._share_timeout_s} s"))
            else:
                self._retry(share, error)
            return False, None

    def _stop_overdue(self, running: Sequence[Share]) -> None:
        """Kill the members that have held a share past `share_timeout_s` (a stuck call
        never returns by itself); their shares then fail and go to other members."""
        import ray

        if self._share_timeout_s is None:
            return
        now = time.monotonic()
        for share in running:
            if not share.overdue and now - share.started_at > self._share_timeout_s:
                share.overdue = True
                ray.kill(self._states[share.member].actor, no_restart=False)

    def _retry(self, share: Share, error: BaseException) -> None:
        self._suspect(share.member)
        if share.attempts > self._max_retries:
            raise self._error(
                f"{share.size} {self._kinds.unit} failed on {share.attempts} attempts "
                f"(workers.max_batch_retries={self._max_retries}); last: {error_reason(error)}; "
                "the run can be continued with elm resume"
            )
        self.targets()  # every member gone: say so now
        share.ref, share.last_error, share.parked_at = None, error, time.monotonic()
        others = [index for index in self._healthy() if index != share.member]
        if others:
            self._relaunch(share, self._least_loaded(others))

    def _relaunch(self, share: Share, index: int) -> None:
        """Send a failed share again (`share.member` is still the member it failed on)."""
        failed, error = self._states[share.member], share.last_error
        self._events.append((self._kinds.retry, {
            **failed.member.tags, "retry_on": self.name(index), self._kinds.unit: share.size,
            "attempt": share.attempts + 1, "error": type(error).__name__,
            "reason": error_reason(error) if error is not None else "",
        }))
        self._launch(share, index)

    def _launch_parked(self, shares: Sequence[Share]) -> None:
        parked = [share for share in shares if share.ref is None]
        if not parked:
            return
        healthy = self._healthy()
        if not healthy:
            self.targets()  # every member gone: say so now
            for share in parked:
                self._check_patience(share)
            return
        for share in parked:
            index = self._least_loaded(healthy)
            if share.attempts == 0:
                self._launch(share, index)
            else:
                self._relaunch(share, index)

    def _least_loaded(self, indices: Sequence[int]) -> int:
        return min(indices, key=lambda index: (self._states[index].outstanding, index))

    def _check_patience(self, share: Share) -> None:
        waited = time.monotonic() - (share.parked_at or time.monotonic())
        if waited > self._start_timeout_s:
            raise self._error(
                f"no {self.role} came back within {self._start_timeout_s:.0f} s to take {share.size} "
                f"{self._kinds.unit}; the run can be continued with elm resume"
            )

    def _suspect(self, index: int) -> None:
        state = self._states[index]
        if state.ping is None and not state.lost:
            state.ping = state.actor.describe.remote()

    def _answered(self, index: int, info: dict[str, Any]) -> None:
        state = self._states[index]
        state.ping = None
        if info["error"]:
            self.lose(index, info["error"])
        elif info["pid"] != state.pid:
            self._events.append((self._kinds.restart, {**state.member.tags, "pid_before": state.pid,
                                                       "pid_after": info["pid"], "node": info["node"]}))
            state.pid = info["pid"]
            if self._on_restart is not None:
                self._on_restart(index)
