"""`elm inspect RUN_DIR`: a run's summary, or one view of it (best elites, a niche, a
lineage, a snapshot, why candidates failed), as rich tables or, with --json, as one JSON object."""

from __future__ import annotations

import argparse
import json

from rich.console import Console


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "inspect", help="summarise a run, or show its best elites, a niche, a lineage, a snapshot, "
                        "its commit messages or its failures")
    parser.add_argument("run_dir", help="a run folder (holds run.sqlite)")
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--top", type=int, metavar="K", help="the K best elites")
    view.add_argument("--niche", type=_coordinates, metavar="I,J[,K]",
                      help="the elite of one niche: grid coordinates, or the cell index of a CVT archive")
    view.add_argument("--lineage", type=int, metavar="CANDIDATE_ID",
                      help="the chain of mutations from a seed to a candidate")
    view.add_argument("--messages", action="store_true",
                      help="each commit message's children: tries, ran, placed, new niches, improvements")
    view.add_argument("--failures", action="store_true",
                      help="why candidates failed: counts by status and by exception type or reason")
    parser.add_argument("--snapshot", type=int, metavar="N",
                        help="the archive stored at iteration N (alone, or with --top / --niche)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    from elm.errors import UserError
    from elm.report import failures, views
    from elm.report.run import open_run

    if args.lineage is not None and args.snapshot is not None:
        raise UserError("--snapshot does not apply to --lineage (a lineage does not change)")
    if args.failures and args.snapshot is not None:
        raise UserError("--snapshot does not apply to --failures (they count every candidate)")
    if args.messages:
        return _messages(args)
    with open_run(args.run_dir) as run:
        if args.top is not None:
            data, printer = views.top_view(run, args.top, args.snapshot), views.print_top
        elif args.niche is not None:
            data, printer = views.niche_view(run, args.niche, args.snapshot), views.print_niche
        elif args.lineage is not None:
            data, printer = views.lineage_view(run, args.lineage), views.print_lineage
        elif args.failures:
            data, printer = failures.failures_view(run), failures.print_failures
        elif args.snapshot is not None:
            data, printer = views.snapshot_view(run, args.snapshot), views.print_snapshot
        else:
            data, printer = views.summary_view(run), views.print_summary
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        printer(Console(), data)
    return 0


def _messages(args: argparse.Namespace) -> int:
    from elm.errors import UserError
    from elm.report.messages import message_selection, message_statistics, print_messages
    from elm.report.run import open_run

    if args.snapshot is not None:
        raise UserError("--snapshot does not apply to --messages")
    with open_run(args.run_dir) as run:
        rows, selection = message_statistics(run), message_selection(run)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_messages(Console(), rows, selection)
    return 0


def _coordinates(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None

