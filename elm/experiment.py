"""An experiment: one run folder, started from a config or resumed from where it stopped.

Everything that can be checked is checked before the run folder is created, so a bad
config or an unknown environment leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from elm import __version__
from elm.archive import Archive
from elm.config import ElmConfig, config_to_yaml, load_config, secret_variables
from elm.environment import Environment, load_environment
from elm.errors import UserError
from elm.evaluator import Evaluator
from elm.loop import EvolutionLoop, IterationListener
from elm.mutation import make_mutator
from elm.sandbox import Sandbox, open_sandbox
from elm.store import STORE_FILE, RunStore

CONFIG_FILE = "config.yaml"


def open_environment(config: ElmConfig) -> Environment:
    options = dict(config.environment.options)
    if config.environment.seeds is not None:
        options["seeds"] = list(config.environment.seeds)
    return load_environment(config.environment.name, options)


def new_run_dir(config: ElmConfig, out: str | Path | None) -> Path:
    if out is not None:
        run_dir = Path(out)
        if (run_dir / STORE_FILE).exists():
            raise UserError(f"{run_dir} already holds a run; continue it with: elm resume {run_dir}")
        return run_dir
    name = config.run.name or Path(config.environment.name.replace(":", "_")).name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(config.run.out) / f"{name}-{stamp}"


def start_run(config: ElmConfig, out: str | Path | None = None,
              on_iteration: IterationListener | None = None) -> Path:
    environment = open_environment(config)
    archive = Archive(environment.descriptor_space, config.archive,
                      qd_offset=environment.qd_offset, seed=config.run.seed)
    run_dir = new_run_dir(config, out)
    with _resources(config, environment) as (sandbox, mutator):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(config_to_yaml(config))
        store = RunStore.create(run_dir, run_meta(config, environment, archive))
        _run_loop(config, environment, archive, sandbox, mutator, store, on_iteration)
    return run_dir


def resume_run(run_dir: str | Path, overrides: Sequence[str] = (),
               on_iteration: IterationListener | None = None) -> Path:
    run_dir = Path(run_dir)
    config = run_config(run_dir, overrides)
    store = RunStore.open(run_dir)
    meta = store.meta()
    environment = open_environment(config)
    layout = meta["archive"]
    archive = Archive(environment.descriptor_space, config.archive, qd_offset=meta["qd_offset"],
                      centroids=layout.get("centroids"), seed=config.run.seed)
    if archive.cells != layout["cells"]:
        raise UserError("the archive shape differs from the run's; archive settings cannot change on resume")
    if overrides:
        (run_dir / CONFIG_FILE).write_text(config_to_yaml(config))
    with _resources(config, environment) as (sandbox, mutator):
        _run_loop(config, environment, archive, sandbox, mutator, store, on_iteration)
    return run_dir


def run_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> ElmConfig:
    """The config a run folder was started with, plus overrides."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"not a run folder (no {CONFIG_FILE}): {run_dir}")
    return load_config(run_dir / CONFIG_FILE, overrides)


def _run_loop(config, environment, archive, sandbox, mutator, store, on_iteration) -> None:
    evaluator = Evaluator(environment, sandbox, config.sandbox)
    if config.mutation.finetune_every:
        mutator, on_iteration = _with_online_finetuning(config, mutator, store, on_iteration)
    loop = EvolutionLoop(config, environment, archive, mutator, evaluator, store, on_iteration)
    try:
        loop.run()
    finally:
        if config.mutation.finetune_every:
            mutator.stop_training()
        store.close()


def _with_online_finetuning(config, mutator, store, on_iteration):
    """The mutator wrapped by the stage-2 schedule, and a listener that drives it."""
    from elm.mutation.online import OnlineFinetuning

    online = OnlineFinetuning(mutator, config, store.path.parent, store.events())

    def listener(metrics) -> None:
        online.after_iteration(metrics)
        if on_iteration is not None:
            on_iteration(metrics)

    return online, listener


@contextlib.contextmanager
def _resources(config: ElmConfig, environment: Environment) -> Iterator[tuple]:
    if config.workers.distributed_evaluation:
        from elm.sandbox.distributed import DistributedSandbox

        sandbox: Sandbox = DistributedSandbox(config)
    else:
        sandbox = open_sandbox(config.sandbox, hidden_env=secret_variables(config))
    try:
        mutator = make_mutator(config, environment)
        try:
            yield sandbox, mutator
        finally:
            mutator.close()
    finally:
        sandbox.close()


def run_meta(config: ElmConfig, environment: Environment, archive: Archive) -> dict:
    """What a new run's store keeps about how it was started."""
    from dataclasses import asdict

    from omegaconf import OmegaConf

    from elm.mutation.prompt import commit_messages_for

    return {
        "config": OmegaConf.to_container(OmegaConf.structured(config)),
        "environment": config.environment.name,
        "environment_options": dict(config.environment.options),
        "archive": archive.layout(),
        "qd_offset": environment.qd_offset,
        "commit_messages": [asdict(m) for m in commit_messages_for(config, environment)],
        "created_at": time.time(),
        "elm_version": __version__,
    }
