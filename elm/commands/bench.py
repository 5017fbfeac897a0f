"""`elm bench NAME [--json] [options]`: run one of the performance measurements in elm.bench.

A bench module is imported only when it is run, so heavy imports (torch) stay out of
every other command.
"""

from __future__ import annotations

import argparse
import importlib
import json

from elm.bench import BENCHES


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "bench", help="measure performance (rates and ratios)",
        description=f"benchmarks: {', '.join(BENCHES)}; `elm bench NAME --help` for options",
    )
    parser.add_argument("name", choices=sorted(BENCHES))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="--json and the bench's options")
    parser.set_defaults(handler=_bench, bench_parser_class=type(parser))


def _bench(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHES[args.name])
    parser = args.bench_parser_class(prog=f"elm bench {args.name}", description=module.__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    module.add_arguments(parser)
    options = parser.parse_args(args.options)
    result = module.run(options)
    print(json.dumps(result) if options.json else module.describe(result))
    return 0
