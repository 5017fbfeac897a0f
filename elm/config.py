"""The experiment configuration: a typed schema, YAML files and dotlist overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from elm.errors import UserError
from elm.sandbox.image import default_image


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
    model: str = "CarperAI/diff-codegen-350m-v2"
    commit_messages: Optional[list[str]] = None
    children_per_parent: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 256
    max_prompt_tokens: int = 1792
    dtype: str = "auto"
    device: str = "auto"
    gp_max_edits: int = 3
    # Online stage 2 (diff operator): every `finetune_every` iterations (0: never) the run
    # fine-tunes the model for `finetune_steps` steps on its own `finetune_select` diffs
    # (placed, improved, ok, all) with `finetune_batch_size` packed sequences a step, plus
    # the examples of `finetune_data` (an elm dataset file; by default the data the model
    # was fine-tuned on, named in its finetune.json), in a separate process; the workers
    # then swap to the new weights.
    finetune_every: int = 0
    finetune_steps: int = 50
    finetune_batch_size: int = 4
    finetune_select: str = "improved"
    finetune_data: Optional[str] = None


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
    "mutation.finetune_select": ("placed", "improved", "ok", "all"),
    "sandbox.backend": ("docker", "local"),
    "sandbox.transport": ("auto", "socket", "attach"),
}
_POSITIVE = (
    "run.batch_size",
    "run.snapshot_every",
    "mutation.children_per_parent",
    "mutation.max_new_tokens",
    "mutation.finetune_steps",
    "mutation.finetune_batch_size",
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
    if config.mutation.finetune_every < 0:
        raise ConfigError(f"mutation.finetune_every must be >= 0 (0: never); got {config.mutation.finetune_every}")
    if config.mutation.finetune_every and config.mutation.operator != "diff":
        raise ConfigError("mutation.finetune_every fine-tunes the diff model; it needs mutation.operator=diff")


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    key = next((line for line in lines if line.startswith("full_key:")), None)
    return f"{text} ({key})" if key and key not in text else text
