"""Draw a run's coverage, QD score and best fitness against the number of evaluations.

    python environments/sodarace/docs/baseline_curves.py RUN_DIR OUT.png [--title TEXT]

Reads the run's committed iterations (a run still going is drawn as far as it got) and
writes one PNG with three panels. Evaluations are the candidates of every committed
iteration, the seeds' included.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matplotlib.figure import Figure

from elm.store import IterationMetrics, RunStore


def curves(metrics: list[IterationMetrics]) -> dict[str, list[float | None]]:
    """Evaluations so far and the three measures after each committed iteration."""
    evaluations: list[float | None] = []
    total = 0
    for row in metrics:
        total += row.candidates
        evaluations.append(total)
    return {
        "evaluations": evaluations,
        "coverage": [row.coverage for row in metrics],
        "qd_score": [row.qd_score for row in metrics],
        "max_fitness": [row.max_fitness for row in metrics],
    }


def figure_of(series: dict[str, list[float | None]], title: str) -> Figure:
    figure = Figure(figsize=(13, 3.8), layout="constrained")
    panels = (("coverage", "coverage (share of 1,728 niches)"), ("qd_score", "QD score"),
              ("max_fitness", "best fitness (dm in 10 s)"))
    for axes, (key, label) in zip(figure.subplots(1, 3), panels):
        points = [(x, y) for x, y in zip(series["evaluations"], series[key]) if y is not None]
        axes.plot([x for x, _ in points], [y for _, y in points])
        axes.set(title=label, xlabel="evaluations")
        axes.grid(alpha=0.3)
        if key == "coverage":
            axes.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    figure.suptitle(title)
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    if not (args.run_dir / "run.sqlite").is_file():
        print(f"error: {args.run_dir} holds no run.sqlite", file=sys.stderr)
        return 2
    store = RunStore.open(args.run_dir, readonly=True)
    try:
        metrics = store.metrics()
    finally:
        store.close()
    if not metrics:
        print(f"error: {args.run_dir} has no committed iteration yet", file=sys.stderr)
        return 2
    series = curves(metrics)
    title = args.title or f"{args.run_dir.name}: {series['evaluations'][-1]:,} evaluations"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure_of(series, title).savefig(args.out, dpi=100)
    last = metrics[-1]
    print(f"{args.out}: {series['evaluations'][-1]} evaluations, coverage {last.coverage:.4f}, "
          f"QD score {last.qd_score:.1f}, best fitness {last.max_fitness}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
