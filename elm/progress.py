"""The run's progress bar: iteration, coverage, QD score, best fitness, throughput, funnel."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from elm.store import IterationMetrics


class RunProgress:
    """Context manager; pass `update` to the loop as its iteration listener."""

    def __init__(self, total_iterations: int, enabled: bool = True) -> None:
        self._progress = Progress(
            TextColumn("[bold]iteration"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task("run", total=total_iterations, summary="")

    def __enter__(self) -> "RunProgress":
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._progress.live.is_started:  # stopping a bar never shown would print a blank line
            self._progress.stop()

    def update(self, metrics: IterationMetrics) -> None:
        if not self._progress.live.is_started:  # shown once the run is set up and seeded
            self._progress.start()
        self._progress.update(self._task, completed=metrics.iteration, summary=summary_line(metrics))


def summary_line(metrics: IterationMetrics) -> str:
    best = "-" if metrics.max_fitness is None else f"{metrics.max_fitness:.4g}"
    funnel = metrics.funnel
    valid = (f"valid {funnel.get('applied', 0)}/{funnel.get('generated', 0)} applied, "
             f"{funnel.get('scored', 0)} scored, {funnel.get('placed', 0)} placed")
    stages = metrics.extras.get("stages", {})
    pipeline = ""
    if stages:
        pipeline = (f" | gen {stages['generated_per_s']:.1f}/s busy {stages['generation_busy']:.0%}"
                    f" | eval {stages['evaluated_per_s']:.1f}/s busy {stages['evaluation_busy']:.0%}")
    return (f"coverage {metrics.coverage:.1%} | QD {metrics.qd_score:.4g} | best {best} | "
            f"{metrics.evals_per_s:.1f} evals/s | {valid}{pipeline}")
