"""The sandbox interface: run untrusted candidate programs and return their results.

A `Job` is a set of files written into a fresh scratch folder and the name of the entry
file; the runner (`sandbox/runner/`, the same server for every backend) calls that
file's `main()` in a forked child under rlimits and a wall-clock timeout, and answers
with an `Outcome`. Backends differ only in where the runner lives: a warm pool of Docker
containers (`docker`, the default) or local processes (`local`, explicit only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from elm.errors import UserError
from elm.records import SANDBOX_STATUSES

if TYPE_CHECKING:
    from elm.config import SandboxConfig

STATUSES = SANDBOX_STATUSES  # the runner answers one of these (sandbox/runner/server.py spells them out)


class SandboxUnavailable(UserError):
    """The configured backend cannot be reached; the message says how to fix it."""


@dataclass(frozen=True)
class Job:
    files: Mapping[str, str]
    entry: str
    timeout_s: float = 5.0
    memory_mb: int = 256


@dataclass
class Outcome:
    status: str
    seconds: float
    result: Any = None
    stdout: str = ""
    error: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "seconds": self.seconds,
            "result": self.result,
            "stdout": self.stdout,
            "error": self.error,
        }


class Sandbox(Protocol):
    def run_many(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Run jobs concurrently over the pool; outcomes in the order of `jobs`."""
        ...

    def take_events(self) -> list[tuple[str, dict[str, Any]]]:
        """What happened since the last call, for the run store (runners replaced, and for
        the distributed sandbox evaluators lost or retried); empty when nothing did."""
        ...

    def close(self) -> None: ...


def open_sandbox(config: SandboxConfig, hidden_env: Sequence[str] = ()) -> Sandbox:
    """Open the configured backend. Never falls back to another backend. Environment
    variables named in `hidden_env` (secrets such as a model API key) never reach the
    candidates: local runners start without them; containers get no host environment."""
    if config.backend == "local":
        from elm.sandbox.local import LocalSandbox

        return LocalSandbox(config, hidden_env=hidden_env)
    if config.backend == "docker":
        from elm.sandbox.docker import DockerSandbox

        return DockerSandbox(config, reconnect_s=config.reconnect_s)
    raise SandboxUnavailable(f"unknown sandbox backend {config.backend!r} (use docker or local)")
