"""`elm config show [CONFIG] [key=value ...]`: every key of the configuration with its
resolved value, type, allowed values and description (all from the schema in elm/config.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("config", help="show the configuration keys with their values and descriptions")
    actions = parser.add_subparsers(dest="config_command", required=True, metavar="{show}")
    show = actions.add_parser(
        "show", help="every key: resolved value, allowed values, description",
        description="Print every configuration key with its value (the defaults, CONFIG and the "
                    "overrides, checked like `elm run` does), its allowed values and its description.")
    show.add_argument("config", nargs="?", help="experiment YAML (default: the defaults alone)")
    show.add_argument("overrides", nargs="*", help="key=value overrides (dotlist)")
    show.add_argument("--json", action="store_true", help="print one JSON list")
    show.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    from elm.config import read_config_file, resolved_values, schema_keys

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:  # `elm config show key=value` without a file
        config, overrides = None, [config, *overrides]
    data = read_config_file(config) if config else None
    values = resolved_values(data, overrides, source=config or "config")
    rows = [{"key": info.key, "value": values[info.key], "type": info.type_text,
             "allowed": info.allowed.text(), "about": info.about} for info in schema_keys()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    settings = [f"{row['key']} = {_value_text(row['value'])}" for row in rows]
    width = max(map(len, settings))
    for setting, row in zip(settings, rows):
        accepts = ", ".join(filter(None, [row["type"], row["allowed"]]))
        print(f"{setting:<{width}}  # {row['about']} [{accepts}]")
    return 0


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
