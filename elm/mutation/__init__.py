"""The mutation interface: turn parent programs into child programs.

The loop hands a mutator a batch of `MutationRequest`s (parent source, the commit
message drawn for it, and a seed so results do not depend on scheduling) and gets back
`Child`ren. A child whose mutation failed carries `source=None`, the furthest validity
stage it reached and the reason, so every outcome is counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:
    from elm.config import ElmConfig
    from elm.environment import Environment

# The validity funnel, in order. Mutators report up to "applied"; the loop adds the rest.
STAGES = ("generated", "parsed", "applied", "compiled", "ran", "scored", "placed")


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
    name: str

    def propose(self, requests: Sequence[MutationRequest]) -> list[Child]:
        """Children for the requests, in any order (each names its parent)."""
        ...

    def close(self) -> None: ...


def make_mutator(config: "ElmConfig", environment: "Environment") -> Mutator:
    operator = config.mutation.operator
    if operator == "gp":
        from elm.mutation.gp import GPMutator

        return GPMutator(max_edits=config.mutation.gp_max_edits)
    if operator == "null":
        from elm.mutation.gp import NullMutator

        return NullMutator()
    if operator == "diff":
        from elm.mutation.workers import open_diff_mutator

        return open_diff_mutator(config)
    raise ValueError(f"unknown mutation operator {operator!r}")
