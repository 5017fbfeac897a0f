"""Evaluation of children: compile check on the host, run in the sandbox, score on the host.

Nothing here places candidates in the archive; the loop does. Every child comes back as a
`CandidateRecord` with its final status and the furthest funnel stage it reached.
"""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Sequence
from typing import Any

from elm.config import SandboxConfig
from elm.environment import Environment, Score
from elm.records import FAILURE_KEY, CandidateRecord, Child, ScoringFailure, Stage, Status
from elm.sandbox import Job, Outcome, Sandbox

_STDOUT_KEEP = 4096


class Evaluator:
    def __init__(self, environment: Environment, sandbox: Sandbox, settings: SandboxConfig) -> None:
        self.environment = environment
        self.sandbox = sandbox
        self.settings = settings
        self._files = environment.sandbox_files()

    def job_for(self, source: str) -> Job:
        files = {**self._files, self.environment.file_name: source}
        return Job(files=files, entry=self.environment.harness,
                   timeout_s=self.settings.timeout_s, memory_mb=self.settings.memory_mb)

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        """The sandbox's events since the last call."""
        return self.sandbox.take_events()

    def evaluate(self, children: Sequence[Child], ids: Sequence[int], iteration: int) -> list[CandidateRecord]:
        """Records for `children` (ids given by the loop), in the same order."""
        records = [self._record(child, cid, iteration) for child, cid in zip(children, ids)]
        runnable = [r for r in records if r.stage == Stage.COMPILED]
        started = time.perf_counter()
        outcomes = self.sandbox.run_many([self.job_for(r.source or "") for r in runnable])
        elapsed = time.perf_counter() - started
        for record, outcome in zip(runnable, outcomes):
            record.timings["evaluate_s"] = elapsed / max(len(runnable), 1)
            record.timings["sandbox_s"] = outcome.seconds
            self._score(record, outcome)
        return records

    def _record(self, child: Child, candidate_id: int, iteration: int) -> CandidateRecord:
        record = CandidateRecord(
            id=candidate_id, iteration=iteration, parent_id=child.parent_id,
            operator=child.operator, file_name=self.environment.file_name, source=child.source,
            stage=child.stage, status=Status.MUTATION_FAILED, commit_message=child.commit_message,
            diff=child.diff, error=child.error, timings=dict(child.timings), extras=dict(child.extras),
        )
        if child.source is None:
            return record
        syntax_error = compile_error(child.source, self.environment.file_name)
        if syntax_error:
            record.status, record.error = Status.SYNTAX_ERROR, syntax_error
        else:
            record.stage, record.status = Stage.COMPILED, Status.PENDING
        return record

    def _score(self, record: CandidateRecord, outcome: Outcome) -> None:
        record.stdout = outcome.stdout[-_STDOUT_KEEP:] or None
        record.status = outcome.status
        if outcome.status != Status.OK:
            record.error = outcome.error
            return
        record.stage = Stage.RAN
        record.result = outcome.result
        score, failure = score_safely(self.environment, outcome.result)
        if not score.valid:
            record.status, record.error = Status.INVALID, score.invalid_reason
            if failure is not None:
                record.extras[FAILURE_KEY] = failure
            return
        record.stage = Stage.SCORED
        record.fitness = score.fitness
        record.descriptor = list(score.descriptor or ())
        record.extras.update(score.extras)


def compile_error(source: str, file_name: str) -> str | None:
    """Why `source` does not compile, or None. Compiling parses; it executes nothing."""
    try:
        compile(source, file_name, "exec", dont_inherit=True)
    except SyntaxError as error:
        return f"SyntaxError: {error.msg} (line {error.lineno})"
    except (ValueError, RecursionError, MemoryError, OverflowError) as error:
        return f"{type(error).__name__}: {str(error)[:200]}"
    return None


def score_safely(environment: Environment, result: Any) -> tuple[Score, ScoringFailure | None]:
    """The environment's score of a result, and whether its scoring code failed on it: an
    environment's scoring bug on hostile data invalidates the candidate, not the run.
    Whatever `score` raises or returns, the answer is a valid Score the archive and the
    store can take (a finite fitness, one finite value per descriptor dimension, extras
    that are JSON) or an invalid one with the reason."""
    try:
        score = environment.score(result)
    except Exception as error:  # the environment is plug-in code; record its failure
        return (Score.invalid(f"scoring failed: {type(error).__name__}: {str(error)[:200]}"),
                ScoringFailure.RAISED)
    if not isinstance(score, Score):
        return Score.invalid(f"score() returned {type(score).__name__}, not Score"), ScoringFailure.MALFORMED
    if not score.valid:  # the environment's verdict, with its reason
        return Score.invalid(str(score.invalid_reason)[:500]), None
    problem = _score_problem(score, environment.descriptor_space.dimensions)
    if problem:
        return Score.invalid(f"score() returned {problem}"), ScoringFailure.MALFORMED
    return Score(fitness=float(score.fitness),  # type: ignore[arg-type]
                 descriptor=tuple(float(v) for v in score.descriptor),  # type: ignore[union-attr]
                 extras=dict(score.extras)), None


def _score_problem(score: Score, dimensions: Sequence[Any]) -> str | None:
    if not _finite_number(score.fitness):
        return f"a fitness that is not a finite number: {score.fitness!r:.60}"
    try:
        descriptor = list(score.descriptor)  # type: ignore[arg-type]
    except TypeError:
        descriptor = None
    if descriptor is None or len(descriptor) != len(dimensions):
        count = "no" if descriptor is None else len(descriptor)
        names = ", ".join(d.name for d in dimensions)
        return f"a descriptor of {count} value(s) for {len(dimensions)} dimension(s) ({names})"
    if not all(_finite_number(v) for v in descriptor):
        return f"a descriptor with a value that is not a finite number: {score.descriptor!r:.80}"
    try:
        json.dumps(dict(score.extras))
    except (TypeError, ValueError) as error:
        return f"extras that are not JSON data: {error}"
    return None


def _finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def error_summary(error: str | None) -> str:
    """The line of an error text that says what went wrong (a traceback's last line)."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no error message"
