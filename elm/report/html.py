"""The self-contained HTML pages: a run's report and a comparison of runs.

Everything a page needs is inside it: CSS and JavaScript inline, pictures as data URIs,
the run's data as JSON in a non-executed script element. A content security policy forbids
any fetch, so the page works offline and candidate text can never make it load anything.
Candidate text reaches the page only as JSON and is put on screen as text, never as markup.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Mapping, Sequence
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.colors import Normalize, to_hex

from elm.records import CandidateRecord
from elm.report import failures
from elm.report.plots import CMAP
from elm.report.renders import Renders
from elm.report.run import ArchiveState, Run
from elm.report.views import candidate_dict, fmt_number, fmt_percent, progress_text, seed_funnel_text

_POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")
_EXTRAS_LIMIT = 4096


def run_page(run: Run, state: ArchiveState, records: Mapping[int, CandidateRecord],
             renders: Renders, plots: Mapping[str, Path]) -> str:
    summary = run.summary()
    data = {
        "layout": _layout(run),
        "names": list(run.layout.names) if run.layout else [],
        "elites": _elites(state),
        "colors": _legend_colors(),
        "fitness_range": _fitness_range(state),
        "candidates": _candidates(records, run, state, renders),
        "best": summary["best"]["candidate_id"] if summary["best"] else None,
        "render_notes": renders.notes,
        "num_elites": state.num_elites,
        "left_out": summary["candidates"] - len(records),
        "inspect": f"elm inspect {run.path}",
    }
    body = "\n".join([
        _header(run, summary),
        _problems(run.problems),
        _overview(summary),
        _failures_section(failures.failures_view(run)),
        _archive_section(state, summary["candidates"], len(records), str(run.path)),
        _messages_section(run),
        _plots_section(plots),
    ])
    return _page(f"elm report: {run.name}", body, data, script=True)


def comparison_page(runs: Sequence[tuple[str, Run]], plot: Path) -> str:
    rows = []
    for label, run in runs:
        s = run.summary()
        rows.append([label, s["environment"], s["archive"], s["iterations"], s["candidates"],
                     fmt_percent(s["coverage"]), fmt_number(s["qd_score"]), fmt_number(s["max_fitness"]),
                     "; ".join(s["problems"]) or "-"])
    table = _table(["run", "environment", "archive", "iterations", "candidates", "coverage",
                    "QD score", "best fitness", "problems"], rows)
    body = (f"<header><h1>Comparison of {len(runs)} runs</h1>"
            f"<p class='sub'>written {escape(time.strftime('%Y-%m-%d %H:%M'))}</p></header>"
            f"<section><h2>Runs</h2>{table}</section>"
            f"<section><h2>Metrics</h2>{_image(plot, 'metric curves of the runs')}</section>")
    return _page("elm comparison", body, None, script=False)


# -- page parts ------------------------------------------------------------------------------


def _page(title: str, body: str, data: Any, script: bool) -> str:
    css = _static("report.css")
    scripts = ""
    if script:
        scripts = (f'<script type="application/json" id="run-data">{_json_for_html(data)}</script>\n'
                   f"<script>{_static('common.js')}</script>\n<script>{_static('report.js')}</script>")
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_POLICY}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        f"<title>{escape(title)}</title><style>{css}</style></head>\n"
        f"<body>\n{body}\n{scripts}\n</body></html>\n"
    )


def _header(run: Run, summary: dict[str, Any]) -> str:
    progress = progress_text(summary)
    created = run.meta.get("created_at")
    started = "?"
    if isinstance(created, (int, float)):
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
    facts = [f"environment {summary['environment']}", summary["archive"] or "no archive layout",
             progress, f"started {started}", f"elm {run.meta.get('elm_version', '?')}"]
    return (f"<header><h1>{escape(run.name)}</h1>"
            f"<p class='sub'>{escape(' | '.join(str(f) for f in facts))}</p></header>")


def _problems(problems: Sequence[str]) -> str:
    if not problems:
        return ""
    items = "".join(f"<li>{escape(p)}</li>" for p in problems)
    return (f"<section id='problems' class='problems'><h2>This run folder is damaged or incomplete</h2>"
            f"<ul>{items}</ul></section>")


def _overview(summary: dict[str, Any]) -> str:
    archive = _table(["", ""], [
        ["elites", f"{summary['num_elites']} of {fmt_number(summary['cells'])} niches"],
        ["coverage", fmt_percent(summary["coverage"])],
        ["QD score", fmt_number(summary["qd_score"])],
        ["best fitness", fmt_number(summary["max_fitness"])],
        ["mean fitness", fmt_number(summary["mean_fitness"])],
        ["snapshots", ", ".join(map(str, summary["snapshots"])) or "none"],
    ], header=False, table_id="archive-stats")
    statuses = _table(["status", "count"], [[s, c] for s, c in summary["statuses"].items()],
                      table_id="statuses")
    generated = summary["funnel"].get("generated") or 0
    funnel = _table(["stage", "reached", "of generated"], [
        [stage, count, fmt_percent(count / generated if generated else None)]
        for stage, count in summary["funnel"].items()
    ], table_id="funnel")
    by_version = summary.get("funnel_by_model_version") or {}
    versions = ""
    if len(by_version) > 1:
        stages = list(next(iter(by_version.values())))
        versions = "<div><h2>Funnel per model version</h2>" + _table(["version", *stages], [
            [version, *(f"{count} ({fmt_percent(count / funnel['generated'] if funnel['generated'] else None)})"
                        for count in funnel.values())]
            for version, funnel in by_version.items()
        ], table_id="funnel-by-version") + "</div>"
    seeds = f"<p class='sub' id='seed-funnel'>{escape(seed_funnel_text(summary['seed_funnel']))}</p>"
    return (f"<section id='overview' class='cards'>"
            f"<div><h2>Archive</h2>{archive}</div>"
            f"<div><h2>Candidates ({summary['candidates']})</h2>{statuses}</div>"
            f"<div><h2>Validity funnel of the children</h2>{funnel}{seeds}</div>{versions}"
            f"{_tokens_card(summary.get('tokens'))}</section>")


def _failures_section(data: dict[str, Any]) -> str:
    head = (f"<section id='failures'><h2>Why candidates failed</h2>"
            f"<p class='sub'>{escape(failures.headline(data))}.</p>")
    if not data["failed"]:
        return head + "</section>"
    statuses = _table(["status", "count", "example candidate"],
                      [[r["status"], r["count"], r["example_id"]] for r in data["statuses"]],
                      table_id="failure-statuses")
    reasons = data["reasons"]
    table = _table(["status", "exception or reason", "count", "example candidate"],
                   [[r["status"], r["reason"], r["count"], r["example_id"]] for r in reasons[:failures.ROWS]],
                   table_id="failure-reasons")
    more = len(reasons) - failures.ROWS
    note = (f"<p class='sub'>... and {more} other kinds "
            f"(elm inspect RUN --failures --json lists them all).</p>") if more > 0 else ""
    return (f"{head}<div class='cards'><div><h3>By status</h3>{statuses}</div>"
            f"<div><h3>By exception type or reason</h3>{table}{note}</div></div></section>")


def _tokens_card(tokens: dict[str, Any] | None) -> str:
    """Model tokens spent, per placed child and priced, for runs whose model counted them."""
    if not tokens or not (tokens["prompt"] or tokens["completion"]):
        return ""
    rows = [["prompt tokens", f"{tokens['prompt']:,}"], ["completion tokens", f"{tokens['completion']:,}"],
            ["tokens per placed child", fmt_number(tokens["per_placed_child"])]]
    if tokens.get("cost") is not None:
        rows += [["cost", fmt_number(tokens["cost"])],
                 ["cost per placed child", fmt_number(tokens["cost_per_placed_child"])]]
    return f"<div><h2>Model tokens</h2>{_table(['', ''], rows, header=False, table_id='tokens')}</div>"


def _messages_section(run: Run) -> str:
    from elm.report.messages import COUNTS, message_selection, message_statistics

    rows = message_statistics(run)
    if not rows:
        return ""
    bandit = message_selection(run) == "bandit"
    headers = ["message", "weight", *COUNTS, "placed share"] + (["expected success"] if bandit else [])
    table = _table(headers, [
        [r["text"], fmt_number(r["weight"]), *(r[name] for name in COUNTS), fmt_percent(r["placed_share"])]
        + ([fmt_percent(r["posterior_mean"])] if bandit else [])
        for r in rows
    ], table_id="messages")
    return (f"<section id='messages'><h2>Commit messages ({escape(message_selection(run))} selection)</h2>"
            f"<p class='sub'>The children each message was drawn for. A GP mutation ignores the "
            f"message, so there the figures show what chance alone gives.</p>{table}</section>")


def _archive_section(state: ArchiveState, candidates: int, embedded: int, run_dir: str) -> str:
    return (
        "<section id='archive'><h2>Archive map</h2>"
        f"<p class='sub'>{escape(state.label.capitalize())}: {state.num_elites} filled niches. "
        "Click a niche to see its elite.</p>"
        f"{_embedded_note(candidates, embedded, run_dir)}"
        "<div class='explorer'><div><div id='legend'></div><div id='archive-map'></div>"
        "<h3>Best elites</h3><div id='top-elites'></div></div>"
        "<div id='detail'><p class='hint'>Click a filled niche.</p></div></div></section>"
    )


def _embedded_note(candidates: int, embedded: int, run_dir: str) -> str:
    """How many candidates the page holds, and how to see the others."""
    left_out = candidates - embedded
    if left_out <= 0:
        return ""
    return (f"<p class='sub' id='left-out'>This page holds {embedded:,} of the run's {candidates:,} "
            f"candidates: every elite and the nearest of their ancestors. {left_out:,} are left out; "
            f"see any of them with <code>elm inspect {escape(run_dir)} --lineage ID</code> "
            f"(or <code>--top K</code>, <code>--niche I,J</code>).</p>")


def _plots_section(plots: Mapping[str, Path]) -> str:
    titles = {"archive": "archive heatmap", "metrics": "QD score, coverage and best fitness",
              "funnel": "validity funnel"}
    images = "".join(f"<figure>{_image(path, titles.get(name, name))}"
                     f"<figcaption>{escape(titles.get(name, name))}</figcaption></figure>"
                     for name, path in plots.items())
    return f"<section id='plots'><h2>Plots</h2>{images or '<p>No metrics yet.</p>'}</section>"


# -- data for the script ------------------------------------------------------------------------


def _layout(run: Run) -> dict[str, Any] | None:
    layout = run.layout
    if layout is None:
        return None
    return {"kind": layout.kind, "names": list(layout.names), "ranges": [list(r) for r in layout.ranges],
            "cells": layout.cells, "bins": list(layout.bins) if layout.bins else None,
            "centroids": [list(c) for c in layout.centroids] if layout.centroids else None}


def _elites(state: ArchiveState) -> list[dict[str, Any]]:
    low, high = _fitness_range(state) or (0.0, 1.0)
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1.0)
    cmap = colormaps[CMAP]
    return [{"niche": e.niche, "coordinates": list(e.coordinates), "candidate_id": e.candidate_id,
             "fitness": e.fitness, "descriptor": list(e.descriptor), "color": to_hex(cmap(norm(e.fitness)))}
            for e in state.top(state.num_elites)]


def _candidates(records: Mapping[int, CandidateRecord], run: Run, state: ArchiveState,
                renders: Renders) -> dict[str, dict[str, Any]]:
    """Elites with their sources and pictures; their ancestors with what lineages show."""
    elite_ids = {e.candidate_id for e in state.elites}
    shown = {}
    for candidate_id, record in records.items():
        data = candidate_dict(record, run.layout, source=candidate_id in elite_ids)
        data["render"] = renders.images.get(candidate_id)
        data["scores"] = _small(record.extras)
        shown[str(candidate_id)] = data
    return shown


def _small(extras: Mapping[str, Any]) -> dict[str, Any]:
    """Score extras worth showing: scalar values, as long as they stay small."""
    shown = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
             for k, v in extras.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return shown if len(json.dumps(shown)) <= _EXTRAS_LIMIT else {}


def _fitness_range(state: ArchiveState) -> list[float] | None:
    values = [e.fitness for e in state.elites]
    return [min(values), max(values)] if values else None


def _legend_colors() -> list[str]:
    cmap = colormaps[CMAP]
    return [to_hex(cmap(i / 8)) for i in range(9)]


def _json_for_html(data: Any) -> str:
    """JSON that cannot end or re-open the script element it sits in."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# -- small helpers ------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], header: bool = True,
           table_id: str | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    ident = f" id='{table_id}'" if table_id else ""
    return f"<table{ident}>{head}{body}</table>"


def _image(path: Path, alt: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img src='data:image/png;base64,{encoded}' alt='{escape(alt)}'>"


def _static(name: str) -> str:
    return (resources.files("elm.report") / "static" / name).read_text(encoding="utf-8")
