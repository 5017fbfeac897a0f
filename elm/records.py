"""The vocabulary of a run: what a candidate is, what it becomes, and which one holds a niche.

Everything above (mutators, evaluator, loop, store, report) speaks in these terms; this
module imports nothing from elm.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass


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
