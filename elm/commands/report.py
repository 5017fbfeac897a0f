"""`elm report RUN_DIR`: plots and a self-contained report.html in the run folder;
`elm report RUN_A RUN_B ...`: the metric curves of several runs overlaid in one page."""

from __future__ import annotations

import argparse
import sys


def register(commands: argparse._SubParsersAction) -> None:
    from elm.report import DEFAULT_RENDERS

    parser = commands.add_parser("report", help="write a run's plots and report.html, or compare runs")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="one run folder, or several to compare")
    parser.add_argument("--out", default="elm-comparison",
                        help="folder for a comparison of several runs (default: %(default)s)")
    parser.add_argument("--renders", type=int, default=DEFAULT_RENDERS, metavar="N",
                        help="draw pictures of the N best elites (default: %(default)s; 0 for none)")
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from elm.report import build_report, write_comparison

    if len(args.run_dirs) > 1:
        print(write_comparison(args.run_dirs, args.out))
        return 0
    files = build_report(args.run_dirs[0], renders=args.renders)
    for note in files.notes:
        print(f"elm: note: {note}", file=sys.stderr)
    print(files.html)
    return 0
