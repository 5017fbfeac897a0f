"""The mutation interface: turn parent programs into child programs.

The loop hands a mutator a batch of `MutationRequest`s (parent source, the commit
message drawn for it, and a seed so results do not depend on scheduling) and gets back
`Child`ren (elm/records.py). A child whose mutation failed carries `source=None`, the
furthest stage it reached and the reason, so every outcome is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from elm.records import Child

if TYPE_CHECKING:
    from elm.config import ElmConfig
    from elm.environment import Environment

__all__ = ["Child", "InProcessMutator", "MutationRequest", "Mutator", "MutatorWrapper", "make_mutator"]


@dataclass(frozen=True)
class MutationRequest:
    parent_id: int
    file_name: str
    source: str
    commit_message: str
    seed: int


class Mutator(Protocol):
    """Batches go in with `submit` and come out, in submission order, with `collect`, so
    a mutator backed by remote workers keeps several batches generating at once."""

    name: str

    @property
    def max_in_flight(self) -> int | None:
        """The most batches worth submitting before the first is collected (the loop keeps
        min(workers.in_flight, this)); None: no limit of its own."""
        ...

    @property
    def workers(self) -> int:
        """How many requests it works on at once (for the loop's busy figures)."""
        ...

    def submit(self, requests: Sequence[MutationRequest]) -> Any:
        """Start work on a batch; returns a ticket for `collect`."""
        ...

    def collect(self, ticket: Any) -> list[Child]:
        """Children of a submitted batch (each names its parent), waiting if needed."""
        ...

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        """Notable events since the last call (worker restarts, retried batches)."""
        ...

    def close(self) -> None: ...


class InProcessMutator:
    """Base of mutators that work in the loop's own process: the work happens in
    `collect`, through `propose`."""

    name = "in_process"
    # Work happens in the loop's thread, so batches in flight would only stale parents.
    max_in_flight: int | None = 1
    workers = 1

    def propose(self, requests: Sequence[MutationRequest]) -> list[Child]:
        raise NotImplementedError

    def submit(self, requests: Sequence[MutationRequest]) -> Any:
        return list(requests)

    def collect(self, ticket: Any) -> list[Child]:
        return self.propose(ticket)

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        return []

    def close(self) -> None:
        pass


class MutatorWrapper:
    """Base of mutators that add to another one: everything goes to the wrapped `mutator`
    unless a subclass says otherwise."""

    def __init__(self, mutator: Mutator) -> None:
        self.mutator = mutator
        self.name = mutator.name

    @property
    def max_in_flight(self) -> int | None:
        return self.mutator.max_in_flight

    @property
    def workers(self) -> int:
        return self.mutator.workers

    def submit(self, requests: Sequence[MutationRequest]) -> Any:
        return self.mutator.submit(requests)

    def collect(self, ticket: Any) -> list[Child]:
        return self.mutator.collect(ticket)

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        return self.mutator.take_events()

    def close(self) -> None:
        self.mutator.close()


def make_mutator(config: ElmConfig, environment: Environment) -> Mutator:
    operator = config.mutation.operator
    if operator == "gp":
        from elm.mutation.gp import GPMutator

        return GPMutator(max_edits=config.mutation.gp_max_edits)
    if operator == "null":
        from elm.mutation.gp import NullMutator

        return NullMutator()
    if operator == "diff" and config.mutation.backend == "openai":
        from elm.mutation.served import ServedMutator

        return ServedMutator(config.mutation)
    if operator == "diff":
        from elm.mutation.workers import open_diff_mutator

        return open_diff_mutator(config)
    raise ValueError(f"unknown mutation operator {operator!r}")
