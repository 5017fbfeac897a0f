"""Candidates per second through the warm container pool, through a fresh container per
candidate, and through a bare local subprocess per candidate (no sandbox at all).

The fresh containers are the least that running one candidate in a container of its own
takes: the pool's image and lockdown, a bare `python3 -I -c` that writes the job's files
and prints main()'s result, the container removed after it. No runner, no numpy
preloaded: nothing that pays off only over many candidates.

All three run trivial candidates (a harness file that imports the program and returns
its main()), with the same number of candidates in flight (the pool size), in
interleaved rounds so that a busy machine slows them alike. As in a real run, the
harness is the same for every candidate and each program's text is its own. The
figures are the rates and the ratios pool/fresh-container and pool/subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from elm.config import SandboxConfig, load_config
from elm.errors import UserError
from elm.records import Status
from elm.sandbox import Job, Outcome

_HARNESS = "import program\n\n\ndef main():\n    return program.main()\n"
_PROGRAM = "def main():\n    return {'fitness': 1.0, 'descriptor': [0.5, 0.5]}\n"
_FILES = {"elm_harness.py": _HARNESS, "program.py": _PROGRAM}
_BARE_COMMAND = "import json, sys; sys.path.insert(0, '.'); import elm_harness; print(json.dumps(elm_harness.main()))"
_FRESH_COMMAND = (
    "import json, os, sys\n"
    "os.chdir('/scratch')\n"
    "for name, text in json.loads(os.environ['ELM_FILES']).items():\n"
    "    open(name, 'w').write(text)\n"
    + _BARE_COMMAND
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidates", type=int, default=400, help="through the warm pool, per round")
    parser.add_argument("--fresh", type=int, default=10, help="through fresh containers, per round")
    parser.add_argument("--subprocesses", type=int, default=40, help="through bare subprocesses, per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pool-size", type=int, help="default: sandbox.pool_size")
    parser.add_argument("--config", help="experiment YAML whose sandbox section is used")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from elm.sandbox.docker import DockerSandbox

    config = _config(args)
    job = _job(0, config)
    seconds = {"pool": 0.0, "fresh": 0.0, "subprocess": 0.0}
    pool = DockerSandbox(config)
    fresh = _FreshContainers(config)
    try:
        _check(pool.run_many(_jobs(config.pool_size * 4, config)), "pool warm-up")
        _bare_subprocesses(job, 2, 1)
        for _ in range(args.rounds):
            jobs = _jobs(args.candidates, config)
            seconds["pool"] += _timed(lambda jobs=jobs: _check(pool.run_many(jobs), "pool"))
            jobs = _jobs(args.fresh, config)
            seconds["fresh"] += _timed(lambda jobs=jobs: fresh.run_many(jobs))
            seconds["subprocess"] += _timed(lambda: _bare_subprocesses(job, args.subprocesses, config.pool_size))
    finally:
        pool.close()
        fresh.close()
    pool_rate = args.rounds * args.candidates / seconds["pool"]
    fresh_rate = args.rounds * args.fresh / seconds["fresh"]
    subprocess_rate = args.rounds * args.subprocesses / seconds["subprocess"]
    return {
        "pool_per_s": round(pool_rate, 2),
        "fresh_container_per_s": round(fresh_rate, 3),
        "subprocess_per_s": round(subprocess_rate, 2),
        "pool_vs_fresh_container": round(pool_rate / fresh_rate, 1),
        "pool_vs_subprocess": round(pool_rate / subprocess_rate, 2),
        "in_flight": config.pool_size,
        "candidates": {"pool": args.rounds * args.candidates, "fresh_container": args.rounds * args.fresh,
                       "subprocess": args.rounds * args.subprocesses},
        "image": config.image,
        "cpus": os.cpu_count(),
    }


def describe(result: dict[str, Any]) -> str:
    return "\n".join([
        f"sandbox throughput, {result['in_flight']} candidates in flight, {result['cpus']} CPUs:",
        f"  warm container pool     {result['pool_per_s']:>10.1f} candidates/s",
        f"  fresh container each    {result['fresh_container_per_s']:>10.2f} candidates/s",
        f"  bare subprocess each    {result['subprocess_per_s']:>10.1f} candidates/s",
        f"  pool / fresh container  {result['pool_vs_fresh_container']:>10.1f}x",
        f"  pool / subprocess       {result['pool_vs_subprocess']:>10.2f}x",
    ])


def _config(args: argparse.Namespace) -> SandboxConfig:
    config = load_config(args.config).sandbox if args.config else SandboxConfig()
    if config.backend != "docker":
        raise UserError("the sandbox benchmark measures the docker backend; sandbox.backend is " + config.backend)
    if args.pool_size is not None:
        config = replace(config, pool_size=args.pool_size)
    for name in ("candidates", "fresh", "subprocesses", "rounds"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive")
    return config


def _job(number: int, config: SandboxConfig) -> Job:
    files = {**_FILES, "program.py": f"{_PROGRAM}\n# candidate {number}\n"}
    return Job(files, "elm_harness.py", timeout_s=config.timeout_s, memory_mb=config.memory_mb)


def _jobs(count: int, config: SandboxConfig) -> list[Job]:
    return [_job(number, config) for number in range(count)]


def _timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _check(outcomes: list[Outcome], phase: str) -> None:
    for outcome in outcomes:
        if outcome.status != Status.OK:
            raise UserError(f"{phase}: a trivial candidate ended {outcome.status}: {outcome.error[-200:]}")


class _FreshContainers:
    """One locked-down container per candidate, created for it and removed after it."""

    def __init__(self, config: SandboxConfig) -> None:
        from elm.sandbox.docker import OWNER_LABEL, SANDBOX_LABEL, connect

        self.config = config
        self.client = connect()
        self.labels = {SANDBOX_LABEL: "bench", OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}:bench"}

    def run_many(self, jobs: list[Job]) -> None:
        with ThreadPoolExecutor(self.config.pool_size) as workers:
            list(workers.map(self._run_one, jobs))

    def close(self) -> None:
        self.client.close()

    def _run_one(self, job: Job) -> None:
        from elm.sandbox.docker import start_container

        api = self.client.api
        container, stream = start_container(
            api, self.config, self.labels, {"stdout": 1, "stderr": 1},
            entrypoint=["python3", "-I", "-c", _FRESH_COMMAND], environment={"ELM_FILES": json.dumps(job.files)},
        )
        try:
            output = _read_to_end(getattr(stream, "_sock", stream))
        finally:
            api.remove_container(container, force=True)
        if b'"fitness"' not in output:
            raise UserError(f"fresh container: a trivial candidate failed: {output[-200:]!r}")


def _read_to_end(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    connection.close()
    return b"".join(chunks)


def _bare_subprocesses(job: Job, count: int, in_flight: int) -> None:
    """Each candidate in a plain `python -c` of its own: no sandbox, no limits."""
    with tempfile.TemporaryDirectory(prefix="elm-bench-") as folder:
        for name, text in job.files.items():
            Path(folder, name).write_text(text)

        def one(_: int) -> None:
            done = subprocess.run([sys.executable, "-I", "-c", _BARE_COMMAND], cwd=folder,
                                  capture_output=True, timeout=job.timeout_s * 10, check=False)
            if done.returncode != 0:
                raise UserError(f"bare subprocess failed: {done.stderr.decode(errors='replace')[-200:]}")
            json.loads(done.stdout)

        with ThreadPoolExecutor(in_flight) as workers:
            list(workers.map(one, range(count)))
