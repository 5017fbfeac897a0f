"""Why candidates failed: `elm inspect RUN --failures` and the report's section.

Failed candidates are those whose own evaluation (or generation) did not end in a score:
any status but `ok`. An `unchanged` or `duplicate` child was not evaluated at all, it
reused an earlier verdict, so it is counted apart as reused, not as a failure. Failures
are counted by status, and within each status by exception type (the last line of the
error names it) or, for `invalid` and errors without an exception type, by the message
with its numbers masked; each kind with the first candidate of its kind as an example.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from elm.evaluator import error_summary
from elm.mutation import REUSED_STAGES
from elm.report.run import Run
from elm.report.views import _print_problems, _printable, count_text, fmt_percent

ROWS = 30  # kinds of failure shown in a table; --json gives them all
_EXCEPTION = re.compile(r"((?:[A-Za-z_]\w*\.)*[A-Z]\w*)(?::|$)")  # "IndexError: ...", "pkg.Oops"
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


def failures_view(run: Run) -> dict[str, Any]:
    """Counts by status and by exception type or reason, most frequent first, as JSON data."""
    statuses: dict[Any, dict[str, Any]] = {}
    reasons: dict[Any, dict[str, Any]] = {}
    for candidate_id, status, error in run.failed_candidates():
        summary = error_summary(error)
        _tally(statuses, status, candidate_id)
        _tally(reasons, (status, failure_reason(status, summary)), candidate_id, error=summary)
    counts = run.status_counts()
    return {
        "run_dir": str(run.path),
        "candidates": sum(counts.values()),
        "failed": sum(row["count"] for row in statuses.values()),
        "reused": sum(counts.get(stage, 0) for stage in REUSED_STAGES),
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
        statuses.add_row(Text(_printable(row["status"])), str(row["count"]), str(row["example_id"]))
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
    return sorted(table.items(), key=lambda item: (-item[1]["count"], item[1]["example_id"]))
