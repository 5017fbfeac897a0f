"""The views of `elm inspect`: each is JSON data first, then printed with rich from that data,
so `--json` and the terminal always show the same thing.

Candidate text (sources, diffs, commit messages, errors) is untrusted: it is printed as
plain text, never as rich markup, with terminal control characters made visible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from elm.errors import UserError
from elm.records import CandidateRecord
from elm.report.run import ArchiveLayout, EliteRecord, Run

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


# -- data ---------------------------------------------------------------------------------


def summary_view(run: Run) -> dict[str, Any]:
    return run.summary()


def top_view(run: Run, count: int, snapshot: int | None = None) -> dict[str, Any]:
    if count < 1:
        raise UserError(f"--top needs a positive count, got {count}")
    state = run.archive(snapshot)
    records = run.candidates_by_id([e.candidate_id for e in state.top(count)])
    return {
        "archive_state": state.label,
        "iteration": state.iteration,
        "num_elites": state.num_elites,
        "descriptor_names": _names(run),
        "top": [
            {"rank": rank, **_elite_dict(elite), **_origin(records.get(elite.candidate_id))}
            for rank, elite in enumerate(state.top(count), start=1)
        ],
        "problems": list(run.problems),
    }


def niche_view(run: Run, coordinates: Sequence[int], snapshot: int | None = None) -> dict[str, Any]:
    if run.layout is None:
        raise UserError("this run's store holds no archive layout, so niches cannot be addressed")
    niche = run.layout.niche_at(coordinates)
    state = run.archive(snapshot)
    elite = state.at_niche(niche)
    if elite is None:
        raise UserError(f"niche {tuple(coordinates)} holds no elite in the {state.label}")
    record = run.candidate(elite.candidate_id)
    parent = None
    if record.parent_id is not None:
        parent = run.candidates_by_id([record.parent_id]).get(record.parent_id)
    return {
        "archive_state": state.label,
        "niche": niche,
        "coordinates": list(run.layout.coordinates(niche)),
        "descriptor_names": _names(run),
        "elite": candidate_dict(record, run.layout),
        "parent": None if parent is None else candidate_dict(parent, run.layout, source=False),
        "problems": list(run.problems),
    }


def lineage_view(run: Run, candidate_id: int) -> dict[str, Any]:
    lineage = run.lineage(candidate_id)
    last = lineage.steps[-1]
    return {
        "candidate_id": candidate_id,
        "complete": lineage.complete,
        "descriptor_names": _names(run),
        "fitness": [step.fitness for step in lineage.steps],
        "steps": [candidate_dict(step, run.layout, source=False) for step in lineage.steps],
        "source": last.source,
        "file_name": last.file_name,
        "problems": list(run.problems),
    }


def snapshot_view(run: Run, iteration: int) -> dict[str, Any]:
    state = run.archive(snapshot=iteration)
    return {
        "snapshot": iteration,
        "cells": state.cells,
        "num_elites": state.num_elites,
        "coverage": state.coverage,
        "qd_score": state.qd_score,
        "max_fitness": state.max_fitness,
        "mean_fitness": state.mean_fitness,
        "descriptor_names": _names(run),
        "elites": [_elite_dict(elite) for elite in state.elites],
        "problems": list(run.problems),
    }


def candidate_dict(record: CandidateRecord, layout: ArchiveLayout | None,
                   source: bool = True) -> dict[str, Any]:
    """A candidate as JSON data (no raw result or stdout: `open_run` gives those)."""
    data = {
        "id": record.id, "iteration": record.iteration, "parent_id": record.parent_id,
        "operator": record.operator, "status": record.status, "stage": record.stage,
        "error": record.error, "fitness": record.fitness, "descriptor": record.descriptor,
        "niche": record.niche,
        "coordinates": (list(layout.coordinates(record.niche))
                        if layout is not None and record.niche is not None else None),
        "placement": record.placement, "commit_message": record.commit_message,
        "diff": record.diff, "file_name": record.file_name,
        "tokens": record.extras.get("tokens"),
    }
    if source:
        data["source"] = record.source
    return data


def _elite_dict(elite: EliteRecord) -> dict[str, Any]:
    data = asdict(elite)
    data["coordinates"] = list(elite.coordinates)
    data["descriptor"] = list(elite.descriptor)
    return data


def _origin(record: CandidateRecord | None) -> dict[str, Any]:
    if record is None:
        return {"iteration": None, "operator": None}
    return {"iteration": record.iteration, "operator": record.operator}


def _names(run: Run) -> list[str]:
    return list(run.layout.names) if run.layout else []


# -- printing -------------------------------------------------------------------------------


def print_summary(console: Console, data: dict[str, Any]) -> None:
    _print_problems(console, data)
    progress = progress_text(data)
    console.print(Text(f"{data['run_dir']}", style="bold"))
    console.print(Text(f"environment {data['environment']} | {data['archive']} | {progress}"))

    archive = _key_values("Archive", [
        ("elites", f"{data['num_elites']} of {fmt_number(data['cells'])} niches"),
        ("coverage", fmt_percent(data["coverage"])),
        ("QD score", fmt_number(data["qd_score"])),
        ("best fitness", fmt_number(data["max_fitness"])),
        ("mean fitness", fmt_number(data["mean_fitness"])),
        ("snapshots", ", ".join(map(str, data["snapshots"])) or "none"),
    ])
    statuses = Table(title=f"Candidates ({data['candidates']})", title_justify="left")
    statuses.add_column("status")
    statuses.add_column("count", justify="right")
    for status, count in data["statuses"].items():
        statuses.add_row(Text(_printable(str(status))), str(count))
    console.print(Group(archive, statuses, _funnel_table(data["funnel"]),
                        Text(seed_funnel_text(data["seed_funnel"]))))
    tokens = data.get("tokens") or {}
    if tokens.get("prompt") or tokens.get("completion"):
        console.print(Text(token_text(tokens)))
    by_version = data.get("funnel_by_model_version") or {}
    if len(by_version) > 1:
        console.print(_funnel_by_version_table(by_version))

    best = data["best"]
    if best is None:
        console.print(Text(f"The archive is empty: no candidate was scored "
                           f"(elm inspect {data['run_dir']} --failures shows why).", style="yellow"))
        return
    console.print(Text(
        f"Best elite: candidate {best['candidate_id']} in niche {_coords(best['coordinates'])}, "
        f"fitness {fmt_number(best['fitness'])}, {_descriptor(best['descriptor'], data['descriptor_names'])}",
        style="bold"))
    _print_code(console, best["source"], best.get("file_name"))


def print_top(console: Console, data: dict[str, Any]) -> None:
    _print_problems(console, data)
    title = f"Top {len(data['top'])} of {data['num_elites']} elites ({data['archive_state']})"
    table = _elite_table(title, data["descriptor_names"], rank=True, origin=True)
    for row in data["top"]:
        table.add_row(str(row["rank"]), *_elite_cells(row),
                      fmt_number(row["iteration"]), Text(_printable(str(row["operator"]))))
    console.print(table)


def print_niche(console: Console, data: dict[str, Any]) -> None:
    _print_problems(console, data)
    elite = data["elite"]
    console.print(Text(f"Niche {_coords(data['coordinates'])} ({data['archive_state']})", style="bold"))
    console.print(_key_values("Elite", [
        ("candidate", str(elite["id"])),
        ("fitness", fmt_number(elite["fitness"])),
        ("descriptor", _descriptor(elite["descriptor"], data["descriptor_names"])),
        ("iteration", str(elite["iteration"])),
        ("operator", elite["operator"]),
        ("parent", _parent_text(data["parent"])),
        ("commit message", elite["commit_message"] or "-"),
    ]))
    _print_code(console, elite["source"], elite["file_name"])
    if elite["diff"]:
        console.print(Text("Diff from the parent", style="bold"))
        _print_code(console, elite["diff"], lexer="diff")


def print_lineage(console: Console, data: dict[str, Any]) -> None:
    _print_problems(console, data)
    steps = data["steps"]
    console.print(Text(lineage_title(data["candidate_id"], len(steps) - 1, data["complete"]), style="bold"))
    console.print(Text("fitness: " + " -> ".join(fmt_number(f) for f in data["fitness"])))
    for number, step in enumerate(steps, start=1):
        title = (f"{number}. candidate {step['id']} | iteration {step['iteration']} | "
                 f"{step['operator']} | {step['status']} | fitness {fmt_number(step['fitness'])}")
        body: list[Any] = [Text(_printable(step["commit_message"] or "(no commit message)"), style="italic")]
        if step["diff"]:
            body.append(Syntax(_printable(step["diff"]), "diff", theme="ansi_dark", word_wrap=True))
        if step["error"]:
            body.append(Text(_printable(step["error"]), style="red"))
        console.print(Panel(Group(*body), title=Text(_printable(title)), title_align="left"))
    console.print(Text("Final source", style="bold"))
    _print_code(console, data["source"], data["file_name"])


def lineage_title(candidate_id: int, mutations: int, complete: bool) -> str:
    if complete and mutations == 0:
        return f"Lineage of candidate {candidate_id}: a seed"
    start = "a seed" if complete else "the earliest candidate still in the store"
    return f"Lineage of candidate {candidate_id}: {count_text(mutations, 'mutation')} from {start}"


def seed_funnel_text(funnel: dict[str, int]) -> str:
    """The seeds apart from the children's funnel, e.g. "Seeds (iteration 0): 3 evaluated, 2 scored, 2 placed"."""
    return (f"Seeds (iteration 0, not counted above): {funnel.get('generated', 0)} evaluated, "
            f"{funnel.get('scored', 0)} scored, {funnel.get('placed', 0)} placed")


