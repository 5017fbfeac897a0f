"""The experiment configuration: a typed schema, YAML files and dotlist overrides.

The schema is the one place a key is described: its type, default, a one-line
description and the values it accepts (`key(...)`). Loading checks every key against it
once; the code that uses a value trusts it. `elm config show` prints the schema with
the resolved values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from functools import reduce
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from elm.errors import UserError
from elm.sandbox.image import default_image

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(UserError):
    """A configuration that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Allowed:
    """The values a key accepts beyond its type: a list of choices and/or a lower bound.
    For a list value the rule holds for every item; null passes where the type allows it."""

    choices: tuple[Any, ...] = ()
    above: float | None = None
    at_least: float | None = None
    at_most: float | None = None

    def problem(self, value: Any) -> str | None:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is None:
                continue
            if self.choices and item not in self.choices:
                return f"must be one of {', '.join(map(str, self.choices))}"
            if self.above is not None and not item > self.above:
                return f"must be > {self.above:g}"
            if self.at_least is not None and not item >= self.at_least:
                return f"must be >= {self.at_least:g}"
            if self.at_most is not None and not item <= self.at_most:
                return f"must be <= {self.at_most:g}"
        return None

    def text(self) -> str:
        if self.choices:
            return " | ".join(map(str, self.choices))
        bounds = [f"{sign} {bound:g}" for sign, bound in
                  ((">", self.above), (">=", self.at_least), ("<=", self.at_most)) if bound is not None]
        return ", ".join(bounds)


