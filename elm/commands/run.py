"""`elm run CONFIG` and `elm resume RUN_DIR`. Heavy imports stay inside the handlers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="start an evolution run from a config")
    run.add_argument("config", help="experiment YAML, e.g. configs/quickstart.yaml")
    run.add_argument("overrides", nargs="*", help="key=value overrides (dotlist)")
    run.add_argument("--out", help="run folder (default: run.out/NAME-TIMESTAMP)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    resume = commands.add_parser("resume", help="continue a run from its last committed iteration")
    resume.add_argument("run_dir")
    resume.add_argument("overrides", nargs="*", help="key=value overrides, e.g. run.iterations=200")
    resume.add_argument("--quiet", action="store_true", help="no progress bar")
    resume.set_defaults(handler=_resume)


def _run(args: argparse.Namespace) -> int:
    from elm.config import load_config
    from elm.experiment import start_run
    from elm.progress import RunProgress

    config = load_config(args.config, args.overrides)
    with RunProgress(config.run.iterations, enabled=not args.quiet) as progress:
        run_dir = start_run(config, args.out, on_iteration=progress.update)
    _finish(run_dir)
    return 0


def _resume(args: argparse.Namespace) -> int:
    from elm.experiment import resume_run, run_config
    from elm.progress import RunProgress

    config = run_config(args.run_dir, args.overrides)
    with RunProgress(config.run.iterations, enabled=not args.quiet) as progress:
        run_dir = resume_run(args.run_dir, args.overrides, on_iteration=progress.update)
    _finish(run_dir)
    return 0


def _finish(run_dir: Path) -> None:
    from elm.report import write_report

    write_report(run_dir)
    print(run_dir, file=sys.stdout)
