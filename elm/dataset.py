"""Stage-2 training data: the diffs a run found, as (prompt, completion) pairs for the diff model.

Each example is one child of a run: `prompt` is exactly `diff_prompt(file_name,
parent_source, commit_message)`, ending in `<DFF>`; `completion` is the unified diff from
parent to child as the model writes it after `<DFF>` (a space, the hunks, no file header)
followed by the end-of-text token. The diff is computed from the two stored sources, so
diff-model and GP children read alike, and every completion applies to its parent (with
the mutator's own `extract_diff`/`apply_diff`) and gives the child: a pair that would not
is counted and left out. Seeds (no parent) and children equal to their parent are skipped;
the same (prompt, completion) pair is written once.

Selections: `all` every child that has a program; `ok` those that ran and were scored;
`improved` scored children that beat their parent's fitness or opened a new niche;
`placed` those that entered the archive. A stable hash of the prompt puts a `holdout`
share of prompts in the held-out split (`split: "heldout"`).

Messages: `written` puts in the prompt the commit message the child carries (a model's
child carries the message it was prompted with; a GP child, a description of its edits);
`drawn` puts the message the loop drew for the child from the run's own messages, so
that GP diffs teach a model the prompts a diff run of the same setup will send it.
Children recorded without a drawn message are then left out and counted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from elm.errors import UserError
from elm.mutation.diff import DiffError, apply_diff, extract_diff, unified_diff
from elm.mutation.messages import DRAWN_MESSAGE
from elm.mutation.prompt import diff_prompt
from elm.mutation.scratch_model import END_OF_TEXT
from elm.records import CandidateRecord, PlacementOutcome, Stage, Status
from elm.store import RunStore

SELECTIONS = ("placed", "improved", "ok", "all")
MESSAGES = ("written", "drawn")
TRAIN, HELDOUT = "train", "heldout"


@dataclass(frozen=True)
class DiffExample:
    prompt: str
    completion: str
    run: str
    candidate_id: int
    parent_id: int
    operator: str
    fitness_gain: float | None
    new_niche: bool
    split: str = TRAIN

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class ExportSummary:
    examples: int = 0
    heldout: int = 0
    duplicates: int = 0
    not_round_tripping: int = 0
    without_drawn_message: int = 0
    per_run: dict[str, int] = field(default_factory=dict)


def completion_for(parent_source: str, child_source: str) -> str:
    """What the diff model should write after `<DFF>` to turn parent into child."""
    return " " + unified_diff(parent_source, child_source) + END_OF_TEXT


def select(record: CandidateRecord, parent: CandidateRecord, selection: str) -> bool:
    """Whether a child with a program belongs to `selection`."""
    if selection == "all":
        return True
    if record.status != Status.OK:
        return False
    if selection == "ok":
        return True
    if selection == "placed":
        return record.stage == Stage.PLACED
    gain = _gain(record, parent)
    return record.placement == PlacementOutcome.NEW or (gain is not None and gain > 0)


def run_examples(run_dir: str | Path, selection: str = "placed", operators: Sequence[str] | None = None,
                 holdout: float = 0.05, summary: ExportSummary | None = None,
                 messages: str = "written") -> Iterator[DiffExample]:
    """The examples of one run, in candidate order (duplicates included)."""
    _check_options(selection, holdout, messages)
    summary = summary if summary is not None else ExportSummary()
    store = RunStore.open(run_dir, readonly=True)
    try:
        records = {record.id: record for record in store.candidates()}
    finally:
        store.close()
    for record in records.values():
        parent = records.get(record.parent_id) if record.parent_id is not None else None
        if parent is None or parent.source is None or record.source is None:
            continue
        if record.source == parent.source or (operators and record.operator not in operators):
            continue
        if not select(record, parent, selection):
            continue
        completion = completion_for(parent.source, record.source)
        if not _round_trips(parent.source, completion, record.source):
            summary.not_round_tripping += 1
            continue
        message = record.commit_message if messages == "written" else record.extras.get(DRAWN_MESSAGE)
        if message is None and messages == "drawn":
            summary.without_drawn_message += 1
            continue
        prompt = diff_prompt(record.file_name, parent.source, message or "")
        yield DiffExample(prompt, completion, str(run_dir), record.id, parent.id, record.operator,
                          _gain(record, parent), record.placement == PlacementOutcome.NEW, split_of(prompt, holdout))


def collect_examples(run_dirs: Iterable[str | Path], selection: str = "placed",
                     operators: Sequence[str] | None = None, holdout: float = 0.05,
                     messages: str = "written") -> tuple[list[DiffExample], ExportSummary]:
    """The examples of several runs, each (prompt, completion) pair once."""
    summary = ExportSummary()
    seen: set[tuple[str, str]] = set()
    examples: list[DiffExample] = []
    for run_dir in run_dirs:
        before = len(examples)
        for example in run_examples(run_dir, selection, operators, holdout, summary, messages):
            key = (example.prompt, example.completion)
            if key in seen:
                summary.duplicates += 1
                continue
            seen.add(key)
            examples.append(example)
        summary.per_run[str(run_dir)] = len(examples) - before
    summary.examples = len(examples)
    summary.heldout = sum(example.split == HELDOUT for example in examples)
    return examples, summary


def write_examples(examples: Iterable[DiffExample], out: str | Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(example.to_json() + "\n")
    partial.replace(out)


def read_examples(path: str | Path) -> list[DiffExample]:
    """Examples from a JSONL file written by `elm dataset`; a bad line is a UserError."""
    examples = []
    names = set(DiffExample.__dataclass_fields__)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read dataset {path}: {error}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data: dict[str, Any] = json.loads(line)
            prompt, completion = data["prompt"], data["completion"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{path}:{number}: not a dataset line (a JSON object with prompt and completion)") from None
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise UserError(f"{path}:{number}: prompt and completion must be strings")
        known = {key: value for key, value in data.items() if key in names}
        known.setdefault("run", str(path))
        known.setdefault("candidate_id", number)
        known.setdefault("parent_id", -1)
        known.setdefault("operator", "")
        known.setdefault("fitness_gain", None)
        known.setdefault("new_niche", False)
        examples.append(DiffExample(**known))
    return examples


def split_of(prompt: str, holdout: float) -> str:
    """Held out for a stable `holdout` share of prompts: all children of one prompt stay
    on the same side, so the held-out loss measures prompts never trained on."""
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    return HELDOUT if int.from_bytes(digest[:8], "big") / 2**64 < holdout else TRAIN


def _round_trips(parent_source: str, completion: str, child_source: str) -> bool:
    try:
        return apply_diff(parent_source, extract_diff(completion)) == child_source
    except DiffError:
        return False


def _gain(record: CandidateRecord, parent: CandidateRecord) -> float | None:
    if record.fitness is None or parent.fitness is None:
        return None
    return record.fitness - parent.fitness


def _check_options(selection: str, holdout: float, messages: str = "written") -> None:
    if messages not in MESSAGES:
        raise UserError(f"--messages must be one of {', '.join(MESSAGES)}; got {messages!r}")
    if selection not in SELECTIONS:
        raise UserError(f"--select must be one of {', '.join(SELECTIONS)}; got {selection!r}")
    if not 0.0 <= holdout < 1.0:
        raise UserError(f"--holdout must be in [0, 1); got {holdout}")
