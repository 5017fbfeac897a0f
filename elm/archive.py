"""The MAP-Elites archive: a thin layer over pyribs grid and CVT archives.

The solution stored in each pyribs cell is the candidate id (one float), so the archive
holds no programs: the run store does. Parent selection is a named strategy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ribs.archives import CVTArchive, GridArchive, k_means_centroids

from elm.config import ArchiveConfig
from elm.environment import DescriptorSpace
from elm.errors import UserError
from elm.records import PlacementOutcome

# pyribs' add status, as the run records it.
_ADD_STATUS = {0: PlacementOutcome.NOT_ADDED, 1: PlacementOutcome.IMPROVED, 2: PlacementOutcome.NEW}


@dataclass(frozen=True)
class Placement:
    niche: int
    outcome: PlacementOutcome

    @property
    def placed(self) -> bool:
        return self.outcome != PlacementOutcome.NOT_ADDED


@dataclass(frozen=True)
class Elite:
    candidate_id: int
    niche: int
    fitness: float
    descriptor: tuple[float, ...]


@dataclass(frozen=True)
class ArchiveStats:
    coverage: float
    qd_score: float
    num_elites: int
    max_fitness: float | None
    mean_fitness: float | None


def _uniform(elites: Sequence[Elite], count: int, rng: np.random.Generator) -> list[Elite]:
    """The ELM paper's choice: every filled niche is equally likely."""
    picks = rng.integers(0, len(elites), size=count)
    return [elites[i] for i in picks]


SELECTIONS: dict[str, Callable[[Sequence[Elite], int, np.random.Generator], list[Elite]]] = {
    "uniform": _uniform,
}


class Archive:
    def __init__(
        self,
        space: DescriptorSpace,
        config: ArchiveConfig,
        qd_offset: float = 0.0,
        centroids: Sequence[Sequence[float]] | None = None,
        seed: int = 0,
    ) -> None:
        self.kind = config.kind
        self._select = SELECTIONS[config.selection]
        self.names = space.names
        self.ranges = space.ranges
        self._archive = _make_pyribs_archive(space, config, qd_offset, centroids, seed)
        self.bins = tuple(int(b) for b in self._archive.dims) if isinstance(self._archive, GridArchive) else None
        self._elites: list[Elite] | None = None

    @property
    def cells(self) -> int:
        return int(self._archive.cells)

    def layout(self) -> dict[str, Any]:
        """What it takes to rebuild an empty archive of the same shape (JSON data)."""
        layout: dict[str, Any] = {"kind": self.kind, "names": list(self.names),
                                  "ranges": [list(r) for r in self.ranges], "cells": self.cells}
        if isinstance(self._archive, CVTArchive):
            layout["centroids"] = np.asarray(self._archive.centroids).tolist()
        else:
            layout["bins"] = list(self.bins or ())
        return layout

    def add_batch(
        self,
        candidate_ids: Sequence[int],
        fitnesses: Sequence[float],
        descriptors: Sequence[Sequence[float]],
    ) -> list[Placement]:
        """Offer candidates together; a candidate counts as placed when it holds its niche
        afterwards (of several in one niche, the best; the earliest on a tie)."""
        if not candidate_ids:
            return []
        ids = np.asarray(candidate_ids, dtype=float).reshape(-1, 1)
        measures = np.asarray(descriptors, dtype=float)
        added = self._archive.add(ids, np.asarray(fitnesses, dtype=float), measures)
        niches = self._archive.index_of(measures)
        self._elites = None
        _, holders = self._archive.retrieve(measures)
        holder_ids = holders["solution"][:, 0]
        return [
            Placement(niche=int(niche),
                      outcome=_ADD_STATUS[int(status)] if holder == cid else PlacementOutcome.NOT_ADDED)
            for cid, niche, status, holder in zip(candidate_ids, niches, added["status"], holder_ids)
        ]

    def niche_of(self, descriptor: Sequence[float]) -> int:
        return int(self._archive.index_of_single(list(descriptor)))

    def niche_coordinates(self, niche: int) -> tuple[int, ...]:
        """Grid coordinates of a niche (for a CVT archive, the niche index alone)."""
        if isinstance(self._archive, GridArchive):
            return tuple(int(i) for i in self._archive.int_to_grid_index([niche])[0])
        return (niche,)

    def elites(self) -> list[Elite]:
        """Every elite, in niche order (cached until the next add)."""
        if self._elites is None:
            data = self._archive.data()
            order = np.argsort(data["index"], kind="stable")
            self._elites = [
                Elite(candidate_id=int(data["solution"][i][0]), niche=int(data["index"][i]),
                      fitness=float(data["objective"][i]),
                      descriptor=tuple(float(x) for x in data["measures"][i]))
                for i in order
            ]
        return self._elites

    def sample_parents(self, count: int, rng: np.random.Generator) -> list[Elite]:
        elites = self.elites()
        if not elites:
            raise RuntimeError("cannot select parents from an empty archive")
        return self._select(elites, count, rng)

    def stats(self) -> ArchiveStats:
        stats = self._archive.stats
        empty = stats.num_elites == 0
        return ArchiveStats(
            coverage=float(stats.coverage),
            qd_score=float(stats.qd_score),
            num_elites=int(stats.num_elites),
            max_fitness=None if empty or stats.obj_max is None else float(stats.obj_max),
            mean_fitness=None if empty or stats.obj_mean is None else float(stats.obj_mean),
        )


def _make_pyribs_archive(
    space: DescriptorSpace,
    config: ArchiveConfig,
    qd_offset: float,
    centroids: Sequence[Sequence[float]] | None,
    seed: int,
) -> GridArchive | CVTArchive:
    ranges = list(space.ranges)
    if config.kind == "grid":
        bins = list(config.bins) if config.bins is not None else list(space.bins)
        if len(bins) != len(space):
            raise UserError(
                f"archive.bins has {len(bins)} entries but the environment has "
                f"{len(space)} descriptor dimensions ({', '.join(space.names)})"
            )
        return GridArchive(solution_dim=1, dims=bins, ranges=ranges,
                           qd_score_offset=qd_offset, seed=seed)
    if centroids is None:
        centroids = k_means_centroids(
            centroids=config.cvt_cells, ranges=ranges, samples=config.cvt_samples, seed=seed
        )[0].tolist()
    return CVTArchive(solution_dim=1, centroids=np.asarray(centroids), ranges=ranges,
                      qd_score_offset=qd_offset, seed=seed)
