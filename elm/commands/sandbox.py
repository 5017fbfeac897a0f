"""`elm sandbox build` and `elm sandbox run FILE...`: the sandbox image and one-off runs."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from elm.config import SandboxConfig, load_config
from elm.errors import UserError
from elm.records import Status
from elm.sandbox import Job, open_sandbox


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sandbox", help="build the sandbox image; run a file as a candidate")
    actions = parser.add_subparsers(dest="sandbox_command", required=True, metavar="{build,run}")
    _register_build(actions)
    _register_run(actions)


def _register_build(actions: Any) -> None:
    build = actions.add_parser(
        "build",
        help="build or refresh the sandbox image",
        description="Build or refresh the sandbox image (and, the first time, its offline Debian base).",
    )
    build.add_argument("--config", help="experiment YAML whose sandbox.image is built")
    build.add_argument("--image",
                       help="image name (default: sandbox.image: $ELM_SANDBOX_IMAGE, else elm-sandbox:latest)")
    build.add_argument(
        "--base",
        metavar="IMAGE",
        help="build FROM this Python image (pulled if missing) instead of the offline Debian base",
    )
    build.add_argument("--rebuild-base", action="store_true", help="redo the offline base (debootstrap)")
    build.add_argument("--force", action="store_true", help="rebuild the image even if it is up to date")
    build.set_defaults(handler=_build)


def _register_run(actions: Any) -> None:
    run = actions.add_parser(
        "run",
        help="run Python files as candidates and print their outcomes as JSON",
        description=(
            "Run each FILE in the sandbox the way a candidate runs: its main() is called and "
            "the outcome (file, status, seconds, result, stdout, error) is printed as one JSON "
            "object per line, in the order of the files. The files run one after another "
            "through the same warm pool (of --pool-size runners, default 1), as candidates of "
            "a run do: what one leaves behind must not change the next one's outcome. "
            "Exit code 0 when every status is ok, 1 otherwise."
        ),
    )
    run.add_argument("files", nargs="+", metavar="FILE", help="a Python file that defines main()")
    run.add_argument("--pool-size", type=int, metavar="N", help="runners in the pool (default 1)")
    run.add_argument("--timeout", type=float, metavar="S", help="wall-clock limit in seconds")
    run.add_argument("--memory", type=int, metavar="MB", help="memory limit in MB")
    run.add_argument("--config", help="experiment YAML whose sandbox section is used")
    run.add_argument(
        "--backend", choices=("docker", "local"), help="override sandbox.backend (local: no container)"
    )
    run.set_defaults(handler=_run)


def _build(args: argparse.Namespace) -> int:
    from elm.sandbox.docker import connect
    from elm.sandbox.image import build_image

    config = _sandbox_config(args.config)
    image = args.image or config.image
    client = connect()
    version = client.version().get("Version", "?")
    print(f"docker: engine {version} reachable")
    build_image(client, image, base=args.base, rebuild_base=args.rebuild_base, force=args.force)
    return 0


def _run(args: argparse.Namespace) -> int:
    sources = [(path, _read_source(path)) for path in map(Path, args.files)]
    config = _sandbox_config(args.config)
    overrides: dict[str, Any] = {"pool_size": 1 if args.pool_size is None else _positive(args.pool_size, "--pool-size")}
    if args.backend:
        overrides["backend"] = args.backend
    if args.timeout is not None:
        overrides["timeout_s"] = _positive(args.timeout, "--timeout")
    if args.memory is not None:
        overrides["memory_mb"] = _positive(args.memory, "--memory")
    config = replace(config, **overrides)
    jobs = [Job({path.name: source}, path.name, timeout_s=config.timeout_s, memory_mb=config.memory_mb)
            for path, source in sources]
    sandbox = open_sandbox(config)
    try:
        outcomes = sandbox.run_many(jobs)
    finally:
        sandbox.close()
    for (path, _), outcome in zip(sources, outcomes):
        print(json.dumps({"file": str(path), **outcome.as_dict(), **outcome.extras}))
    return 0 if all(outcome.status == Status.OK for outcome in outcomes) else 1


def _read_source(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as problem:
        raise UserError(f"cannot read {path}: {problem}") from None


def _sandbox_config(config_path: str | None) -> SandboxConfig:
    if config_path is None:
        return SandboxConfig()
    return load_config(config_path).sandbox


def _positive(value: float, option: str) -> Any:
    if not value > 0:
        raise UserError(f"{option} must be positive; got {value}")
    return value
