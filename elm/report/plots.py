"""PNG plots of a run: the archive heatmap, the metric curves and the validity funnel.

Figures are drawn with matplotlib's object API (no pyplot state, no backend switch), so
writing a report from a notebook leaves the notebook's plotting alone. A one-dimensional
grid is drawn here as a strip of cells (pyribs' own 1-D heatmap fails on an archive of one
elite); other one- and two-dimensional archives use pyribs' heatmaps; a grid of three or
more dimensions is shown as 2-D slices along its third dimension, a CVT archive of three or
more as 2-D projections of its centroids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from elm.records import REUSED_STAGES, STAGES
from elm.report.run import ArchiveLayout, ArchiveState
from elm.store import IterationMetrics

CMAP = "viridis"
_DPI = 100
_MAX_BARS = 80


def save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI)  # constrained layout already fits the labels
    return path


def archive_figure(state: ArchiveState, layout: ArchiveLayout, qd_offset: float = 0.0) -> Figure:
    dims = len(layout.names)
    if layout.kind == "grid" and dims == 1:
        figure = _grid_strip(state, layout)
    elif layout.kind == "grid" and dims >= 3:
        figure = _grid_slices(state, layout)
    elif layout.kind != "grid" and dims >= 3:
        figure = _cvt_projections(state, layout)
    else:
        figure = _pyribs_heatmap(state, layout, qd_offset)
    figure.suptitle(_archive_title(state))
    return figure


def metrics_figure(runs: Sequence[tuple[str, Sequence[IterationMetrics]]]) -> Figure:
    """QD score, coverage and best fitness against iteration, one line per run."""
    figure = Figure(figsize=(13, 3.6), layout="constrained")
    panels = (("QD score", lambda m: m.qd_score), ("coverage", lambda m: m.coverage),
              ("best fitness", lambda m: m.max_fitness))
    for axes, (title, value) in zip(figure.subplots(1, 3), panels):
        for label, metrics in runs:
            points = [(m.iteration, value(m)) for m in metrics if value(m) is not None]
            if points:
                xs, ys = zip(*points)
                axes.plot(xs, ys, marker="." if len(points) < 40 else None, label=label)
        axes.set(title=title, xlabel="iteration")
        axes.grid(alpha=0.3)
        if title == "coverage":
            axes.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    if len(runs) > 1:
        figure.legend(*figure.axes[0].get_legend_handles_labels(), loc="outside lower center",
                      ncols=min(len(runs), 4))
    return figure


def funnel_figure(metrics: Sequence[IterationMetrics]) -> Figure:
    """Where each iteration's candidates stopped in the validity funnel, stacked: the bar's
    height is the number generated, its top segment the number placed in the archive."""
    figure = Figure(figsize=(9, 3.8), layout="constrained")
    axes = figure.subplots()
    iterations = np.array([m.iteration for m in metrics])
    reached = np.array([[m.funnel.get(stage, 0) for stage in STAGES] for m in metrics], dtype=float)
    stopped = reached - np.hstack([reached[:, 1:], np.zeros((len(metrics), 1))])
    # Reused children passed "applied" but were not evaluated: their own segments, in grey.
    after = STAGES.index("applied") + 1
    reused = np.array([[m.funnel.get(stage, 0) for stage in REUSED_STAGES] for m in metrics],
                      dtype=float).reshape(len(metrics), len(REUSED_STAGES))
    stopped[:, after - 1] -= reused.sum(axis=1)
    stopped = np.hstack([stopped[:, :after], reused, stopped[:, after:]])
    shades = colormaps["RdYlGn"](np.linspace(0.05, 0.95, len(STAGES)))
    colors = np.vstack([shades[:after], colormaps["Greys"]([0.35, 0.55]), shades[after:]])
    labels = [f"stopped after {stage}" for stage in STAGES[:-1]] + [STAGES[-1]]
    labels[after:after] = [f"{stage} (not evaluated)" for stage in REUSED_STAGES]
    if len(metrics) <= _MAX_BARS:
        bottom = np.zeros(len(metrics))
        for index, label in enumerate(labels):
            axes.bar(iterations, stopped[:, index], bottom=bottom, width=0.85,
                     color=colors[index], label=label)
            bottom += stopped[:, index]
    else:  # too many iterations for bars: stacked areas draw in constant time
        axes.stackplot(iterations, stopped.T, colors=colors, labels=labels)
    axes.set(title="Validity funnel per iteration", xlabel="iteration", ylabel="candidates")
    axes.grid(alpha=0.3, axis="y")
    handles, labels = axes.get_legend_handles_labels()
    axes.legend(handles[::-1], labels[::-1], loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9)
    return figure


def _archive_title(state: ArchiveState) -> str:
    head = state.label.capitalize()
    if state.iteration is not None and "iteration" not in state.label:
        head += f" after iteration {state.iteration}"
    coverage = "-" if state.coverage is None else f"{state.coverage:.1%}"
    return f"{head}: {state.num_elites} elites, coverage {coverage}, QD score {state.qd_score:.4g}"


def _pyribs_heatmap(state: ArchiveState, layout: ArchiveLayout, qd_offset: float) -> Figure:
    from ribs.archives import CVTArchive, GridArchive
    from ribs.visualize import cvt_archive_heatmap, grid_archive_heatmap

    figure = Figure(figsize=(7, 5.5) if len(layout.names) > 1 else (8, 2.4), layout="constrained")
    axes = figure.subplots()
    ranges = list(layout.ranges)
    # The elites hold distinct niches already: pyribs only draws them.
    elites = (np.array([[e.candidate_id] for e in state.elites], dtype=float),
              np.array([e.fitness for e in state.elites]), np.array([e.descriptor for e in state.elites]))
    if layout.kind == "grid":
        grid = GridArchive(solution_dim=1, dims=list(layout.bins or ()), ranges=ranges, qd_score_offset=qd_offset)
        if state.elites:
            grid.add(*elites)
        grid_archive_heatmap(grid, ax=axes, cmap=CMAP)
    else:
        cvt = CVTArchive(solution_dim=1, centroids=np.asarray(layout.centroids), ranges=ranges,
                         qd_score_offset=qd_offset)
        if state.elites:
            cvt.add(*elites)
        cvt_archive_heatmap(cvt, ax=axes, cmap=CMAP)
    axes.set_xlabel(layout.names[0])
    if len(layout.names) > 1:
        axes.set_ylabel(layout.names[1])
    return figure


def _grid_strip(state: ArchiveState, layout: ArchiveLayout) -> Figure:
    """A one-dimensional grid: one row of cells coloured by their elite's fitness."""
    (bins,) = layout.bins or (layout.cells,)
    fitness = np.full(bins, np.nan)
    for elite in state.elites:
        fitness[elite.coordinates[0]] = elite.fitness
    figure = Figure(figsize=(8, 2.4), layout="constrained")
    axes = figure.subplots()
    low, high = _limits(state)
    edges = np.linspace(*layout.ranges[0], bins + 1)
    mesh = axes.pcolormesh(edges, [0.0, 1.0], np.ma.masked_invalid(fitness[None, :]),
                           cmap=CMAP, vmin=low, vmax=high)
    axes.set_facecolor("#eeeeee")
    axes.set(xlabel=layout.names[0], yticks=[])
    figure.colorbar(mesh, ax=axes, label="fitness")
    return figure


