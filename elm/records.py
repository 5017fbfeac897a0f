"""The vocabulary of a run: what a candidate is, the stages it passes and the status it ends
with, why it failed when its status alone does not say, where it lands in the archive, and
which candidate holds a niche.

Stages and statuses are str-valued enums: a member is equal to its text, so what the store
holds and the JSON views print are the same words as before. Everything above (mutators,
evaluator, loop, store, report) speaks in these terms; this module imports nothing from elm.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    """The furthest point a candidate reached. In funnel order; see FUNNEL and BEFORE_FUNNEL."""

    # Before the funnel: the mutator got no program text to work on.
    REQUESTED = "requested"  # a served model's request got no usable answer
    SKIPPED = "skipped"  # the prompt was longer than the model's context: never sent
    # The funnel.
    GENERATED = "generated"  # the mutator produced text
    PARSED = "parsed"  # the text holds a diff (or an edit) that can be read
    APPLIED = "applied"  # it applies to the parent: the child has a program
    UNCHANGED = "unchanged"  # ... the parent's own program: its verdict is reused
    DUPLICATE = "duplicate"  # ... a program evaluated before: that verdict is reused
    COMPILED = "compiled"
    RAN = "ran"  # ran in the sandbox and returned a result
    SCORED = "scored"  # the environment gave it a fitness and a descriptor
    PLACED = "placed"  # it holds a niche of the archive (new or improved)


# The evaluated path of the funnel, in order: each stage's count includes the later ones.
STAGES: tuple[Stage, ...] = (Stage.GENERATED, Stage.PARSED, Stage.APPLIED, Stage.COMPILED,
                             Stage.RAN, Stage.SCORED, Stage.PLACED)
# Where a child leaves the funnel after "applied" without being evaluated, because its
# program was evaluated before: as its parent (`unchanged`) or as another candidate.
REUSED_STAGES: tuple[Stage, ...] = (Stage.UNCHANGED, Stage.DUPLICATE)
# The funnel as stored and shown: the stages in order, the reused ones after "applied".
FUNNEL: tuple[Stage, ...] = STAGES[:3] + REUSED_STAGES + STAGES[3:]
# Stages outside the funnel: children whose mutation never produced text. They count as
# candidates (status `mutation_failed`), not as generated.
BEFORE_FUNNEL: tuple[Stage, ...] = (Stage.REQUESTED, Stage.SKIPPED)


class Status(StrEnum):
    """A candidate's final verdict: `ok` only when scored."""

    OK = "ok"
    # From the sandbox (the runner's answer; `elm.sandbox.STATUSES`).
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    KILLED = "killed"
    BAD_OUTPUT = "bad_output"
    # From the host.
    MUTATION_FAILED = "mutation_failed"  # no program: see the stage and the error
    SYNTAX_ERROR = "syntax_error"
    INVALID = "invalid"  # ran, but the environment gave no valid score (see `failure`)
    PENDING = "pending"  # compiled, waiting for the sandbox (never stored)
    UNCHANGED = "unchanged"  # the verdict of the parent's identical program, reused
    DUPLICATE = "duplicate"  # the verdict of an identical earlier program, reused


SANDBOX_STATUSES: tuple[Status, ...] = (Status.OK, Status.ERROR, Status.TIMEOUT, Status.MEMORY,
                                         Status.KILLED, Status.BAD_OUTPUT)


class ScoringFailure(StrEnum):
    """Why an `invalid` candidate has no score when the environment's scoring code, not its
    verdict, is to blame; recorded with the candidate as `extras["failure"]`. An invalid
    candidate without one was judged invalid by the environment (the reason says why)."""

    RAISED = "score_raised"  # score() raised on this result
    MALFORMED = "score_malformed"  # score() returned something that is not a usable Score


FAILURE_KEY = "failure"  # where a ScoringFailure is kept in a candidate's extras


class PlacementOutcome(StrEnum):
    """What offering a scored candidate to the archive did (pyribs' add status)."""

    NEW = "new"  # it opened an empty niche
    IMPROVED = "improved"  # it replaced a worse elite
    NOT_ADDED = "not_added"


def funnel_from_stops(stopped_at: Mapping[str, int]) -> dict[str, int]:
    """How many candidates reached each funnel stage, from how many stopped at each: one
    counts for every stage up to where it stopped; an `unchanged` or `duplicate` one passed
    "applied" and stopped there, not evaluated. Stages before the funnel are not counted;
    any other stage is refused (a stage nobody placed in the funnel must not vanish)."""
    applied = STAGES.index(Stage.APPLIED)
    reached: Counter[int] = Counter()
    for stage, count in stopped_at.items():
        if stage in REUSED_STAGES:
            reached[applied] += count
        elif stage in STAGES:
            reached[STAGES.index(Stage(stage))] += count
        elif stage not in BEFORE_FUNNEL:
            raise ValueError(f"stage {stage!r} is neither in the funnel nor before it")
    counts: dict[str, int] = {stage: stopped_at.get(stage, 0) for stage in REUSED_STAGES}
    running = 0
    for index in reversed(range(len(STAGES))):
        running += reached[index]
        counts[STAGES[index]] = running
    return {str(stage): counts[stage] for stage in FUNNEL}


def reached(stage: Stage) -> tuple[Stage, ...]:
    """The stages a candidate stopped at that mean it reached `stage` on the evaluated path."""
    return STAGES[STAGES.index(stage):]


@dataclass
class Child:
    """What a mutator hands back for one request: the child program (None when the mutation
    failed), the furthest stage it reached and, on failure, why."""

    parent_id: int | None
    source: str | None
    operator: str
    commit_message: str | None = None
    diff: str | None = None
    stage: str = Stage.APPLIED
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class CandidateRecord:
    """One candidate as stored. `stage` is a Stage and `status` a Status, kept as their text."""

    id: int
    iteration: int
    parent_id: int | None
    operator: str
    file_name: str
    source: str | None
    stage: str
    status: str
    commit_message: str | None = None
    diff: str | None = None
    error: str | None = None
    fitness: float | None = None
    descriptor: list[float] | None = None
    niche: int | None = None
    placement: str | None = None
    result: Any = None
    stdout: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)



def funnel_counts(records: Iterable[CandidateRecord]) -> dict[str, int]:
    """How many records reached each funnel stage."""
    return funnel_from_stops(Counter(r.stage for r in records))


@dataclass(frozen=True)
class SnapshotRow:
    """One elite: the candidate holding a niche, with its fitness and descriptor."""

    niche: int
    candidate_id: int
    fitness: float
    descriptor: tuple[float, ...]


def niche_holders(offered: Iterable[tuple[int, int, float, str | Iterable[float]]]) -> list[SnapshotRow]:
    """Which candidate holds each niche, from scored candidates (niche, id, fitness,
    descriptor) in the order they were offered to the archive: the first one offered, until
    one with a strictly greater fitness comes. That is pyribs' own rule for the run's live
    archive, so a rebuild from the store gives the archive the run had. A descriptor may
    be given as its JSON text (as stored); only the holders' are decoded. In niche order."""
    held: dict[int, tuple[int, float, str | Iterable[float]]] = {}
    for niche, candidate_id, fitness, descriptor in offered:
        holder = held.get(niche)
        if holder is None or fitness > holder[1]:
            held[niche] = (candidate_id, fitness, descriptor)
    return [SnapshotRow(niche, candidate_id, float(fitness), _descriptor(descriptor))
            for niche, (candidate_id, fitness, descriptor) in sorted(held.items())]


def _descriptor(value: str | Iterable[float]) -> tuple[float, ...]:
    return tuple(json.loads(value) if isinstance(value, str) else value)
