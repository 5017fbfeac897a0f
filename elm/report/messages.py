"""How each commit message did: `elm inspect RUN --messages` and the report's table.

A message's children are those it was drawn for, whether the mutator heeded it (the diff
model) or not (GP ignores it, so its figures show what chance alone gives). Tries are
children; `ran` reached the sandbox and came back; `placed` filled a new niche or improved
an elite; `reused` were a copy of a program already evaluated and did not run.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from elm.environment import CommitMessage
from elm.mutation.messages import MessageBandit
from elm.report.run import Run
from elm.report.views import _printable, fmt_number, fmt_percent

COUNTS = ("tries", "ran", "placed", "new", "improved", "reused")


def message_selection(run: Run) -> str:
    mutation = (run.meta.get("config") or {}).get("mutation") or {}
    return str(mutation.get("message_selection") or "weighted")


def message_statistics(run: Run) -> list[dict[str, Any]]:
    """One object per message: the configured ones first, in order, then any others drawn
    (a resumed run may have changed them), with their counts and placed share."""
    rows: dict[str, dict[str, Any]] = {}
    for entry in run.meta.get("commit_messages") or []:
        if isinstance(entry, dict) and isinstance(entry.get("text"), str):
            rows[entry["text"]] = {"text": entry["text"], "weight": entry.get("weight"),
                                   **dict.fromkeys(COUNTS, 0)}
    outcomes = run.message_outcomes()
    for outcome in outcomes:
        row = rows.setdefault(outcome.message, {"text": outcome.message, "weight": None,
                                                **dict.fromkeys(COUNTS, 0)})
        for name in COUNTS:
            row[name] += getattr(outcome, name)
    means = _posterior_means(rows.values(), outcomes) if message_selection(run) == "bandit" else {}
    for row in rows.values():
        row["placed_share"] = row["placed"] / row["tries"] if row["tries"] else None
        row["posterior_mean"] = means.get(row["text"])
    return list(rows.values())


def print_messages(console: Console, rows: list[dict[str, Any]], selection: str) -> None:
    if not rows:
        console.print(Text("No commit messages were recorded for this run's children."))
        return
    bandit = selection == "bandit"
    table = Table(title=f"Commit messages ({selection} selection)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("#", "weight", *COUNTS, "placed %", *(["expected"] if bandit else [])):
        table.add_column(name, justify="right", no_wrap=True)
    for number, row in enumerate(rows, start=1):
        cells = [str(number), fmt_number(row["weight"]), *(str(row[name]) for name in COUNTS),
                 fmt_percent(row["placed_share"])]
        if bandit:
            cells.append(fmt_percent(row["posterior_mean"]))
        table.add_row(*cells)
    console.print(table)
    for number, row in enumerate(rows, start=1):  # below the figures: messages can be long
        console.print(Text(f"{number:>2}  {_printable(row['text'])}"))
    if bandit:
        console.print(Text("expected: the bandit's estimate of the share of a message's children "
                           "that will be placed"))


def _posterior_means(rows: Any, outcomes: list) -> dict[str, float]:
    """What the bandit believes of each configured message after every committed iteration."""
    messages = [CommitMessage(r["text"], float(r["weight"])) for r in rows
                if isinstance(r["weight"], (int, float)) and r["weight"] > 0]
    if not messages:
        return {}
    bandit = MessageBandit(messages, lag=1)
    bandit.record(outcomes)
    return bandit.posterior_means(after=max((o.iteration for o in outcomes), default=0))