def key(default: Any = MISSING, *, about: str, choices: Sequence[Any] = (), above: float | None = None,
        at_least: float | None = None, at_most: float | None = None,
        factory: Callable[[], Any] | None = None) -> Any:
    """A config key: its default, a one-line description and the values it accepts."""
    metadata = {"about": about, "allowed": Allowed(tuple(choices), above, at_least, at_most)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RunConfig:
    iterations: int = key(20, at_least=0, about="iterations to run (a resumed run continues up to this)")
    batch_size: int = key(16, above=0, about="children generated and evaluated per iteration")
    seed: int = key(0, about="seed of parent selection, mutation and the archive")
    snapshot_every: int = key(10, above=0, about="store a snapshot of the archive every this many iterations")
    out: str = key("runs", about="folder that holds the run folders (when --out is not given)")
    name: str | None = key(None, about="run folder name prefix (default: the environment's name)")


@dataclass
class EnvironmentConfig:
    name: str = key(about="built-in name, entry point name, or module:Class")
    options: dict[str, Any] = key(factory=dict, about="keyword options of the environment (see `elm env list`)")
    seeds: list[str] | None = key(None, about="names of the seed programs to start from (null: all)")


@dataclass
class ArchiveConfig:
    kind: str = key("grid", choices=("grid", "cvt"), about="MAP-Elites grid, or a CVT archive of cvt_cells cells")
    bins: list[int] | None = key(None, above=0,
                                    about="grid cells per descriptor (null: the environment's bins)")
    cvt_cells: int = key(512, above=0, about="cells of a CVT archive")
    cvt_samples: int = key(20000, above=0, about="random samples the CVT centroids are fitted to")
    selection: str = key("uniform", choices=("uniform",), about="how parents are drawn from the elites")


@dataclass
class MutationConfig:
    operator: str = key("gp", choices=("gp", "diff", "null"),
                        about="diff: the diff model; gp: random source edits; null: copies (a baseline)")
    model: str = key("CarperAI/diff-codegen-350m-v2",
                     about="diff model: a hub id or a local folder (hf); the served model's name (openai)")
    commit_messages: list[str] | None = key(
        None, about="commit messages the diff model is prompted with (null: the environment's)")
    message_selection: str = key(
        "weighted", choices=("weighted", "bandit"),
        about="how commit messages are drawn: weighted by weight, or bandit (Thompson sampling rewarded by placements)")
    children_per_parent: int = key(
        1, above=0, about="children sampled from one prompt (one prefill with hf, one request with `n` with openai)")
    temperature: float = key(0.8, at_least=0, about="sampling temperature of the diff model (0: greedy)")
    top_p: float = key(0.95, above=0, at_most=1, about="nucleus sampling mass of the diff model")
    max_new_tokens: int = key(256, above=0, about="longest diff the model may write, in tokens (openai: max_tokens)")
    max_prompt_tokens: int = key(1792, above=0, about="longest prompt, in tokens (the model's context caps it)")
    dtype: str = key("auto", choices=("auto", "float32", "bfloat16", "float16"),
                     about="weights' number type; auto: bfloat16 on GPU, float32 on CPU")
    device: str = key("auto", about="torch device of the model (auto, cpu, cuda, cuda:1)")
    gp_max_edits: int = key(3, above=0, about="most edits of one gp mutation")
    backend: str = key("hf", choices=("hf", "openai"),
                       about="where the diff model runs: hf (local or Ray workers) or openai (a served model)")
    endpoint: str | None = key(None, about="openai: the server's base URL, ending in /v1")
    api: str = key("completions", choices=("completions", "chat"),
                   about="openai: completions (the raw <NME>...<DFF> prompt) or chat (instruct models)")
    api_key_env: str | None = key(None, about="openai: NAME of the environment variable holding the key (unset: none)")
    request_timeout_s: float = key(60.0, above=0, about="openai: hard deadline of one request, then it is cancelled")
    max_retries: int = key(2, at_least=0, about="openai: retries of a request that timed out or got 429 / 5xx")
    concurrency: int = key(8, above=0, about="openai: requests in flight at once")
    price_per_mtok: dict[str, float] | None = key(
        None, about="openai: {prompt: X, completion: Y}, price per million tokens (gives the cost)")
    finetune_every: int = key(
        0, at_least=0, about="online stage 2: fine-tune the diff model every this many iterations (0: never)")
    finetune_steps: int = key(50, above=0, about="online stage 2: training steps of each fine-tuning")
    finetune_batch_size: int = key(4, above=0, about="online stage 2: packed sequences per training step")
    finetune_select: str = key("improved", choices=("placed", "improved", "ok", "all"),
                               about="online stage 2: which of the run's diffs it trains on")
    finetune_data: str | None = key(
        None, about="online stage 2: an elm dataset file mixed in (default: the one in the model's finetune.json)")


@dataclass
class WorkersConfig:
    num_actors: int = key(1, above=0, about="diff model copies (Ray actors)")
    num_gpus: float = key(0.0, at_least=0, about="GPUs reserved per actor (0.5: two copies per GPU; 0: CPU)")
    num_cpus: float = key(1.0, above=0, about="CPUs reserved per actor (on CPU also torch's threads)")
    max_restarts: int = key(3, at_least=0, about="times Ray restarts an actor that died")
    max_batch_retries: int = key(3, at_least=0, about="times a share of a batch lost with its actor "
                                 "(diff worker or node evaluator) is sent again")
    share_timeout_s: float = key(3600.0, above=0, about="longest a diff worker or node evaluator may hold one "
                                 "share of a batch; then it is restarted and the share sent again, in seconds")
    in_flight: int = key(2, above=0, about="batches generating at once; 1 is the sequential loop")
    distributed_evaluation: bool = key(False, about="evaluate candidates on every node of the Ray cluster")


@dataclass
class RayConfig:
    address: str | None = key(None, about="Ray cluster to join (HEAD_IP:6379, auto); null: a local Ray")


@dataclass
class SandboxConfig:
    backend: str = key("docker", choices=("docker", "local"),
                       about="docker: locked-down containers; local: processes on this machine")
    image: str = key(factory=default_image,
                     about="sandbox image (default: $ELM_SANDBOX_IMAGE, else elm-sandbox:latest)")
    pool_size: int = key(2, above=0, about="warm runners (containers or processes) evaluating at once")
    timeout_s: float = key(5.0, above=0, about="wall-clock limit of one candidate, in seconds")
    memory_mb: int = key(256, above=0, about="memory limit of one candidate, in MB")
    cpus: float = key(1.0, above=0, about="CPUs of one runner")
    pids_limit: int = key(64, above=0, about="most processes and threads of one runner")
    output_limit_bytes: int = key(65536, above=0, about="stdout and stderr kept per candidate, in bytes")
    scratch_mb: int = key(64, above=0, about="size of the scratch folder a candidate may write to, in MB")
    reconnect_s: float = key(30.0, at_least=0, about="how long to wait for a restarted Docker daemon, in seconds")
    transport: str = key("auto", choices=("auto", "socket", "attach"),
                         about="socket: a unix socket (local daemon); attach: container stdin/stdout; "
                               "auto: the one that fits the daemon")
    runtime: str = key("runc", choices=("runc", "runsc"),
                       about="container runtime: runc, or runsc (gVisor; bash scripts/setup.sh --gvisor)")


@dataclass
class ElmConfig:
    run: RunConfig = field(default_factory=RunConfig)
    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    mutation: MutationConfig = field(default_factory=MutationConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)


@dataclass(frozen=True)
class KeyInfo:
    """One leaf of the schema: dotted key, type, what it is for and what it accepts."""

    key: str
    type_text: str
    about: str
    allowed: Allowed


def schema_keys(schema: type = ElmConfig, prefix: str = "") -> list[KeyInfo]:
    """Every leaf key of the schema, in declaration order."""
    hints = get_type_hints(schema)
    found: list[KeyInfo] = []
    for item in fields(schema):
        hint = hints[item.name]
        if is_dataclass(hint):
            found.extend(schema_keys(hint, f"{prefix}{item.name}."))  # type: ignore[arg-type]
            continue
        found.append(KeyInfo(f"{prefix}{item.name}", _type_text(hint), item.metadata.get("about", ""),
                             item.metadata.get("allowed", Allowed())))
    return found


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ElmConfig:
    """Read a YAML file, apply `key=value` overrides, validate, return the typed config."""
    return build_config(read_config_file(path), overrides, source=str(path))


def read_config_file(path: str | Path) -> Any:
    """The YAML of a config file, not yet merged onto the schema."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return OmegaConf.load(path)
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot parse {path}: {_yaml_problem(error)}") from None
    except Exception as error:
        raise ConfigError(f"cannot parse {path}: {_one_line(error)}") from None


def build_config(data: Any, overrides: Sequence[str] = (), source: str = "config") -> ElmConfig:
    """Merge plain data (dict or OmegaConf node) and overrides onto the schema."""
    merged = _merged(data, overrides, source)
    try:
        config: ElmConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as error:
        raise ConfigError(f"{source}: {_one_line(error)}") from None
    _validate(_leaves(merged))
    _validate_served(config.mutation)
    _validate_online_finetune(config.mutation)
    return config


def secret_variables(config: ElmConfig) -> tuple[str, ...]:
    """Environment variables whose values are secrets: never passed to the sandbox."""
    return (config.mutation.api_key_env,) if config.mutation.api_key_env else ()


def config_to_yaml(config: ElmConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def resolved_values(data: Any = None, overrides: Sequence[str] = (), source: str = "config") -> dict[str, Any]:
    """Dotted key -> value of a config (plain data or OmegaConf node) plus overrides, checked
    against the schema like build_config; a required key that is not set reads `???`."""
    merged = _merged(data, overrides, source)
    if not OmegaConf.is_missing(merged.environment, "name"):
        build_config(merged, source=source)
    leaves = _leaves(merged)
    _validate(leaves)
    return leaves


def _merged(data: Any, overrides: Sequence[str], source: str) -> Any:
    """The schema with `data` and then each override merged onto it; a value of the wrong
    shape is one line naming where it came from (the file, or the override)."""
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} is not key=value")
    if data is not None and not isinstance(data, (dict, DictConfig)):
        kind = "a list" if isinstance(data, (list, tuple)) or OmegaConf.is_list(data) else repr(data)
        raise ConfigError(f"{source}: the top level must be sections such as run: and environment:, "
                          f"not {kind}")
    merged = _merge_onto(OmegaConf.structured(ElmConfig), data or {}, source)
    for override in overrides:
        merged = _merge_onto(merged, _parse_override(override), f"override {override}")
    return merged


def _merge_onto(base: DictConfig, data: Any, source: str) -> DictConfig:
    """`data` merged onto `base`; a value of the wrong shape is named with its `source`."""
    for item in fields(ElmConfig):  # `run: 5`: a value where a section belongs
        value = data.get(item.name) if hasattr(data, "get") else None
        if value is not None and not isinstance(value, (dict, DictConfig)):
            raise ConfigError(f"{source}: {item.name} is a section of keys (e.g. {item.name}."
                              f"{_first_key(item.name)}), not a value; got {value!r}")
    try:
        return OmegaConf.merge(base, data)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(f"{source}: {_one_line(error)}") from None


def _parse_override(override: str) -> DictConfig:
    try:
        return OmegaConf.from_dotlist([override])
    except yaml.YAMLError as error:
        raise ConfigError(f"cannot parse override {override!r}: {_yaml_problem(error)}") from None
    except OmegaConfBaseException as error:
        raise ConfigError(f"override {override}: {_one_line(error)}") from None


def _first_key(section: str) -> str:
    return schema_keys(get_type_hints(ElmConfig)[section])[0].key


def _leaves(node: Any) -> dict[str, Any]:
    """Dotted key -> plain value of every schema key (`???` where a required one is unset)."""
    plain = OmegaConf.to_container(node, throw_on_missing=False)
    return {info.key: reduce(lambda part, name: part[name], info.key.split("."), plain) for info in schema_keys()}


def _validate(values: dict[str, Any]) -> None:
    for info in schema_keys():
        value = values[info.key]
        problem = None if value == MISSING else info.allowed.problem(value)
        if problem:
            raise ConfigError(f"{info.key} {problem}; got {value!r}")


def _type_text(hint: Any) -> str:
    arguments = [argument for argument in get_args(hint) if argument is not type(None)]
    if get_origin(hint) is Union:
        return f"{_type_text(arguments[0])} or null"
    if get_origin(hint) is list:
        return f"list of {_type_text(arguments[0])}"
    if get_origin(hint) is dict:
        return "mapping"
    return {int: "integer", float: "number", str: "text", bool: "true | false"}.get(hint, str(hint))


def _validate_served(mutation: MutationConfig) -> None:
    """The openai backend's keys: checked whenever they are set, required when it is used."""
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


def _validate_online_finetune(mutation: MutationConfig) -> None:
    if mutation.finetune_every and mutation.operator != "diff":
        raise ConfigError("mutation.finetune_every fine-tunes the diff model; it needs mutation.operator=diff")


# Examples for the keys whose value is a list, for an error that says so.
_LIST_EXAMPLES = {
    "archive.bins": "[10, 10]",
    "environment.seeds": "[first, second]",
    "mutation.commit_messages": "[\"Fix the bug.\", \"Make it faster.\"]",
}


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
