"""`elm bench NAME [--json]`: run one of the performance measurements in elm.bench."""

from __future__ import annotations

import argparse
import importlib
import json

from elm.bench import BENCHES


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("bench", help="measure performance (rates and ratios)")
    names = parser.add_subparsers(dest="bench", required=True, parser_class=type(parser))
    for name, module_name in BENCHES.items():
        module = importlib.import_module(module_name)
        sub = names.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        module.add_arguments(sub)
        sub.set_defaults(handler=_runner(module))


def _runner(module):
    def handler(args: argparse.Namespace) -> int:
        result = module.run(args)
        print(json.dumps(result) if args.json else module.describe(result))
        return 0

    return handler
