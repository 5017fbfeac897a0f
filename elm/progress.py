"""The run's progress: iteration, coverage, QD score, best fitness, throughput, funnel.

On a terminal a live bar; otherwise (a log file, CI, nohup) one plain line every
`PLAIN_EVERY` iterations and at the last, never cut to the width of a terminal.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from elm.store import IterationMetrics

PLAIN_EVERY = 10


class RunProgress:
    """Context manager; pass `update` to the loop as its iteration listener."""

    def __init__(self, total_iterations: int, enabled: bool = True) -> None:
        console = Console(stderr=True)
        self._total = total_iterations
        self._plain = enabled and not console.is_terminal
        self._progress = Progress(
            TextColumn("[bold]iteration"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled or self._plain,
        )
        self._task = self._progress.add_task("run", total=total_iterations, summary="")

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if self._progress.live.is_started:  # stopping a bar never shown would print a blank line
            self._progress.stop()

    def update(self, metrics: IterationMetrics) -> None:
        if self._plain:
            if metrics.iteration % PLAIN_EVERY == 0 or metrics.iteration == self._total:
                print(f"iteration {metrics.iteration}/{self._total} | {summary_line(metrics)}",
                      file=sys.stderr, flush=True)
            return
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


class StepProgress:
    """The fine-tuning progress bar: step, loss, tokens/s and time left. Context manager;
    pass `update` to the trainer as its step listener."""

    def __init__(self, enabled: bool = True) -> None:
        from rich.progress import TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]fine-tuning"),
            BarColumn(),
            TextColumn("step {task.fields[step]} | loss {task.fields[loss]} | {task.fields[rate]} tokens/s"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task("finetune", total=1.0, step=0, loss="-", rate="-")

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._progress.stop()

    def update(self, figures: dict) -> None:
        if not self._progress.live.is_started:  # shown once the data and model are ready
            self._progress.start()
        self._progress.update(self._task, completed=figures["progress"], step=figures["step"],
                              loss=f"{figures['loss']:.3f}", rate=f"{figures['tokens_per_s']:.0f}")
