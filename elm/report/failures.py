"""Why candidates failed: `elm inspect RUN --failures` and the report's section.

Failed candidates are those whose own evaluation (or generation) did not end in a score:
any status but `ok`. An `unchanged` or `duplicate` child was not evaluated at all, it
reused an earlier verdict, so it is counted apart as reused, not as a failure. Failures
are counted by status (exactly, from the store's status index), and within each status by
exception type (the last line of the error names it) or, for `invalid` and errors without
an exception type, by the message with its numbers masked; each kind with the first
candidate of its kind as an example. Kinds are told apart from the errors of the latest
READ_LIMIT failures, so the view stays fast on a run of a million candidates.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from elm.evaluator import error_summary
from elm.records import Status
from elm.report.run import Run
from elm.report.views import _print_problems, _printable, count_text, fmt_number, fmt_percent

ROWS = 30  # kinds of failure shown in a table; --json gives them all
# Failures whose error is read to tell their kinds apart: the latest ones, so a view of a
# run of a million candidates reads a bounded share of the store. Counts by status are exact.
READ_LIMIT = 20_000
_REUSED = (Status.UNCHANGED, Status.DUPLICATE)
_EXCEPTION = re.compile(r"((?:[A-Za-z_]\w*\.)*[A-Z]\w*)(?::|$)")  # "IndexError: ...", "pkg.Oops"
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


def failures_view(run: Run) -> dict[str, Any]:
    """Counts by status and by exception type or reason, most frequent first, as JSON data."""
    reasons: dict[Any, dict[str, Any]] = {}
    read = run.failed_candidates(READ_LIMIT)
    for candidate_id, status, error in read:
        summary = error_summary(error)
        _tally(reasons, (status, failure_reason(status, summary)), candidate_id, error=summary)
    counts = run.status_counts()
    firsts = {**{status: candidate_id for candidate_id, status, _ in reversed(read)},
              **run.first_candidate_by_status()}
    failed_counts = {status: count for status, count in counts.items() if status not in (Status.OK, *_REUSED)}
    statuses: dict[Any, dict[str, Any]] = {
        status: {"count": count, "example_id": firsts.get(status)} for status, count in failed_counts.items()}
    failed = sum(failed_counts.values())
    return {
        "run_dir": str(run.path),
        "candidates": sum(counts.values()),
        "failed": failed,
        "reused": sum(counts.get(status, 0) for status in _REUSED),
        "reasons_counted": len(read),  # the latest failures, all of them unless over READ_LIMIT
        "statuses": [{"status": status, **row} for status, row in _by_count(statuses)],
        "reasons": [{"status": status, "reason": reason, **row}
                    for (status, reason), row in _by_count(reasons)],
        "problems": list(run.problems),
    }


def failure_reason(status: str, summary: str) -> str:
    """What failures have in common: the exception type of an error, otherwise the message
    with its numbers masked ("circles 3 and 7 overlap by 0.01" -> "circles # and # overlap by #")."""
    exception = _EXCEPTION.match(summary)
    if status != "invalid" and exception:
        return exception.group(1)
    return _NUMBER.sub("#", summary)[:160]


def headline(data: dict[str, Any]) -> str:
    """E.g. "150 of 323 candidates failed (46.4%); 4 more reused an earlier verdict ..."."""
    share = fmt_percent(data["failed"] / data["candidates"] if data["candidates"] else None)
    text = f"{data['failed']} of {data['candidates']} candidates failed ({share})"
    if data.get("reused"):
        text += (f"; {data['reused']} more reused an earlier verdict (unchanged or duplicate) "
                 "and are not counted")
    if data["reasons_counted"] < data["failed"]:
        text += f"; kinds counted over the latest {data['reasons_counted']:,} failures"
    return text


def print_failures(console: Console, data: dict[str, Any]) -> None:
    _print_problems(console, data)
    console.print(Text(f"{data['run_dir']}: {headline(data)}", style="bold"))
    if not data["failed"]:
        return
    statuses = Table(title="By status", title_justify="left")
    for name, justify in (("status", "left"), ("count", "right"), ("example candidate", "right")):
        statuses.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in data["statuses"]:
        statuses.add_row(Text(_printable(row["status"])), str(row["count"]), fmt_number(row["example_id"]))
    reasons = Table(title="By exception type or reason", title_justify="left")
    for name, justify in (("status", "left"), ("exception or reason", "left"), ("count", "right"),
                          ("example candidate", "right")):
        reasons.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in data["reasons"][:ROWS]:
        reasons.add_row(Text(_printable(row["status"])), Text(_printable(row["reason"])),
                        str(row["count"]), str(row["example_id"]))
    console.print(statuses, reasons)
    hidden = len(data["reasons"]) - ROWS
    if hidden > 0:
        console.print(Text(f"... and {count_text(hidden, 'other kind')} (--json lists them all)"))
    console.print(Text(f"elm inspect {data['run_dir']} --lineage ID shows a candidate's error and diff"))


def _tally(table: dict[Any, dict[str, Any]], key: Any, candidate_id: int, **example: Any) -> None:
    """Count one more under `key`; the first candidate counted is the example."""
    if key in table:
        table[key]["count"] += 1
    else:
        table[key] = {"count": 1, "example_id": candidate_id, **example}


def _by_count(table: dict[Any, dict[str, Any]]) -> list[tuple[Any, dict[str, Any]]]:
    return sorted(table.items(), key=lambda item: (-item[1]["count"], item[1]["example_id"] or 0))
