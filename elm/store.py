"""The run store: one SQLite file (WAL) per run holding every candidate, the metrics of
every iteration and archive snapshots. An iteration is written in one transaction, so a
run killed at any point loses at most the iteration in flight.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from elm.errors import UserError
from elm.records import (
    REUSED_STAGES,
    CandidateRecord,
    PlacementOutcome,
    SnapshotRow,
    Stage,
    Status,
    niche_holders,
    reached,
)

STORE_FILE = "run.sqlite"
SCHEMA_VERSION = 3
# Runs stored before schema 2 have no `programs` table: resuming one fills it once.
_PROGRAMS_INDEXED = "programs_indexed"
# Runs stored before schema 3 have no `message_outcomes` table: opening one to write fills
# it once; until then readers count the outcomes over the candidates.
_OUTCOMES_KEPT = "message_outcomes_kept"
_RESULT_LIMIT = 256 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    iteration INTEGER NOT NULL,
    parent_id INTEGER,
    operator TEXT NOT NULL,
    commit_message TEXT,
    diff TEXT,
    file_name TEXT NOT NULL,
    source TEXT,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    fitness REAL,
    descriptor TEXT,
    niche INTEGER,
    placement TEXT,
    result TEXT,
    stdout TEXT,
    timings TEXT NOT NULL DEFAULT '{}',
    extras TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS candidates_by_iteration ON candidates (iteration);
CREATE INDEX IF NOT EXISTS candidates_by_parent ON candidates (parent_id);
CREATE INDEX IF NOT EXISTS candidates_by_status ON candidates (status);
CREATE INDEX IF NOT EXISTS candidates_by_stage ON candidates (stage, parent_id);
CREATE INDEX IF NOT EXISTS candidates_by_prompt_tokens ON candidates (json_extract(extras, '$.tokens.prompt'));
CREATE INDEX IF NOT EXISTS candidates_by_model_version ON candidates (json_extract(extras, '$.model_version'), stage);
CREATE TABLE IF NOT EXISTS programs (
    key TEXT PRIMARY KEY,
    candidate_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    fitness REAL,
    descriptor TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS message_outcomes (
    iteration INTEGER NOT NULL,
    message TEXT NOT NULL,
    tries INTEGER NOT NULL,
    ran INTEGER NOT NULL,
    placed INTEGER NOT NULL,
    new INTEGER NOT NULL,
    improved INTEGER NOT NULL,
    reused INTEGER NOT NULL,
    PRIMARY KEY (iteration, message)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS iterations (
    iteration INTEGER PRIMARY KEY,
    finished_at REAL NOT NULL,
    wall_s REAL NOT NULL,
    candidates INTEGER NOT NULL,
    coverage REAL NOT NULL,
    qd_score REAL NOT NULL,
    num_elites INTEGER NOT NULL,
    max_fitness REAL,
    mean_fitness REAL,
    evals_per_s REAL NOT NULL,
    statuses TEXT NOT NULL,
    funnel TEXT NOT NULL,
    extras TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS snapshots (
    iteration INTEGER NOT NULL,
    niche INTEGER NOT NULL,
    candidate_id INTEGER NOT NULL,
    fitness REAL NOT NULL,
    descriptor TEXT NOT NULL,
    PRIMARY KEY (iteration, niche)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    iteration INTEGER,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


@dataclass
class IterationMetrics:
    iteration: int
    wall_s: float
    candidates: int
    coverage: float
    qd_score: float
    num_elites: int
    max_fitness: float | None
    mean_fitness: float | None
    evals_per_s: float
    statuses: dict[str, int]
    funnel: dict[str, int]
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MessageOutcome:
    """How the children of one iteration fared that were drawn one commit message."""

    iteration: int
    message: str
    tries: int
    ran: int
    placed: int
    new: int
    improved: int
    reused: int


# The run's vocabulary as SQL text (elm/records.py owns the words).
_OK = f"'{Status.OK}'"
_PLACED = f"'{Stage.PLACED}'"
_RAN = ", ".join(f"'{stage}'" for stage in reached(Stage.RAN))
_REUSED = ", ".join(f"'{stage}'" for stage in REUSED_STAGES)
_REUSED_STATUSES = f"'{Status.UNCHANGED}', '{Status.DUPLICATE}'"
_NEW, _IMPROVED = f"'{PlacementOutcome.NEW}'", f"'{PlacementOutcome.IMPROVED}'"


@dataclass(frozen=True)
class ProgramVerdict:
    """The first evaluation of a distinct program (by its key, elm/duplicates.py): what a
    later copy of it reuses."""

    key: str
    candidate_id: int
    status: str
    fitness: float | None
    descriptor: list[float] | None


class StoredVerdicts(Mapping[str, ProgramVerdict]):
    """Stored verdicts by program key, each decoded when it is looked up: a resumed run
    checks every child against all of them but reuses few, and a million rows take
    seconds to read but several times that to decode."""

    def __init__(self, rows: dict[str, tuple[str, int, str, float | None, str | None]]) -> None:
        self._rows = rows

    def __getitem__(self, key: str) -> ProgramVerdict:
        _, candidate_id, status, fitness, descriptor = self._rows[key]
        return ProgramVerdict(key, candidate_id, status, fitness,
                              None if descriptor is None else json.loads(descriptor))

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


_JSON_COLUMNS = ("descriptor", "result", "timings", "extras", "statuses", "funnel")

# What reading a damaged store raises: SQLite's own errors, and JSON that a damaged page
# gives back cut short. Views of a run catch these and show what is readable.
READ_ERRORS: tuple[type[Exception], ...] = (sqlite3.DatabaseError, ValueError)


class RunStore:
    def __init__(self, path: Path, connection: sqlite3.Connection, damage: str | None = None) -> None:
        self.path = path
        self._db = connection
        # What is wrong with the file, for a store opened by `open_readable` despite it.
        self.damage = damage

    @classmethod
    def create(cls, run_dir: str | Path, meta: dict[str, Any]) -> RunStore:
        path = Path(run_dir) / STORE_FILE
        store = cls(path, _connect(path))
        with store._db:
            store._db.executescript(_SCHEMA)
            for key, value in {"schema_version": SCHEMA_VERSION, _PROGRAMS_INDEXED: True,
                               _OUTCOMES_KEPT: True, **meta}.items():
                store._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value))
                )
        return store

    @classmethod
    def open(cls, run_dir: str | Path, readonly: bool = False) -> RunStore:
        path = Path(run_dir) / STORE_FILE
        if not Path(run_dir).is_dir():
            raise UserError(f"run folder not found: {run_dir}")
        if not path.is_file():
            raise UserError(f"not a run folder (no {STORE_FILE}): {run_dir}")
        try:
            store = cls(path, _connect(path, readonly=readonly))
            store._db.execute("SELECT count(*) FROM meta").fetchone()
            if not readonly:
                with store._db:  # a store of an older schema gains the newer indexes and tables
                    store._db.executescript(_SCHEMA)
                    store._keep_message_outcomes()
        except sqlite3.DatabaseError as error:
            raise UserError(f"cannot read run store {path}: {error}") from None
        return store

    @classmethod
    def open_readable(cls, run_dir: str | Path) -> RunStore:
        """Open read-only whatever can be read, for views of a run: a file cut short (the
        run was killed while writing, or it was copied incompletely) opens with the pages
        it has, and `damage` says so; reads of what is missing raise one of READ_ERRORS."""
        path = Path(run_dir) / STORE_FILE
        missing = _missing_pages(path) if path.is_file() else None
        if not missing:
            return cls.open(run_dir, readonly=True)
        present, expected = missing
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        # Without this SQLite refuses a file shorter than its header says, even the pages it has.
        connection.execute("PRAGMA writable_schema=ON")
        return cls(path, connection, damage=(
            f"{STORE_FILE} is truncated ({present} of {expected} pages; the run was killed "
            "while writing or the file was copied incompletely): showing what is readable"))

    def close(self) -> None:
        self._db.close()

    # -- writing -------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        """Replace one meta entry: a resume with overrides records the config it continues with."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def record_iteration(
        self,
        candidates: Sequence[CandidateRecord],
        metrics: IterationMetrics,
        snapshot: Iterable[SnapshotRow] | None = None,
        events: Iterable[tuple[str, Any]] = (),
        programs: Iterable[ProgramVerdict] = (),
    ) -> None:
        """Everything of one iteration in a single transaction: all of it or none."""
        with self._db:
            self._insert_programs(programs)
            self._db.executemany(
                f"INSERT INTO candidates ({_CANDIDATE_COLUMNS}) VALUES ({_placeholders(_CANDIDATE_FIELDS)})",
                [_candidate_row(c) for c in candidates],
            )
            self._db.execute(f"INSERT INTO message_outcomes {_OUTCOMES_OF_ITERATION}", (metrics.iteration,))
            row = _encode(asdict(metrics))
            row["finished_at"] = time.time()
            self._db.execute(
                f"INSERT INTO iterations ({', '.join(row)}) VALUES ({_placeholders(row)})",
                list(row.values()),
            )
            if snapshot is not None:
                self._db.executemany(
                    "INSERT INTO snapshots VALUES (?, ?, ?, ?, ?)",
                    [(metrics.iteration, s.niche, s.candidate_id, s.fitness,
                      json.dumps(list(s.descriptor))) for s in snapshot],
                )
            self._db.executemany(
                "INSERT INTO events (iteration, at, kind, detail) VALUES (?, ?, ?, ?)",
                [(metrics.iteration, time.time(), kind, json.dumps(detail)) for kind, detail in events],
            )

    def index_programs(self, programs: Iterable[ProgramVerdict]) -> None:
        """Fill the `programs` table of a run stored before schema 2 (once, on resume)."""
        with self._db:
            self._insert_programs(programs)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_PROGRAMS_INDEXED, "true"))

    def _insert_programs(self, programs: Iterable[ProgramVerdict]) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO programs VALUES (?, ?, ?, ?, ?)",
            [(p.key, p.candidate_id, p.status, p.fitness,
              None if p.descriptor is None else json.dumps(p.descriptor)) for p in programs])

    # -- reading -------------------------------------------------------------

    def program_verdicts(self) -> StoredVerdicts | None:
        """The first evaluation of every distinct program, by program key, or None for a run
        stored before schema 2 (its programs were never indexed: see `index_programs`)."""
        if self._meta_value(_PROGRAMS_INDEXED) is None:
            return None
        rows = self._db.execute("SELECT key, candidate_id, status, fitness, descriptor FROM programs")
        return StoredVerdicts({row[0]: row for row in rows})

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    def last_iteration(self) -> int | None:
        (value,) = self._db.execute("SELECT max(iteration) FROM iterations").fetchone()
        return value

    def next_candidate_id(self) -> int:
        (value,) = self._db.execute("SELECT max(id) FROM candidates").fetchone()
        return 0 if value is None else value + 1

    def candidate(self, candidate_id: int) -> CandidateRecord | None:
        rows = self._select_candidates("WHERE id = ?", (candidate_id,))
        return next(rows, None)

    def candidates(self, *, status: str | None = None, iteration: int | None = None,
                   after_iteration: int | None = None) -> Iterator[CandidateRecord]:
        """Candidates in id order: all, or those with the given status, of one iteration, or
        of the iterations after one."""
        conditions, params = [], []
        for condition, value in (("status = ?", status), ("iteration = ?", iteration),
                                 ("iteration > ?", after_iteration)):
            if value is not None:
                conditions.append(condition)
                params.append(value)
        clause = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        return self._select_candidates(clause, params)

    def candidates_by_id(self, ids: Iterable[int]) -> Iterator[CandidateRecord]:
        """The candidates with these ids that the store holds, in id order."""
        ids = sorted(set(ids))
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start:start + _IDS_PER_QUERY]
            yield from self._select_candidates(f"WHERE id IN ({_placeholders(chunk)})", chunk)

    def scored_candidates(self) -> Iterator[CandidateRecord]:
        """Every scored candidate in the order it was offered to the archive."""
        return self._select_candidates(f"WHERE status = {_OK}", ())

    def evaluated_candidates(self) -> Iterator[CandidateRecord]:
        """Candidates whose program was evaluated, not reused from an earlier one, in id order."""
        return self._select_candidates(
            f"WHERE source IS NOT NULL AND stage NOT IN ({_REUSED})", ())

    def lineage_links(self) -> Iterator[tuple[int, int | None]]:
        """(candidate id, parent id) of every candidate, in id order."""
        return iter(self._db.execute("SELECT id, parent_id FROM candidates ORDER BY id"))

    def message_outcomes(self, iteration: int | None = None) -> list[MessageOutcome]:
        """Per iteration (all, or one) and drawn commit message (`extras.drawn_message`):
        tries, how many ran in the sandbox, were placed (as a new niche or an improved
        elite), or reused an earlier evaluation. Kept per iteration as it is committed."""
        where, params = ("WHERE iteration = ?", (iteration,)) if iteration is not None else ("", ())
        if self._meta_value(_OUTCOMES_KEPT) is None:  # a run stored before schema 3, read-only
            rows = self._db.execute(f"{_OUTCOMES_BY_ITERATION.format(where=where)} ORDER BY iteration, message",
                                    params)
        else:
            rows = self._db.execute(
                "SELECT iteration, message, tries, ran, placed, new, improved, reused"
                f" FROM message_outcomes {where} ORDER BY iteration, message", params)
        return [MessageOutcome(*row) for row in rows]

    def _keep_message_outcomes(self) -> None:
        """Fill the `message_outcomes` table of a run stored before schema 3 (once)."""
        if self._meta_value(_OUTCOMES_KEPT) is None:
            self._db.execute(f"INSERT INTO message_outcomes {_OUTCOMES_BY_ITERATION.format(where='')}")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_OUTCOMES_KEPT, "true"))

    def _meta_value(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def sources(self, ids: Iterable[int]) -> dict[int, str]:
        ids = list(ids)
        found: dict[int, str] = {}
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start:start + _IDS_PER_QUERY]
            query = f"SELECT id, source FROM candidates WHERE id IN ({_placeholders(chunk)})"
            found.update(self._db.execute(query, chunk).fetchall())
        return found

    def metrics(self) -> list[IterationMetrics]:
        columns = list(IterationMetrics.__dataclass_fields__)
        rows = self._db.execute(f"SELECT {', '.join(columns)} FROM iterations ORDER BY iteration")
        return [IterationMetrics(**_decode(dict(zip(columns, row)))) for row in rows]

    def status_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, count(*) FROM candidates GROUP BY status")
        return dict(rows.fetchall())

    def failures(self, limit: int) -> list[tuple[int, str, str | None]]:
        """(id, status, error) of the latest `limit` candidates whose own evaluation failed,
        in id order (an `unchanged` or `duplicate` one was not evaluated: it reused a verdict)."""
        rows = self._db.execute(
            f"SELECT id, status, error FROM candidates WHERE status NOT IN ({_OK}, {_REUSED_STATUSES})"
            " ORDER BY id DESC LIMIT ?", (limit,))
        return rows.fetchall()[::-1]

    def first_candidate_by_status(self) -> dict[str, int]:
        """Status -> the lowest candidate id with it (read from the status index)."""
        rows = self._db.execute("SELECT status, min(id) FROM candidates GROUP BY status")
        return dict(rows.fetchall())

    def token_totals(self) -> dict[str, int]:
        """Model tokens over all candidates (`extras["tokens"]`, written by served models):
        prompt and completion totals, the candidates that carry counts, and the mutated
        children placed in the archive."""
        # Counts are never negative: a range (not IS NOT NULL) lets SQLite search the index.
        prompt, completion, counted = self._db.execute(
            "SELECT coalesce(sum(json_extract(extras, '$.tokens.prompt')), 0),"
            " coalesce(sum(json_extract(extras, '$.tokens.completion')), 0),"
            " count(json_extract(extras, '$.tokens.prompt')) FROM candidates"
            " WHERE json_extract(extras, '$.tokens.prompt') >= 0").fetchone()
        (placed,) = self._db.execute(
            f"SELECT count(*) FROM candidates WHERE stage = {_PLACED} AND parent_id IS NOT NULL").fetchone()
        return {"prompt": int(prompt), "completion": int(completion), "counted": int(counted),
                "placed_children": int(placed)}

    def stage_counts_by_model_version(self) -> dict[int, dict[str, int]]:
        """Candidates per final funnel stage, for each diff-model version that wrote some
        (`extras.model_version`, recorded by the diff workers)."""
        rows = self._db.execute(
            "SELECT json_extract(extras, '$.model_version') AS version, stage, count(*) FROM candidates "
            "WHERE version IS NOT NULL GROUP BY version, stage ORDER BY version")
        counts: dict[int, dict[str, int]] = {}
        for version, stage, count in rows:
            counts.setdefault(int(version), {})[stage] = count
        return counts

    def snapshot_iterations(self) -> list[int]:
        rows = self._db.execute("SELECT DISTINCT iteration FROM snapshots ORDER BY iteration")
        return [r[0] for r in rows]

    def snapshot(self, iteration: int) -> list[SnapshotRow]:
        rows = self._db.execute(
            "SELECT niche, candidate_id, fitness, descriptor FROM snapshots "
            "WHERE iteration = ? ORDER BY niche", (iteration,))
        return [SnapshotRow(n, c, f, tuple(json.loads(d))) for n, c, f, d in rows]

    def events(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT iteration, at, kind, detail FROM events ORDER BY id")
        return [{"iteration": i, "at": a, "kind": k, "detail": json.loads(d)} for i, a, k, d in rows]

    def best_per_niche(self, up_to_iteration: int | None = None) -> list[SnapshotRow]:
        """The archive's elites rebuilt from the candidates (up to an iteration), by the
        one rule of which candidate holds a niche (`elm.records.niche_holders`)."""
        limit = "" if up_to_iteration is None else "AND iteration <= ?"
        params = () if up_to_iteration is None else (up_to_iteration,)
        return niche_holders(self._db.execute(
            "SELECT niche, id, fitness, descriptor FROM candidates"
            f" WHERE status = {_OK} AND niche IS NOT NULL {limit} ORDER BY id", params))

    # -- paged reading, for views of a run that is still being written -------------------

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """One read transaction: the queries inside see the same committed state."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def latest_metrics(self) -> IterationMetrics | None:
        rows = self.metrics_after(None, limit=1, newest_first=True)
        return rows[0] if rows else None

    def metrics_after(self, iteration: int | None, limit: int,
                      newest_first: bool = False) -> list[IterationMetrics]:
        """Up to `limit` iterations' metrics after `iteration` (from the start when None)."""
        columns = [f for f in IterationMetrics.__dataclass_fields__]
        order = "DESC" if newest_first else ""
        rows = self._db.execute(
            f"SELECT {', '.join(columns)} FROM iterations WHERE iteration > ? "
            f"ORDER BY iteration {order} LIMIT ?", (-1 if iteration is None else iteration, limit)
        ).fetchall()
        return [IterationMetrics(**_decode(dict(zip(columns, row)))) for row in rows]

    def events_after(self, event_id: int | None, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` events after the one with id `event_id`, oldest first, with their ids."""
        rows = self._db.execute(
            "SELECT id, iteration, at, kind, detail FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (-1 if event_id is None else event_id, limit)).fetchall()
        return [{"id": n, "iteration": i, "at": a, "kind": k, "detail": json.loads(d)}
                for n, i, a, k, d in rows]

    def current_elites(self) -> list[SnapshotRow]:
        """What `best_per_niche()` returns, read from the latest snapshot and the candidates
        scored after it, so it costs as much as one snapshot interval, not the whole run
        (a snapshot holds the archive of its iteration, and its candidates came first)."""
        (latest,) = self._db.execute("SELECT max(iteration) FROM snapshots").fetchone()
        if latest is None:
            return self.best_per_niche()
        snapshot = self._db.execute(
            "SELECT niche, candidate_id, fitness, descriptor FROM snapshots WHERE iteration = ?", (latest,))
        later = self._db.execute(
            "SELECT niche, id, fitness, descriptor FROM candidates INDEXED BY candidates_by_iteration"
            f" WHERE iteration > ? AND status = {_OK} AND niche IS NOT NULL ORDER BY id", (latest,))
        return niche_holders(itertools.chain(snapshot, later))

    def message_counts(self, after_id: int | None, up_to_id: int) -> list[dict[str, Any]]:
        """Per commit message, over the candidates with ids in (after_id, up_to_id]: how many
        tried it, ran, were placed, took a new niche or improved one. The counts add up over
        consecutive id ranges, so a live view reads each candidate once."""
        rows = self._db.execute(
            "SELECT commit_message, count(*),"
            f" count(CASE WHEN stage IN ({_RAN}) THEN 1 END), count(CASE WHEN stage = {_PLACED} THEN 1 END),"
            f" count(CASE WHEN placement = {_NEW} THEN 1 END), count(CASE WHEN placement = {_IMPROVED} THEN 1 END)"
            " FROM candidates WHERE id > ? AND id <= ? AND operator != 'seed'"
            " GROUP BY commit_message", (-1 if after_id is None else after_id, up_to_id)).fetchall()
        return [{"text": text, "tries": tries, "ran": ran_count, "placed": placed,
                 "new_niches": new, "improvements": improved}
                for text, tries, ran_count, placed, new, improved in rows]

    def _select_candidates(self, clause: str, params: Sequence[Any]) -> Iterator[CandidateRecord]:
        query = f"SELECT {_CANDIDATE_COLUMNS} FROM candidates {clause} ORDER BY id"
        for row in self._db.execute(query, tuple(params)):
            yield CandidateRecord(**_decode(dict(zip(_CANDIDATE_FIELDS, row))))


# How the children drawn each commit message fared, per iteration and message.
_OUTCOMES_BY_ITERATION = (
    f"SELECT iteration, message, count(*), sum(stage IN ({_RAN})),"
    f" sum(stage = {_PLACED}), sum(placement = {_NEW}), sum(placement = {_IMPROVED}),"
    f" sum(stage IN ({_REUSED})) FROM ("
    "  SELECT iteration, stage, coalesce(placement, '') AS placement,"
    "  json_extract(extras, '$.drawn_message') AS message"
    "  FROM candidates {where}) WHERE message IS NOT NULL"
    " GROUP BY iteration, message")
_OUTCOMES_OF_ITERATION = _OUTCOMES_BY_ITERATION.format(where="WHERE iteration = ?")

_IDS_PER_QUERY = 500  # well under SQLite's limit on bound parameters
_CANDIDATE_FIELDS = tuple(CandidateRecord.__dataclass_fields__)
_CANDIDATE_COLUMNS = ", ".join(_CANDIDATE_FIELDS)
_CANDIDATE_JSON_INDEXES = [i for i, name in enumerate(_CANDIDATE_FIELDS) if name in _JSON_COLUMNS]
_RESULT_INDEX = _CANDIDATE_FIELDS.index("result")


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    connection = sqlite3.connect(path, check_same_thread=False)
    if readonly:
        # A read-write connection told not to write: the last connection to close folds the
        # WAL back into run.sqlite and removes -wal/-shm, which a mode=ro connection cannot.
        connection.execute("PRAGMA query_only=ON")
    else:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def _missing_pages(path: Path) -> tuple[int, int] | None:
    """(pages present, pages the header announces) when the file is shorter than announced."""
    with path.open("rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return None  # not a database at all: RunStore.open says so
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512:
        return None  # a damaged header: RunStore.open reports it
    announced = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]
    present = path.stat().st_size // page_size
    if header_valid and announced > present:
        return present, announced
    return None


def _placeholders(items: Sequence[Any] | dict[str, Any]) -> str:
    return ", ".join("?" for _ in items)


def _candidate_row(candidate: CandidateRecord) -> list[Any]:
    row = [getattr(candidate, name) for name in _CANDIDATE_FIELDS]
    for index in _CANDIDATE_JSON_INDEXES:
        if row[index] is not None:
            row[index] = json.dumps(row[index])
    result = row[_RESULT_INDEX]
    if result is not None and len(result) > _RESULT_LIMIT:
        row[_RESULT_INDEX] = json.dumps({"truncated": True, "bytes": len(result)})
    return row


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    for name in _JSON_COLUMNS:
        if row.get(name) is not None:
            row[name] = json.dumps(row[name])
    return row


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for name in _JSON_COLUMNS:
        if name in row and row[name] is not None:
            row[name] = json.loads(row[name])
    return row