def print_snapshot(console: Console, data: dict[str, Any]) -> None:
    _print_problems(console, data)
    console.print(_key_values(f"Snapshot at iteration {data['snapshot']}", [
        ("elites", f"{data['num_elites']} of {fmt_number(data['cells'])} niches"),
        ("coverage", fmt_percent(data["coverage"])),
        ("QD score", fmt_number(data["qd_score"])),
        ("best fitness", fmt_number(data["max_fitness"])),
        ("mean fitness", fmt_number(data["mean_fitness"])),
    ]))
    names = data["descriptor_names"]
    headers = ["niche", "candidate", "fitness", "descriptor" + (f" ({', '.join(names)})" if names else "")]
    rows = [_elite_cells(row) for row in data["elites"]]
    console.print(_plain_table("Elites", headers, rows, right={1, 2}), soft_wrap=True)


def _funnel_table(funnel: dict[str, int]) -> Table:
    table = Table(title="Validity funnel of the children", title_justify="left")
    for name, justify in (("stage", "left"), ("reached", "right"), ("of generated", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    generated = funnel.get("generated") or 0
    for stage, count in funnel.items():
        table.add_row(stage, str(count), fmt_percent(count / generated if generated else None))
    return table


def _funnel_by_version_table(by_version: dict[str, dict[str, int]]) -> Table:
    table = Table(title="Validity funnel per diff-model version", title_justify="left")
    table.add_column("version", justify="right")
    for stage in next(iter(by_version.values())):
        table.add_column(stage, justify="right")
    for version, funnel in by_version.items():
        generated = funnel.get("generated") or 0
        table.add_row(version, *(f"{count} ({fmt_percent(count / generated if generated else None)})"
                                 for count in funnel.values()))
    return table


def _elite_table(title: str, names: list[str], rank: bool, origin: bool) -> Table:
    table = Table(title=title, title_justify="left")
    if rank:
        table.add_column("#", justify="right")
    table.add_column("niche")
    table.add_column("candidate", justify="right")
    table.add_column("fitness", justify="right")
    table.add_column("descriptor" + (f" ({', '.join(names)})" if names else ""))
    if origin:
        table.add_column("iteration", justify="right")
        table.add_column("operator")
    return table


def _elite_cells(row: dict[str, Any]) -> list[str]:
    return [_coords(row["coordinates"]), str(row["candidate_id"]), fmt_number(row["fitness"]),
            _descriptor(row["descriptor"])]


def _plain_table(title: str, headers: list[str], rows: list[list[str]], right: set[int]) -> Text:
    """Columns aligned in plain text, for tables as long as an archive: a rich Table
    takes milliseconds a row, seconds for a thousand elites."""
    cells = [headers, *([_printable(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.rjust(width) if i in right else cell.ljust(width)
                       for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
             for row in cells]
    text = Text(f"{title}\n", style="italic")
    text.append(lines[0] + "\n", style="bold")
    text.append("\n".join(lines[1:]))
    return text


def _key_values(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, Text(_printable(value)))
    return table


def _print_code(console: Console, code: str | None, file_name: str | None = None,
                lexer: str | None = None) -> None:
    if code is None:
        console.print(Text("(no source: the mutation produced none)", style="yellow"))
        return
    code = _printable(code)
    lexer = lexer or Syntax.guess_lexer(file_name or "program.py", code)
    console.print(Syntax(code, lexer, line_numbers=lexer != "diff", theme="ansi_dark", word_wrap=True))


def _print_problems(console: Console, data: dict[str, Any]) -> None:
    problems = data.get("problems") or []
    if problems:
        lines = Text("\n".join(f"- {_printable(p)}" for p in problems))
        console.print(Panel(lines, title="This run folder is damaged or incomplete", border_style="yellow",
                            title_align="left"))


def _parent_text(parent: dict[str, Any] | None) -> str:
    if parent is None:
        return "none (a seed)"
    return f"candidate {parent['id']} (fitness {fmt_number(parent['fitness'])})"


def _printable(text: str) -> str:
    """Terminal control characters shown as escapes, so candidate text cannot drive the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _coords(coordinates: Sequence[int] | None) -> str:
    if coordinates is None:
        return "-"
    return "(" + ", ".join(str(c) for c in coordinates) + ")"


def _descriptor(values: Sequence[float] | None, names: Sequence[str] = ()) -> str:
    if values is None:
        return "-"
    if names and len(names) == len(values):
        return ", ".join(f"{n}={fmt_number(v)}" for n, v in zip(names, values))
    return "(" + ", ".join(fmt_number(v) for v in values) + ")"


def progress_text(summary: dict[str, Any]) -> str:
    """How far the run got, e.g. "iteration 7 of 20 (stopped early or still running)"."""
    done, configured = summary["last_iteration"], summary["configured_iterations"]
    text = "no iteration committed yet" if done is None else f"iteration {done}"
    if done is not None and configured is not None:
        text += f" of {configured}"
    if configured is not None and not summary["finished"]:
        text += " (stopped early or still running)"
    return text


def count_text(number: int, noun: str) -> str:
    """"1 mutation", "2 mutations"."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def token_text(tokens: dict[str, Any]) -> str:
    """Model tokens on one line: totals, per placed child, cost when priced."""
    text = f"model tokens: {tokens['prompt']:,} prompt + {tokens['completion']:,} completion"
    if tokens.get("per_placed_child") is not None:
        text += f", {tokens['per_placed_child']:,.0f} per placed child"
    if tokens.get("cost") is not None:
        text += f"; cost {tokens['cost']:.4g}"
        if tokens.get("cost_per_placed_child") is not None:
            text += f" ({tokens['cost_per_placed_child']:.3g} per placed child)"
    return text


def fmt_number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def fmt_percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
