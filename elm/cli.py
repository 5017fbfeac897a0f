"""The `elm` command line.

Every subcommand is registered by the module that owns its domain: each `register`
function adds a subparser whose `handler(args) -> int` does the work. A `UserError`
(or a config, environment or sandbox error) becomes one line on stderr and exit code 2;
with `ELM_DEBUG=1` in the environment the full traceback behind it is printed first.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

# Before transformers is ever imported: a hub miss must fail at once, not retry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

_COMMAND_MODULES = tuple(
    f"elm.commands.{name}"
    for name in ("run", "eval", "inspect", "report", "serve", "env", "sandbox", "bench", "verify",
                 "config", "dataset", "finetune")
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own errors exit 2 on one line too
        self.exit(2, f"elm: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="elm", description="Evolution through Large Models.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from elm.errors import UserError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may also come after options (`elm run C --out D a=1`).
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        return int(args.handler(args) or 0)
    except UserError as error:
        if os.environ.get("ELM_DEBUG", "") not in ("", "0"):
            print(_full_traceback(error), file=sys.stderr, end="")
        print(f"elm: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("elm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`elm inspect RUN | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141


def _full_traceback(error: BaseException) -> str:
    """Every exception behind `error`, the earliest first, including those that a
    `raise ... from None` hides from Python's own report."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    parts = ["".join(traceback.format_exception(type(e), e, e.__traceback__, chain=False))
             for e in reversed(chain)]
    return "\nThe above led to:\n\n".join(parts)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
