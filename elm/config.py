"""The experiment configuration: a typed schema, YAML files and dotlist overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
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
    "sandbox.backend": ("docker", "local"),
    "sandbox.transport": ("auto", "socket", "attach"),
}
_POSITIVE = (
    "run.batch_size",
    "run.snapshot_every",
    "mutation.children_per_parent",
    "mutation.max_new_tokens",
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
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot parse {path}: {_yaml_problem(error)}") from None
    except Exception as error:
        raise ConfigError(f"cannot parse {path}: {_one_line(error)}") from None
    return build_config(from_file, overrides, source=str(path))


def build_config(data: Any, overrides: Sequence[str] = (), source: str = "config") -> ElmConfig:
    """Merge plain data (dict or OmegaConf node) and overrides onto the schema."""
    if data is not None and not isinstance(data, (dict, DictConfig)):
        kind = "a list" if isinstance(data, (list, tuple)) or OmegaConf.is_list(data) else repr(data)
        raise ConfigError(f"{source}: the top level must be sections such as run: and environment:, "
                          f"not {kind}")
    merged = _merged(OmegaConf.structured(ElmConfig), data or {}, source)
    for override in overrides:
        merged = _merged(merged, _parse_override(override), f"override {override}")
    try:
        config: ElmConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as error:
        raise ConfigError(f"{source}: {_one_line(error)}") from None
    _validate(config)
    return config


def _merged(base: DictConfig, data: Any, source: str) -> DictConfig:
    """`data` merged onto `base`; a value of the wrong shape is named with its `source`."""
    for name in ElmConfig.__dataclass_fields__:  # `run: 5`: a value where a section belongs
        value = data.get(name) if hasattr(data, "get") else None
        if value is not None and not isinstance(value, (dict, DictConfig)):
            raise ConfigError(f"{source}: {name} is a section of keys (e.g. {name}.{_first_key(name)}), "
                              f"not a value; got {value!r}")
    try:
        return OmegaConf.merge(base, data)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(f"{source}: {_one_line(error)}") from None


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


# Examples for the keys whose value is a list, for an error that says so.
_LIST_EXAMPLES = {
    "archive.bins": "[10, 10]",
    "environment.seeds": "[first, second]",
    "mutation.commit_messages": "[\"Fix the bug.\", \"Make it faster.\"]",
}


def _parse_override(override: str) -> DictConfig:
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not key=value")
    try:
        return OmegaConf.from_dotlist([override])
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot parse override {override!r}: {_yaml_problem(error)}") from None


def _first_key(section: str) -> str:
    schema = ElmConfig.__dataclass_fields__[section].default_factory  # type: ignore[misc]
    return next(iter(schema.__dataclass_fields__))


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML syntax error as "line L, column C: what is wrong"."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or _one_line(error)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(error, "context", None)
    return f"{where}{problem}" + (f" ({context})" if context else "")


def _one_line(error: BaseException) -> str:
    key = getattr(error, "full_key", None)
    if isinstance(key, str) and "is not a ListConfig" in str(error):
        return f"{key} is a list, e.g. {_LIST_EXAMPLES.get(key, '[a, b]')}"
    if isinstance(key, str) and "to Dict[" in str(error):
        return f"{key} is a mapping, e.g. {{name: value}}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    key = next((line for line in lines if line.startswith("full_key:")), None)
    return f"{text} ({key})" if key and key not in text else text
