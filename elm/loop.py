"""The MAP-Elites driver: seed the archive, then select, mutate, evaluate and place.

Iteration 0 evaluates the environment's seed programs. Every later iteration draws its
parents and commit messages from an RNG derived from (run seed, iteration), so a resumed
run continues the same random stream, and commits everything it did in one transaction.
No program is evaluated twice in a run (elm/duplicates.py); commit messages are drawn by
the configured policy (elm/mutation/messages.py).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from elm.archive import Archive
from elm.config import ElmConfig
from elm.duplicates import EvaluatedPrograms
from elm.environment import Environment, seed_programs
from elm.errors import UserError
from elm.evaluator import Evaluator, error_summary
from elm.mutation import MutationRequest, Mutator
from elm.mutation.messages import make_message_policy, mark_drawn_messages
from elm.mutation.prompt import commit_messages_for
from elm.records import CandidateRecord, Child, SnapshotRow, Stage, Status, funnel_counts
from elm.store import IterationMetrics, RunStore

IterationListener = Callable[[IterationMetrics], None]


class EvolutionLoop:
    def __init__(
        self,
        config: ElmConfig,
        environment: Environment,
        archive: Archive,
        mutator: Mutator,
        evaluator: Evaluator,
        store: RunStore,
        on_iteration: IterationListener | None = None,
    ) -> None:
        self.config = config
        self.environment = environment
        self.archive = archive
        self.mutator = mutator
        self.evaluator = evaluator
        self.store = store
        self.on_iteration = on_iteration or (lambda metrics: None)
        self.commit_messages = commit_messages_for(config, environment)
        limit = mutator.max_in_flight
        self.depth = config.workers.in_flight if limit is None else min(config.workers.in_flight, limit)
        self.message_policy = make_message_policy(config.mutation.message_selection,
                                                  self.commit_messages, lag=self.depth)
        self.programs = EvaluatedPrograms()
        self._sources: dict[int, str] = {}
        self._next_id = store.next_candidate_id()
        self._last_commit = time.perf_counter()

    def run(self) -> None:
        """Keep up to `workers.in_flight` batches generating; evaluate, place and commit
        them in submission order (a batch's parents come from the archive as it is when
        the batch is submitted)."""
        last = self.restore()
        if last is None:
            self.seed()
            last = 0
        elif not self.archive.elites() and last < self.config.run.iterations:
            raise _no_valid_seed(list(self.store.candidates(iteration=0)))
        pending: deque[tuple[int, Any, list[MutationRequest]]] = deque()
        last_iteration = self.config.run.iterations
        next_iteration = last + 1
        while pending or next_iteration <= last_iteration:
            while len(pending) < self.depth and next_iteration <= last_iteration:
                requests = self.requests(next_iteration)
                pending.append((next_iteration, self.mutator.submit(requests), requests))
                next_iteration += 1
            iteration, ticket, requests = pending.popleft()
            waiting = time.perf_counter()
            children = self.mutator.collect(ticket)
            mark_drawn_messages(requests, children)
            self._finish(iteration, children, waited_s=time.perf_counter() - waiting)

    def restore(self) -> int | None:
        """Rebuild the archive from the store's niche holders, and the index of evaluated
        programs from its stored verdicts; return the last committed iteration."""
        elites = self.store.current_elites()
        self.archive.add_batch([e.candidate_id for e in elites], [e.fitness for e in elites],
                               [list(e.descriptor) for e in elites])
        elite_ids = [e.candidate_id for e in self.archive.elites()]
        self._sources = self.store.sources(elite_ids)
        verdicts = self.store.program_verdicts()
        if verdicts is None:
            self.programs.rebuild(self.store.evaluated_candidates())
            self.store.index_programs(self.programs.take_new())
        else:
            self.programs.restore(verdicts, self._sources)
        self.programs.take_new()
        self.message_policy.record(self.store.message_outcomes())
        return self.store.last_iteration()

    def seed(self) -> None:
        seeds = seed_programs(self.environment)
        children = [Child(parent_id=None, source=p.source, operator="seed",
                          commit_message=p.name or None, stage=Stage.APPLIED) for p in seeds]
        self._finish(0, children, waited_s=0.0)

    def requests(self, iteration: int) -> list[MutationRequest]:
        if not self.archive.elites():
            raise RuntimeError("the archive is empty: no seed program was valid (see elm inspect)")
        rng = np.random.default_rng([self.config.run.seed, iteration])
        count = self.config.run.batch_size
        # Children of one parent share its commit message, so a model prefills it once.
        per_parent = self.config.mutation.children_per_parent
        parent_count = -(-count // per_parent)
        parents = self.archive.sample_parents(parent_count, rng)
        messages = self.message_policy.choose(parent_count, rng, iteration)
        seeds = rng.integers(0, 2**31 - 1, size=count)
        return [
            MutationRequest(parent_id=parents[i // per_parent].candidate_id,
                            file_name=self.environment.file_name,
                            source=self._sources[parents[i // per_parent].candidate_id],
                            commit_message=messages[i // per_parent], seed=int(seeds[i]))
            for i in range(count)
        ]

    def place(self, records: Sequence[CandidateRecord]) -> None:
        scored = [r for r in records if r.status == Status.OK]
        placements = self.archive.add_batch(*_offers(scored))
        for record, placement in zip(scored, placements):
            record.niche, record.placement = placement.niche, placement.outcome
            if placement.placed:
                record.stage = Stage.PLACED
                self._sources[record.id] = record.source or ""

    def _finish(self, iteration: int, children: Sequence[Child], waited_s: float) -> None:
        ids = list(range(self._next_id, self._next_id + len(children)))
        evaluating = time.perf_counter()
        records = self.programs.evaluate(self.evaluator, children, ids, iteration)
        evaluate_s = time.perf_counter() - evaluating
        self.place(records)
        if iteration == 0 and not self.archive.elites():
            raise _no_valid_seed(records)  # before the commit: a run without seeds is not a run
        now = time.perf_counter()
        metrics = self._metrics(iteration, records, now - self._last_commit)
        metrics.extras["stages"] = self._stage_figures(children, waited_s, evaluate_s, now - self._last_commit)
        events = [*self.mutator.take_events(), *self.evaluator.take_events()]
        self.store.record_iteration(records, metrics, self._snapshot(iteration), events,
                                    self.programs.take_new())
        self.message_policy.record(self.store.message_outcomes(iteration))
        self._last_commit = now
        self._next_id += len(children)
        self._forget_replaced_sources()
        self.on_iteration(metrics)

    def _stage_figures(self, children: Sequence[Child], waited_s: float, evaluate_s: float,
                       interval_s: float) -> dict[str, float]:
        """Throughput and busy share of generation and evaluation over this iteration."""
        workers = max(self.mutator.workers, 1)
        generate_s = sum(c.timings.get("generate_s", 0.0) for c in children)
        interval_s = max(interval_s, 1e-9)
        return {
            "generated_per_s": len(children) / interval_s,
            "evaluated_per_s": len(children) / max(evaluate_s, 1e-9),
            "generation_busy": min(generate_s / (interval_s * workers), 1.0),
            "evaluation_busy": min(evaluate_s / interval_s, 1.0),
            "waited_for_generation_s": waited_s,
            "evaluate_s": evaluate_s,
        }

    def _snapshot(self, iteration: int) -> list[SnapshotRow] | None:
        last = iteration == self.config.run.iterations
        if iteration % self.config.run.snapshot_every and not last:
            return None
        return [SnapshotRow(e.niche, e.candidate_id, e.fitness, e.descriptor)
                for e in self.archive.elites()]

    def _metrics(self, iteration: int, records: Sequence[CandidateRecord], wall_s: float) -> IterationMetrics:
        stats = self.archive.stats()
        return IterationMetrics(
            iteration=iteration, wall_s=wall_s, candidates=len(records),
            coverage=stats.coverage, qd_score=stats.qd_score, num_elites=stats.num_elites,
            max_fitness=stats.max_fitness, mean_fitness=stats.mean_fitness,
            evals_per_s=len(records) / wall_s if wall_s > 0 else 0.0,
            statuses=dict(Counter(r.status for r in records)),
            funnel=funnel_counts(records),
        )

    def _forget_replaced_sources(self) -> None:
        alive = {e.candidate_id for e in self.archive.elites()}
        for candidate_id in [i for i in self._sources if i not in alive]:
            del self._sources[candidate_id]


def _no_valid_seed(records: Sequence[CandidateRecord]) -> UserError:
    """Why no seed program reached the archive, each distinct reason once with its seeds."""
    seeds_by_reason: dict[str, list[str]] = {}
    reason_of: dict[int, str] = {}
    for record in records:
        reason = f"{record.status}: {error_summary(record.error)}"
        if record.status in (Status.UNCHANGED, Status.DUPLICATE):  # a copy of an earlier seed fails as it did
            reason = reason_of.get((record.extras or {}).get("same_as"), reason)  # type: ignore[arg-type]
        reason_of[record.id] = reason
        seeds_by_reason.setdefault(reason, []).append(record.commit_message or f"#{record.id}")
    reasons = "; ".join(f"{'seed' if len(names) == 1 else 'seeds'} {', '.join(names)}: {reason}"
                        for reason, names in seeds_by_reason.items())
    return UserError(f"no seed program is valid, so evolution cannot start ({reasons or 'seeds() returned none'})")


def _offers(scored: Sequence[CandidateRecord]) -> tuple[list[int], list[float], list[list[float]]]:
    """The ids, fitnesses and descriptors of scored candidates, as the archive takes them."""
    ids: list[int] = []
    fitnesses: list[float] = []
    descriptors: list[list[float]] = []
    for record in scored:
        if record.fitness is None or record.descriptor is None:
            raise ValueError(f"candidate {record.id} was not scored: it cannot go to the archive")
        ids.append(record.id)
        fitnesses.append(record.fitness)
        descriptors.append(record.descriptor)
    return ids, fitnesses, descriptors
