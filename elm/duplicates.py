"""Programs already evaluated in a run, so that no program is evaluated twice.

Two programs are the same when their syntax trees are: `ast.dump` leaves out comments,
blank lines, formatting and line numbers, none of which changes what a program does. A
child whose tree matches a program already evaluated in the run is not sent to the
sandbox: it takes that evaluation's verdict (status, fitness, descriptor) and is stored
at funnel stage `unchanged` when the match is its own parent, `duplicate` otherwise. A
child that does not parse is never a duplicate: the evaluator records why it fails.

The index lives in memory; each iteration's new verdicts are committed with it (the
store's `programs` table), and a resumed run reads them back rather than parsing every
program again. Keys are costly to compute (dumping the tree takes longer than parsing),
and a diff's child keeps most of its parent's top-level definitions: `ProgramKeys`
remembers the dumped tree of each top-level piece of source it has seen, and parses only
the pieces it has not.
"""

from __future__ import annotations

import ast
import hashlib
import re
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
    return _digest(dumped)


def _digest(dumped: str) -> str:
    return hashlib.blake2b(dumped.encode(), digest_size=16).hexdigest()


# A line that may begin a top-level statement: at column 0, not a comment, and not a clause
# that continues the statement before it.
_PIECE_START = re.compile(r"^(?![ \t\f#\n]|(?:else|elif|except|finally)\b)", re.MULTILINE)
_MERGES = 4


class ProgramKeys:
    """`program_key`, faster on programs that share top-level statements with ones seen
    before. The source is cut before every line that may begin a top-level statement; a
    piece that parses on its own holds whole statements, since a cut inside a statement
    leaves the piece with an open bracket, string or line continuation, which does not
    parse (a piece that does not is joined to the next). The key is the digest of the
    module's dump, built from the remembered dumps of the pieces' statements."""

    def __init__(self, max_pieces: int = 4096) -> None:
        self._dumps: dict[str, str] = {}  # piece of source -> its statements' dumps
        self._max_pieces = max_pieces

    def key(self, source: str | None) -> str | None:
        if source is None or "\r" in source:  # Python also ends lines at a lone \r
            return program_key(source)
        dumps = self._piece_dumps(source)
        if dumps is None:
            return program_key(source)
        return _digest(f"Module(body=[{', '.join(d for d in dumps if d)}], type_ignores=[])")

    def _piece_dumps(self, source: str) -> list[str] | None:
        cuts = [m.start() for m in _PIECE_START.finditer(source)]
        ends = [*cuts[1:], len(source)] if cuts and cuts[0] == 0 else [*cuts, len(source)]
        dumps, start, failures = [], 0, 0
        for end in ends:
            dumped = self._dump(source[start:end])
            if dumped is None:
                failures += 1
                if failures > _MERGES:
                    return None
                continue  # join this piece to the next
            dumps.append(dumped)
            start = end
        return dumps if start == len(source) else None

    def _dump(self, piece: str) -> str | None:
        """The dumps of the statements in `piece`, or None when it does not parse alone."""
        dumped = self._dumps.pop(piece, None)
        if dumped is None:
            dumped = _dump_statements(piece)
            if len(self._dumps) >= self._max_pieces:
                del self._dumps[next(iter(self._dumps))]  # the least recently used
        self._dumps[piece] = dumped  # last: the most recently used
        return None if dumped is _UNPARSED else dumped


_UNPARSED = "<does not parse alone>"


def _dump_statements(piece: str) -> str:
    try:
        tree = ast.parse(piece)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return _UNPARSED
    return ", ".join(ast.dump(statement) for statement in tree.body)


class EvaluatedPrograms:
    """The verdict on every distinct program evaluated so far, by program key."""

    def __init__(self) -> None:
        self._verdicts: dict[str, ProgramVerdict] = {}
        self._stored: Mapping[str, ProgramVerdict] = {}  # those of a resumed run, from its store
        self._keys: dict[int, str] = {}  # candidate id -> its program key
        self._new: list[ProgramVerdict] = []  # verdicts not yet handed to the store
        self._program_keys = ProgramKeys()

    def __len__(self) -> int:
        return len(self._verdicts) + len(self._stored)

    def rebuild(self, records: Iterable[CandidateRecord]) -> None:
        """Remember the evaluated candidates of a stored run, in id order (for a run whose
        verdicts were never stored: parses every program)."""
        for record in records:
            if record.stage not in REUSED_STAGES:
                self._remember(self._program_keys.key(record.source), record)

    def restore(self, verdicts: Mapping[str, ProgramVerdict], sources: Mapping[int, str]) -> None:
        """Take back the stored verdicts (by key), and the keys of the programs that can
        still be parents (`sources`: the archive's elites)."""
        self._stored = verdicts
        for candidate_id, source in sources.items():
            key = self._program_keys.key(source)
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
        keys = [self._program_keys.key(child.source) for child in children]
        fresh: list[int] = []
        batch_keys: set[str] = set()
        for index, key in enumerate(keys):
            if key is None or (not self._known(key) and key not in batch_keys):
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

    def _known(self, key: str) -> bool:
        return key in self._verdicts or key in self._stored

    def _remember(self, key: str | None, record: CandidateRecord) -> None:
        if key is None:
            return
        self._keys[record.id] = key
        if not self._known(key):
            verdict = ProgramVerdict(key, record.id, record.status, record.fitness, record.descriptor)
            self._verdicts[key] = verdict
            self._new.append(verdict)

    def _reused(self, evaluator: Evaluator, child: Child, candidate_id: int, iteration: int,
                key: str) -> CandidateRecord:
        verdict = self._verdicts[key] if key in self._verdicts else self._stored[key]
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

