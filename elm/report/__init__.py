"""Reports of runs: PNG plots and one self-contained `report.html` per run folder, and a
comparison of several runs. `open_run` is the notebook entry point (see `elm.report.run`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from elm.errors import UserError
from elm.report.run import ArchiveState, Run, open_run

__all__ = ["DEFAULT_RENDERS", "ReportFiles", "Run", "open_run", "write_comparison", "write_report"]

REPORT_FILE = "report.html"
PLOTS_DIR = "plots"
# Pictures drawn for the best elites only: rendering is environment code and can be slow.
DEFAULT_RENDERS = 16
# The report embeds every elite and at most this many of their ancestors (the nearest
# generations first), so its size does not grow with the run; `elm inspect` shows the rest.
ANCESTOR_LIMIT = 2000


@dataclass
class ReportFiles:
    html: Path
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # problems with the run and the pictures


def write_report(run_dir: str | Path, renders: int = DEFAULT_RENDERS) -> Path:
    """Write the plots and `report.html` into the run folder; return the HTML file."""
    return build_report(run_dir, renders).html


def build_report(run_dir: str | Path, renders: int = DEFAULT_RENDERS) -> ReportFiles:
    from elm.report import html
    from elm.report.renders import render_candidates

    with open_run(run_dir) as run:
        state = run.archive()
        plot_files = _write_run_plots(run, state)
        elites = state.top(state.num_elites)
        records = run.ancestors([e.candidate_id for e in elites], limit=len(elites) + ANCESTOR_LIMIT)
        drawn = [records[e.candidate_id] for e in elites[:max(renders, 0)] if e.candidate_id in records]
        pictures = render_candidates(run.environment, run.environment_options, drawn)
        if renders < len(elites) and pictures.images:
            pictures.notes.append(f"pictures are drawn for the best {renders} of {len(elites)} elites "
                                  "(elm report --renders N draws more)")
        page = html.run_page(run, state, records, pictures, plot_files)
        path = _write_atomically(run.path / REPORT_FILE, page)
        return ReportFiles(path, list(plot_files.values()), list(run.problems) + pictures.notes)


def write_comparison(run_dirs: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Overlay the metric curves of several runs; write `comparison.html` and its plot."""
    from elm.report import html, plots

    if len(run_dirs) < 2:
        raise UserError("a comparison needs at least two run folders")
    with contextlib.ExitStack() as stack:
        runs = [stack.enter_context(open_run(d)) for d in run_dirs]
        labels = _labels([run.path for run in runs])
        out = Path(out_dir)
        figure = plots.metrics_figure([(label, run.metrics()) for label, run in zip(labels, runs)])
        plot = plots.save(figure, out / "comparison.png")
        page = html.comparison_page(list(zip(labels, runs)), plot)
        return _write_atomically(out / "comparison.html", page)


def _write_run_plots(run: Run, state: ArchiveState) -> dict[str, Path]:
    from elm.report import plots

    folder = run.path / PLOTS_DIR
    written: dict[str, Path] = {}
    if run.layout is not None:
        written["archive"] = plots.save(plots.archive_figure(state, run.layout, run.qd_offset),
                                        folder / "archive.png")
    metrics = run.metrics()
    if metrics:
        written["metrics"] = plots.save(plots.metrics_figure([(run.name, metrics)]), folder / "metrics.png")
        written["funnel"] = plots.save(plots.funnel_figure(metrics), folder / "funnel.png")
    return written


def _labels(paths: Sequence[Path]) -> list[str]:
    """Run folder names, with enough of the path to tell apart runs of the same name."""
    names = [p.resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def _write_atomically(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path
