"""`elm verify RUN_DIR`: re-run a run's elites and check that they reproduce."""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "verify", help="re-run a run's best elites in fresh sandboxes and check their stored scores")
    parser.add_argument("run_dir", help="a run folder (holds run.sqlite and config.yaml)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--top", type=int, default=10, metavar="N", help="the N fittest elites (default 10)")
    which.add_argument("--all", action="store_true", help="every elite")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from elm.verify import describe, verify_run

    verification = verify_run(args.run_dir, top=None if args.all else args.top)
    print(json.dumps(verification.as_dict(), indent=2) if args.json else describe(verification))
    return 1 if verification.mismatched else 0
