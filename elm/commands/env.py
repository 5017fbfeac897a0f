"""`elm env list` and `elm env check NAME`: which environments are installed, and whether
one keeps the plug-in contract.

`check` loads the environment, looks at what it declares, runs every seed through the
configured sandbox and scores it on the host, then feeds the scoring some hostile
results. It prints one row per seed (status, fitness, descriptor, niche) and every
problem found. Exit code 0: all good; 1: a seed or the contract failed; 2: bad input.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.table import Column, Table

from elm.config import ElmConfig, build_config, load_config
from elm.environment import Environment, Program, Score, available_environments, load_environment
from elm.errors import UserError
from elm.records import Status
from elm.sandbox import Outcome, open_sandbox

if TYPE_CHECKING:
    from elm.archive import Archive

_T = TypeVar("_T")


class _PluginFailure(Exception):
    """Plug-in code raised where the contract expects an answer; the message says where."""

# Results a sandboxed candidate could hand back; scoring must answer each with a Score.
_HOSTILE_RESULTS: tuple[tuple[str, Any], ...] = (
    ("null", None),
    ("a number", 1),
    ("NaN", math.nan),
    ("a string", "result"),
    ("an empty list", []),
    ("an empty object", {}),
    ("an object of NaNs", {"fitness": math.nan, "x": [math.nan], "y": -math.inf}),
    ("a huge integer", 10**400),
    ("a long list", [0.0] * 200_000),
    ("deeply nested lists", [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]),
    ("a list of nulls", [None] * 64),
)


def register(commands: argparse._SubParsersAction) -> None:
    env = commands.add_parser("env", help="list the installed environments or check one")
    actions = env.add_subparsers(dest="env_command", required=True)

    listing = actions.add_parser("list", help="environments: built-in, installed entry points")
    listing.add_argument("--json", action="store_true", help="print one JSON list")
    listing.set_defaults(handler=_list)

    check = actions.add_parser("check", help="run an environment's seeds through the sandbox and scoring")
    check.add_argument("name", help="built-in name, entry point name, or module:Class")
    check.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. environment.options.n=10")
    check.add_argument("--config", help="take options, seeds, archive and sandbox settings from this config")
    check.add_argument("--backend", choices=("local", "docker"), help="sandbox backend (default: the config's)")
    check.add_argument("--render", metavar="DIR", help="also draw each seed's result into DIR")
    check.set_defaults(handler=_check)


def _list(args: argparse.Namespace) -> int:
    rows = _environment_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(Column("name", no_wrap=True), Column("from", overflow="fold"), "descriptors", "seeds", "file")
    for row in rows:
        if row["error"] is not None:
            table.add_row(row["name"], row["from"], f"[red]cannot load: {row['error']}[/red]", "", "")
            continue
        descriptors = ", ".join(_dimension_text(d) for d in row["descriptors"])
        table.add_row(row["name"], row["from"], descriptors, ", ".join(row["seeds"]), row["file"])
    Console().print(table)
    return 0


def _environment_rows() -> list[dict[str, Any]]:
    """One row per installed environment; one that cannot load is listed with its error."""
    rows: list[dict[str, Any]] = []
    for name, origin in sorted(available_environments().items()):
        row: dict[str, Any] = {"name": name, "from": origin, "descriptors": [], "seeds": [], "file": None,
                               "error": None}
        try:
            environment = load_environment(name)
            row["seeds"] = [p.name or "?" for p in environment.seeds()]
            row["descriptors"] = [
                {"name": d.name, "low": d.low, "high": d.high, "bins": d.bins}
                for d in environment.descriptor_space.dimensions
            ]
            row["file"] = environment.file_name
        except Exception as error:  # a broken plug-in is listed, not fatal
            row["error"] = str(error)
        rows.append(row)
    return rows


def _check(args: argparse.Namespace) -> int:
    from elm.archive import Archive  # pyribs is slow to import: only for the commands that need it
    from elm.experiment import open_environment

    config = _config_for(args)
    console = Console()
    try:
        environment = _plugin_call("loading the environment", lambda: open_environment(config))
        seeds, problems = _declarations(environment)
    except _PluginFailure as failure:
        console.print(f"[red]problem:[/red] {failure}", highlight=False)
        return 1
    if problems:
        for declared in problems:
            console.print(f"[red]problem:[/red] {declared}", highlight=False)
        return 1
    rows = _run_seeds(environment, seeds, config)
    archive = Archive(environment.descriptor_space, config.archive, qd_offset=environment.qd_offset,
                      seed=config.run.seed)
    table = Table("seed", "status", "fitness", *environment.descriptor_space.names, "niche",
                  title=f"elm env check {args.name} (sandbox: {config.sandbox.backend})")
    for seed, outcome, score in rows:
        problem = _seed_problem(environment, outcome, score)
        if problem:
            problems.append(f"seed {seed.name or '?'}: {problem}")
        table.add_row(*_row(seed, outcome, score, archive, problem))
        if args.render and outcome.status == Status.OK:
            problems.extend(_render(environment, seed, outcome.result, Path(args.render), console))
    problems.extend(_hostile_result_problems(environment))
    console.print(table)
    for problem in problems:
        console.print(f"[red]problem:[/red] {problem}", highlight=False)
    if problems:
        return 1
    console.print(f"[green]ok[/green]: {len(rows)} seed(s) valid; scoring handles hostile results")
    return 0


def _plugin_call(what: str, call: Callable[[], _T]) -> _T:
    """Run plug-in code: bad input stays a UserError (exit 2), any other exception is a
    broken environment, reported as a problem (exit 1) rather than a traceback."""
    try:
        return call()
    except UserError:
        raise
    except Exception as error:
        raise _PluginFailure(f"{what} raised {type(error).__name__}: {error}") from None


def _config_for(args: argparse.Namespace) -> ElmConfig:
    if args.config:
        config = load_config(args.config, args.overrides)
    else:
        config = build_config({"environment": {"name": args.name}}, args.overrides)
    config.environment.name = args.name
    if args.backend:
        config.sandbox.backend = args.backend
    return config


def _declarations(environment: Environment) -> tuple[list[Program], list[str]]:
    """The seeds, and what is wrong with the declarations alone, before anything runs."""
    from elm.evaluator import compile_error

    problems = []
    space = getattr(environment, "descriptor_space", None)
    if space is None or len(space) == 0:
        problems.append("descriptor_space declares no dimensions")
    else:
        for dimension in space.dimensions:
            if not (dimension.low < dimension.high and dimension.bins >= 1):
                problems.append(f"descriptor {dimension.name!r} needs low < high and bins >= 1")
    if not environment.commit_messages or any(m.weight <= 0 for m in environment.commit_messages):
        problems.append("commit_messages must be non-empty with positive weights")
    files = _plugin_call("sandbox_files()", environment.sandbox_files)
    if environment.harness not in files:
        problems.append(f"sandbox_files() lacks the harness {environment.harness!r}")
    if environment.file_name in files:
        problems.append(f"sandbox_files() would be overwritten by the candidate file {environment.file_name!r}")
    seeds = _plugin_call("seeds()", environment.seeds)
    if not seeds:
        problems.append("seeds() returned no programs")
    for seed in seeds:
        if seed.file_name != environment.file_name:
            problems.append(f"seed {seed.name!r} is named {seed.file_name!r}, not {environment.file_name!r}")
        error = compile_error(seed.source, seed.file_name)
        if error:
            problems.append(f"seed {seed.name!r} does not compile: {error}")
    return seeds, problems


def _run_seeds(environment: Environment, seeds: list[Program],
               config: ElmConfig) -> list[tuple[Program, Outcome, Score | None]]:
    from elm.evaluator import Evaluator, score_safely

    sandbox = open_sandbox(config.sandbox)
    try:
        evaluator = Evaluator(environment, sandbox, config.sandbox)
        outcomes = sandbox.run_many([evaluator.job_for(seed.source) for seed in seeds])
    finally:
        sandbox.close()
    return [
        (seed, outcome, score_safely(environment, outcome.result)[0] if outcome.status == Status.OK else None)
        for seed, outcome in zip(seeds, outcomes)
    ]


def _seed_problem(environment: Environment, outcome: Outcome, score: Score | None) -> str | None:
    if outcome.status != Status.OK:
        return f"sandbox status {outcome.status}: {_last_line(outcome.error)}"
    if score is None or not score.valid:
        return f"invalid: {score.invalid_reason if score else 'not scored'}"
    descriptor = score.descriptor or ()  # score_safely made sure of one value per dimension
    for value, dimension in zip(descriptor, environment.descriptor_space.dimensions):
        if not dimension.low <= value <= dimension.high:
            return f"{dimension.name} = {value:.4g} is outside [{dimension.low}, {dimension.high}]"
    return None


def _hostile_result_problems(environment: Environment) -> list[str]:
    from elm.evaluator import score_safely

    problems = []
    for label, result in _HOSTILE_RESULTS:
        score, failure = score_safely(environment, result)
        if failure is not None:  # an invalid verdict is the right answer; a scoring failure is not
            problems.append(f"scoring {label}: {score.invalid_reason}")
    return problems


def _row(seed: Program, outcome: Outcome, score: Score | None, archive: Archive,
         problem: str | None) -> list[str]:
    status = Status.INVALID if outcome.status == Status.OK and problem else outcome.status
    if problem or score is None or score.fitness is None:
        return [seed.name or "?", f"[red]{status}[/red]", "", *[""] * len(archive.names), ""]
    descriptor = score.descriptor or ()
    niche = archive.niche_of(descriptor)
    return [
        seed.name or "?",
        status,
        f"{score.fitness:.6g}",
        *(f"{value:.4g}" for value in descriptor),
        f"{niche} {archive.niche_coordinates(niche)}",
    ]


def _render(environment: Environment, seed: Program, result: Any, folder: Path,
            console: Console) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        written = environment.render(result, str(folder / (seed.name or "seed")))
    except Exception as error:  # plug-in code: report, do not crash the check
        return [f"seed {seed.name or '?'}: render failed: {type(error).__name__}: {error}"]
    if written:
        console.print(f"rendered {seed.name}: {written}", highlight=False)
    return []


def _dimension_text(dimension: dict[str, Any]) -> str:
    return f"{dimension['name']} [{dimension['low']:g}, {dimension['high']:g}] x{dimension['bins']}"


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no error message"
