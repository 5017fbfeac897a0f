"""The experiment configuration: a typed schema, YAML files and dotlist overrides."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from elm.errors import UserError
from elm.sandbox.image import default_image


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(UserError):
    """A configuration that cannot be used; the message is one line for the user."""


@dataclass
class RunConfig:
    iterations: int = 20
    batch_size: int = 16
    seed: int = 0
    snapshot_every: int = 10
    out: str = "runs"
    name: Optional[str] = None


@dataclass
class EnvironmentConfig:
    name: str = MISSING
    options: dict[str, Any] = field(default_factory=dict)
    seeds: Optional[list[str]] = None


@dataclass
class ArchiveConfig:
    kind: str = "grid"
    bins: Optional[list[int]] = None
    cvt_cells: int = 512
    cvt_samples: int = 20000
    selection: str = "uniform"


@dataclass
class MutationConfig:
    operator: str = "gp"
    # With backend openai: the served model's name; with hf: a hub id or a local folder.
    model: str = "CarperAI/diff-codegen-350m-v2"
    commit_messages: Optional[list[str]] = None
    # Children of one parent share its prompt: one prefill (hf), one request with `n` (openai).
    children_per_parent: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 256  # the request's max_tokens with backend openai
    max_prompt_tokens: int = 1792
    dtype: str = "auto"
    device: str = "auto"
    gp_max_edits: int = 3
    # Where the diff model runs (operator diff): hf (local or Ray workers) or openai (a server
    # speaking the OpenAI protocol: vLLM, SGLang, Ollama, llama.cpp, TGI, a hosted API).
    backend: str = "hf"
    endpoint: Optional[str] = None  # openai: base URL ending in /v1
    api: str = "completions"  # openai: completions (raw <NME>...<DFF> prompt) or chat (instruct models)
    api_key_env: Optional[str] = None  # openai: NAME of the variable holding the key; unset sends none
    request_timeout_s: float = 60.0  # openai: hard deadline of one request, then it is cancelled
    max_retries: int = 2  # openai: retries of a request that timed out or got 429 / 5xx
    concurrency: int = 8  # openai: requests in flight at once
    price_per_mtok: Optional[dict[str, float]] = None  # openai: {prompt: X, completion: Y} per million tokens


@dataclass
class WorkersConfig:
    num_actors: int = 1
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    max_restarts: int = 3
    max_batch_retries: int = 3
    in_flight: int = 2
    distributed_evaluation: bool = False


@dataclass
class RayConfig:
    address: Optional[str] = None


@dataclass
class SandboxConfig:
    backend: str = "docker"
    image: str = field(default_factory=lambda: default_image())  # ELM_SANDBOX_IMAGE overrides
    pool_size: int = 2
    timeout_s: float = 5.0
    memory_mb: int = 256
    cpus: float = 1.0
    pids_limit: int = 64
    output_limit_bytes: int = 65536
    scratch_mb: int = 64
    reconnect_s: float = 30.0  # how long to wait for a restarted Docker daemon
    transport: str = "auto"  # socket (local daemon), attach (any daemon), auto: see elm/sandbox/docker.py


@dataclass
class ElmConfig:
    run: RunConfig = field(default_factory=RunConfig)
    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    mutation: MutationConfig = field(default_factory=MutationConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)


_CHOICES = {
    "archive.kind": ("grid", "cvt"),
    "archive.selection": ("uniform",),
    "mutation.operator": ("gp", "diff", "null"),
    "mutation.dtype": ("auto", "float32", "bfloat16", "float16"),
    "mutation.backend": ("hf", "openai"),
    "mutation.api": ("completions", "chat"),
    "sandbox.backend": ("docker", "local"),
    "sandbox.transport": ("auto", "socket", "attach"),
}
_POSITIVE = (
    "run.batch_size",
    "run.snapshot_every",
    "mutation.children_per_parent",
    "mutation.max_new_tokens",
    "mutation.request_timeout_s",
    "mutation.concurrency",
    "workers.num_actors",
    "workers.in_flight",
    "sandbox.pool_size",
    "sandbox.timeout_s",
    "sandbox.memory_mb",
)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ElmConfig:
    """Read a YAML file, apply `key=value` overrides, validate, return the typed config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        from_file = OmegaConf.load(path)
    except Exception as error:
        raise ConfigError(f"cannot parse {path}: {_one_line(error)}") from None
    return build_config(from_file, overrides, source=str(path))


def build_config(data: Any, overrides: Sequence[str] = (), source: str = "config") -> ElmConfig:
    """Merge plain data (dict or OmegaConf node) and overrides onto the schema."""
    try:
        schema = OmegaConf.structured(ElmConfig)
        merged = OmegaConf.merge(schema, data or {})
        for override in overrides:
            if "=" not in override:
                raise ConfigError(f"override {override!r} is not key=value")
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        config: ElmConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except ConfigError:
        raise
    except OmegaConfBaseException as error:
        raise ConfigError(f"{source}: {_one_line(error)}") from None
    _validate(config)
    return config


def secret_variables(config: ElmConfig) -> tuple[str, ...]:
    """Environment variables whose values are secrets: never passed to the sandbox."""
    return (config.mutation.api_key_env,) if config.mutation.api_key_env else ()


def config_to_yaml(config: ElmConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def _validate(config: ElmConfig) -> None:
    node = OmegaConf.structured(config)
    for key, allowed in _CHOICES.items():
        value = OmegaConf.select(node, key)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")
    for key in _POSITIVE:
        value = OmegaConf.select(node, key)
        if value <= 0:
            raise ConfigError(f"{key} must be positive; got {value}")
    if config.run.iterations < 0:
        raise ConfigError(f"run.iterations must be >= 0; got {config.run.iterations}")
    if config.archive.bins is not None and any(b <= 0 for b in config.archive.bins):
        raise ConfigError(f"archive.bins must be positive integers; got {config.archive.bins}")
    if config.workers.num_gpus < 0:
        raise ConfigError("workers.num_gpus must be >= 0")
    _validate_served(config.mutation)


def _validate_served(mutation: MutationConfig) -> None:
    """The openai backend's keys: checked whenever they are set, required when it is used."""
    if mutation.max_retries < 0:
        raise ConfigError(f"mutation.max_retries must be >= 0; got {mutation.max_retries}")
    if mutation.api_key_env is not None and not _ENV_NAME.fullmatch(mutation.api_key_env):
        raise ConfigError("mutation.api_key_env is the NAME of an environment variable (like OPENAI_API_KEY), "
                          "never the key itself")
    if mutation.price_per_mtok is not None:
        unknown = set(mutation.price_per_mtok) - {"prompt", "completion"}
        if unknown or any(price < 0 for price in mutation.price_per_mtok.values()):
            raise ConfigError("mutation.price_per_mtok is {prompt: X, completion: Y}, prices >= 0 per million tokens")
    if mutation.backend != "openai" or mutation.operator != "diff":
        return
    if not mutation.endpoint or not mutation.endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"mutation.backend=openai needs mutation.endpoint, a URL ending in /v1; "
                          f"got {mutation.endpoint!r}")


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    key = next((line for line in lines if line.startswith("full_key:")), None)
    return f"{text} ({key})" if key and key not in text else text
