"""`elm dataset RUN_DIR [RUN_DIR ...] --out FILE.jsonl`: a run's diffs as diff-model training data."""

from __future__ import annotations

import argparse
import json
import sys


def register(commands: argparse._SubParsersAction) -> None:
    from elm.dataset import MESSAGES, SELECTIONS

    parser = commands.add_parser(
        "dataset", help="export runs' diffs as (prompt, completion) training data for the diff model")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", required=True, metavar="FILE.jsonl")
    parser.add_argument("--select", choices=SELECTIONS, default="placed",
                        help="placed: entered the archive (default); improved: beat its parent or opened "
                             "a niche; ok: ran and scored; all: every child with a program")
    parser.add_argument("--operators", default=None, metavar="diff,gp",
                        help="only children of these operators (default: all)")
    parser.add_argument("--holdout", type=float, default=0.05,
                        help="share of prompts marked split=heldout (default 0.05)")
    parser.add_argument("--messages", choices=MESSAGES, default="written",
                        help="commit messages in the prompts: written, the one each child carries "
                             "(default); drawn, the one the run drew for it from its own messages")
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    parser.set_defaults(handler=_dataset)


def _dataset(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from elm.dataset import collect_examples, write_examples
    from elm.errors import UserError

    operators = [name.strip() for name in args.operators.split(",") if name.strip()] if args.operators else None
    if args.operators is not None and not operators:
        raise UserError("--operators names no operator")
    examples, summary = collect_examples(args.run_dirs, args.select, operators, args.holdout, args.messages)
    write_examples(examples, args.out)
    if args.json:
        print(json.dumps({"out": args.out, **asdict(summary)}))
    else:
        print(f"{summary.examples} examples ({summary.heldout} held out) -> {args.out}; "
              f"{summary.duplicates} duplicates dropped", file=sys.stdout)
        if summary.not_round_tripping:
            print(f"{summary.not_round_tripping} children left out: their diff does not give them back",
                  file=sys.stdout)
        if summary.without_drawn_message:
            print(f"{summary.without_drawn_message} children left out: no drawn message recorded", file=sys.stdout)
    return 0