def _grid_slices(state: ArchiveState, layout: ArchiveLayout) -> Figure:
    """One heatmap of the first two dimensions per bin of the third (best over any further)."""
    bins = tuple(layout.bins or ())
    fitness = np.full((bins[0], bins[1], bins[2]), np.nan)
    for elite in state.elites:
        i, j, k = elite.coordinates[:3]
        if np.isnan(fitness[i, j, k]) or elite.fitness > fitness[i, j, k]:
            fitness[i, j, k] = elite.fitness
    columns = math.ceil(math.sqrt(bins[2]))
    rows = math.ceil(bins[2] / columns)
    figure = Figure(figsize=(2.6 * columns + 1, 2.5 * rows + 0.6), layout="constrained")
    grid = np.atleast_2d(figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False))
    low, high = _limits(state)
    (x_low, x_high), (y_low, y_high), (z_low, z_high) = layout.ranges[:3]
    x_edges = np.linspace(x_low, x_high, bins[0] + 1)
    y_edges = np.linspace(y_low, y_high, bins[1] + 1)
    z_edges = np.linspace(z_low, z_high, bins[2] + 1)
    mesh = None
    for k, axes in enumerate(grid.flat):
        if k >= bins[2]:
            axes.set_visible(False)
            continue
        mesh = axes.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(fitness[:, :, k].T),
                               cmap=CMAP, vmin=low, vmax=high)
        axes.set_facecolor("#eeeeee")
        axes.set_title(f"{layout.names[2]} {z_edges[k]:.3g}..{z_edges[k + 1]:.3g}", fontsize=9)
    for axes in grid.flat:
        axes.xaxis.set_major_locator(MaxNLocator(3))
        axes.yaxis.set_major_locator(MaxNLocator(3))
        axes.label_outer()
    for axes in grid[-1]:
        axes.set_xlabel(layout.names[0])
    for axes in grid[:, 0]:
        axes.set_ylabel(layout.names[1])
    if mesh is not None:
        figure.colorbar(mesh, ax=grid, label="fitness", shrink=0.8)
    return figure


def _cvt_projections(state: ArchiveState, layout: ArchiveLayout) -> Figure:
    """Centroids of the filled cells projected on each pair of the first three dimensions."""
    pairs = [(0, 1), (0, 2), (1, 2)]
    figure = Figure(figsize=(13, 4.2), layout="constrained")
    centroids = np.asarray(layout.centroids or (), dtype=float)
    filled = np.array([centroids[e.niche] for e in state.elites]) if state.elites else np.empty((0, 3))
    colors = [e.fitness for e in state.elites]
    low, high = _limits(state)
    points = None
    for axes, (a, b) in zip(figure.subplots(1, 3), pairs):
        axes.scatter(centroids[:, a], centroids[:, b], s=4, color="#cccccc")
        points = axes.scatter(filled[:, a], filled[:, b], c=colors, cmap=CMAP, vmin=low, vmax=high, s=18)
        axes.set(xlabel=layout.names[a], ylabel=layout.names[b], xlim=layout.ranges[a], ylim=layout.ranges[b])
    if points is not None and state.elites:
        figure.colorbar(points, ax=figure.axes, label="fitness", shrink=0.8)
    return figure


def _limits(state: ArchiveState) -> tuple[float, float]:
    values = [e.fitness for e in state.elites]
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    return (low, high) if high > low else (low - 0.5, high + 0.5)
