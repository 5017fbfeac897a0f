"""Programs already evaluated in a run, so that no program is evaluated twice.

Two programs are the same when their syntax trees are: `ast.dump` leaves out comments,
blank lines, formatting and line numbers, none of which changes what a program does. A
child whose tree matches a program already evaluated in the run is not sent to the
sandbox: it takes that evaluation's verdict (status, fitness, descriptor) and is stored
at funnel stage `unchanged` when the match is its own parent, `duplicate` otherwise. A
child that does not parse is never a duplicate: the evaluator records why it fails.

The index lives in memory; each iteration's new verdicts are committed with it (the
store's `programs` table), and a resumed run reads them back rather than parsing every
program again.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Mapping, Sequence

from elm.evaluator import Evaluator
from elm.records import REUSED_STAGES, CandidateRecord, Child, Stage, Status
from elm.store import ProgramVerdict


def program_key(source: str | None) -> str | None:
    """A digest of the program's syntax tree, or None when it does not parse."""
    if source is None:
        return None
    try:
        dumped = ast.dump(ast.parse(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return None
    return hashlib.blake2b(dumped.encode(), digest_size=16).hexdigest()


class EvaluatedPrograms:
    """The verdict on every distinct program evaluated so far, by program key."""

    def __init__(self) -> None:
        self._verdicts: dict[str, ProgramVerdict] = {}
        self._keys: dict[int, str] = {}  # candidate id -> its program key
        self._new: list[ProgramVerdict] = []  # verdicts not yet handed to the store

    def __len__(self) -> int:
        return len(self._verdicts)

    def rebuild(self, records: Iterable[CandidateRecord]) -> None:
        """Remember the evaluated candidates of a stored run, in id order (for a run whose
        verdicts were never stored: parses every program)."""
        for record in records:
            if record.stage not in REUSED_STAGES:
                self._remember(program_key(record.source), record)

    def restore(self, verdicts: Iterable[ProgramVerdict], sources: Mapping[int, str]) -> None:
        """Take back the stored verdicts, and the keys of the programs that can still be
        parents (`sources`: the archive's elites)."""
        for verdict in verdicts:
            self._verdicts[verdict.key] = verdict
        for candidate_id, source in sources.items():
            key = program_key(source)
            if key is not None:
                self._keys[candidate_id] = key

    def take_new(self) -> list[ProgramVerdict]:
        """The verdicts first seen since the last call, for the store."""
        new, self._new = self._new, []
        return new

    def evaluate(self, evaluator: Evaluator, children: Sequence[Child], ids: Sequence[int],
                 iteration: int) -> list[CandidateRecord]:
        """Records for `children`, in order; only programs not seen before reach the evaluator
        (of several copies in one batch, the first)."""
        keys = [program_key(child.source) for child in children]
        fresh: list[int] = []
        batch_keys: set[str] = set()
        for index, key in enumerate(keys):
            if key is None or (key not in self._verdicts and key not in batch_keys):
                fresh.append(index)
                if key is not None:
                    batch_keys.add(key)
        evaluated = evaluator.evaluate([children[i] for i in fresh], [ids[i] for i in fresh], iteration)
        records = dict(zip(fresh, evaluated))
        for index in fresh:
            self._remember(keys[index], records[index])
        for index, child in enumerate(children):
            key = keys[index]
            if index not in records and key is not None:
                records[index] = self._reused(evaluator, child, ids[index], iteration, key)
        return [records[index] for index in range(len(children))]

    def _remember(self, key: str | None, record: CandidateRecord) -> None:
        if key is None:
            return
        self._keys[record.id] = key
        if key not in self._verdicts:
            verdict = ProgramVerdict(key, record.id, record.status, record.fitness, record.descriptor)
            self._verdicts[key] = verdict
            self._new.append(verdict)

    def _reused(self, evaluator: Evaluator, child: Child, candidate_id: int, iteration: int,
                key: str) -> CandidateRecord:
        verdict = self._verdicts[key]
        unchanged = child.parent_id is not None and self._keys.get(child.parent_id) == key
        stage, status = (Stage.UNCHANGED, Status.UNCHANGED) if unchanged else (Stage.DUPLICATE, Status.DUPLICATE)
        scored = verdict.status == Status.OK
        return CandidateRecord(
            id=candidate_id, iteration=iteration, parent_id=child.parent_id, operator=child.operator,
            file_name=evaluator.environment.file_name, source=child.source, stage=stage, status=status,
            commit_message=child.commit_message, diff=child.diff, error=child.error,
            fitness=verdict.fitness if scored else None,
            descriptor=list(verdict.descriptor or ()) if scored else None,
            timings=dict(child.timings),
            extras={**child.extras, "same_as": verdict.candidate_id, "same_as_status": verdict.status},
        )

