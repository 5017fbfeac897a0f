"""`elm eval CONFIG FILE`: evaluate one program file by hand, as the loop would."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from elm.errors import UserError
from elm.records import Child, Status


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("eval", help="evaluate one program file with a config's environment")
    parser.add_argument("config")
    parser.add_argument("file", help="the candidate program (Python source)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from elm.archive import Archive
    from elm.config import load_config, secret_variables
    from elm.evaluator import Evaluator
    from elm.experiment import open_environment
    from elm.sandbox import open_sandbox

    config = load_config(args.config, args.overrides)
    source = _read_source(Path(args.file))
    environment = open_environment(config)
    archive = Archive(environment.descriptor_space, config.archive,
                      qd_offset=environment.qd_offset, seed=config.run.seed)
    sandbox = open_sandbox(config.sandbox, hidden_env=secret_variables(config))
    try:
        evaluator = Evaluator(environment, sandbox, config.sandbox)
        child = Child(parent_id=None, source=source, operator="manual")
        (record,) = evaluator.evaluate([child], [0], iteration=0)
    finally:
        sandbox.close()
    niche = archive.niche_of(record.descriptor) if record.descriptor is not None else None  # scored
    report = {
        "status": record.status,
        "reason": record.error,
        "fitness": record.fitness,
        "descriptor": record.descriptor,
        "niche": niche,
        "niche_coordinates": list(archive.niche_coordinates(niche)) if niche is not None else None,
        "seconds": record.timings.get("sandbox_s"),
        "stdout": record.stdout,
    }
    print(json.dumps(report) if args.json else _describe(report))
    return 0 if record.status == Status.OK else 1


def _read_source(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"program file not found: {path}")
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"program file is not UTF-8 text: {path}") from None


def _describe(report: dict) -> str:
    lines = [f"status: {report['status']}"]
    for key in ("reason", "fitness", "descriptor", "niche", "niche_coordinates", "seconds"):
        if report[key] is not None:
            lines.append(f"{key}: {report[key]}")
    return "\n".join(lines)
