"""Verification of a run's elites: re-run them and check that what the store says holds.

Each elite's program is evaluated again, in a sandbox of the run's configured backend
opened for the purpose, and scored again on the host. It reproduces when the re-run
succeeds and its fitness and every descriptor value equal the stored ones, exactly or
within the environment's `reproduce_tolerance`, and when the environment's own stricter
check, `Environment.verify(result)`, finds nothing wrong. Where the values differ, the
stored raw result tells why: the program gave another result (it is not deterministic),
or the same one scored differently (the store was edited or the scorer changed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elm.environment import Environment
from elm.errors import UserError
from elm.evaluator import Evaluator
from elm.records import CandidateRecord, Child, Status


@dataclass
class EliteCheck:
    candidate_id: int
    niche: int
    stored_fitness: float
    stored_descriptor: list[float]
    status: str | None = None
    fitness: float | None = None
    descriptor: list[float] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return not self.problems


@dataclass
class Verification:
    run_dir: str
    tolerance: float
    num_elites: int
    checks: list[EliteCheck]

    @property
    def mismatched(self) -> list[int]:
        return [c.candidate_id for c in self.checks if not c.reproduced]

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir, "tolerance": self.tolerance, "num_elites": self.num_elites,
            "checked": len(self.checks), "reproduced": len(self.checks) - len(self.mismatched),
            "mismatched": self.mismatched,
            "elites": [{**vars(c), "reproduced": c.reproduced} for c in self.checks],
        }


def verify_run(run_dir: str | Path, top: int | None = 10) -> Verification:
    """Re-run the `top` fittest elites of a run (all of them when `top` is None)."""
    from elm.experiment import open_environment, run_config
    from elm.report.run import open_run
    from elm.sandbox import open_sandbox

    if top is not None and top < 1:
        raise UserError(f"--top needs a positive count, got {top}")
    config = run_config(run_dir)
    with open_run(run_dir) as run:
        state = run.archive()
        elites = state.top(state.num_elites if top is None else top)
        records = run.candidates_by_id([e.candidate_id for e in elites])
    environment = open_environment(config)
    checks = [EliteCheck(e.candidate_id, e.niche, e.fitness, list(e.descriptor)) for e in elites]
    runnable = [c for c in checks if records.get(c.candidate_id) and records[c.candidate_id].source]
    for check in checks:
        if not (records.get(check.candidate_id) and records[check.candidate_id].source):
            check.problems.append("the store holds no program for this candidate")
    sandbox = open_sandbox(config.sandbox)
    try:
        evaluator = Evaluator(environment, sandbox, config.sandbox)
        reruns = evaluator.evaluate(
            [Child(parent_id=None, source=records[c.candidate_id].source, operator="verify") for c in runnable],
            [c.candidate_id for c in runnable], iteration=0)
    finally:
        sandbox.close()
    tolerance = float(environment.reproduce_tolerance)
    for check, rerun in zip(runnable, reruns):
        _compare(check, records[check.candidate_id], rerun, environment, tolerance)
    return Verification(str(run_dir), tolerance, state.num_elites, checks)


def _compare(check: EliteCheck, stored: CandidateRecord, rerun: CandidateRecord,
             environment: Environment, tolerance: float) -> None:
    check.status, check.fitness, check.descriptor = rerun.status, rerun.fitness, rerun.descriptor
    if rerun.status != Status.OK:
        check.problems.append(f"the re-run ended {rerun.status}: {rerun.error or 'no reason given'}")
        return
    differences = _differences(check, tolerance)
    if differences:
        check.problems.append("; ".join(differences) + f" ({_why(stored.result, rerun.result)})")
    stricter = _stricter_check(environment, rerun.result)
    if stricter:
        check.problems.append(f"the environment's stricter check fails: {stricter}")


def _differences(check: EliteCheck, tolerance: float) -> list[str]:
    found = []
    if not _close(check.stored_fitness, check.fitness, tolerance):
        found.append(f"fitness {check.stored_fitness!r} stored, {check.fitness!r} re-run")
    stored, rerun = check.stored_descriptor, check.descriptor or []
    if len(stored) != len(rerun) or not all(_close(a, b, tolerance) for a, b in zip(stored, rerun)):
        found.append(f"descriptor {stored} stored, {rerun} re-run")
    return found


def _close(stored: float | None, rerun: float | None, tolerance: float) -> bool:
    if stored is None or rerun is None:
        return stored is rerun
    return stored == rerun or (math.isfinite(stored - rerun) and abs(stored - rerun) <= tolerance)


def _why(stored_result: Any, rerun_result: Any) -> str:
    if stored_result is None or (isinstance(stored_result, dict) and stored_result.get("truncated")):
        return "the stored result is not kept in full, so the cause is unknown"
    if stored_result == rerun_result:
        return ("the program gave the same result as stored, scored differently now: "
                "an edited store or a changed scorer")
    return "the program gave a different result than stored: it is not deterministic"


def _stricter_check(environment: Environment, result: Any) -> str | None:
    try:
        problem = environment.verify(result)
    except Exception as error:  # plug-in code: its failure is a finding, not a crash
        return f"verify() raised {type(error).__name__}: {str(error)[:200]}"
    return None if problem is None else str(problem)


def describe(verification: Verification) -> str:
    lines = []
    for check in verification.checks:
        verdict = "reproduces" if check.reproduced else "MISMATCH: " + "; ".join(check.problems)
        lines.append(f"candidate {check.candidate_id} (niche {check.niche}, fitness "
                     f"{check.stored_fitness:.6g}): {verdict}")
    checked, bad = len(verification.checks), verification.mismatched
    if not checked:
        lines.append("the archive holds no elites: nothing to verify")
    elif bad:
        lines.append(f"{len(bad)} of {checked} elites do not reproduce: candidates {', '.join(map(str, bad))}")
    else:
        lines.append(f"all {checked} of {verification.num_elites} elites checked reproduce")
    return "\n".join(lines)
