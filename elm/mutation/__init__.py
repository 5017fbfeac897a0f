"""The mutation interface: turn parent programs into child programs.

The loop hands a mutator a batch of `MutationRequest`s (parent source, the commit
message drawn for it, and a seed so results do not depend on scheduling) and gets back
`Child`ren. A child whose mutation failed carries `source=None`, the furthest validity
stage it reached and the reason, so every outcome is counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from elm.config import ElmConfig
    from elm.environment import Environment

# The validity funnel, in order. Mutators report up to "applied"; the loop adds the rest.
STAGES = ("generated", "parsed", "applied", "compiled", "ran", "scored", "placed")
# Where a child leaves the funnel after "applied" without being evaluated, because its
# program was evaluated before: as its parent (`unchanged`) or as another candidate.
REUSED_STAGES = ("unchanged", "duplicate")
# The funnel as stored and shown: the stages in order, the reused ones after "applied".
FUNNEL = STAGES[:3] + REUSED_STAGES + STAGES[3:]


def funnel_from_stops(stopped_at: Mapping[str, int]) -> dict[str, int]:
    """How many candidates reached each funnel stage, from how many stopped at each: one
    counts for every stage up to where it stopped; an `unchanged` or `duplicate` one passed
    "applied" and stopped there, not evaluated. Stages outside the funnel are not counted."""
    applied = STAGES.index("applied")
    reached: Counter[int] = Counter()
    for stage, count in stopped_at.items():
        if stage in REUSED_STAGES:
            reached[applied] += count
        elif stage in STAGES:
            reached[STAGES.index(stage)] += count
    counts, running = {stage: stopped_at.get(stage, 0) for stage in REUSED_STAGES}, 0
    for index in reversed(range(len(STAGES))):
        running += reached[index]
        counts[STAGES[index]] = running
    return {stage: counts[stage] for stage in FUNNEL}


@dataclass(frozen=True)
class MutationRequest:
    parent_id: int
    file_name: str
    source: str
    commit_message: str
    seed: int


@dataclass
class Child:
    parent_id: int | None
    source: str | None
    operator: str
    commit_message: str | None = None
    diff: str | None = None
    stage: str = "applied"
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


class Mutator(Protocol):
    """Batches go in with `submit` and come out, in submission order, with `collect`, so
    a mutator backed by remote workers keeps several batches generating at once."""

    name: str

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
    max_in_flight = 1

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
