"""An experiment: one run folder, started from a config or resumed from where it stopped.

Everything that can be checked is checked before the run folder is created, so a bad
config, an unknown environment or seed leaves nothing behind; a run that fails before it
commits its first iteration (no seed program is valid) removes what it wrote.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from elm import __version__
from elm.archive import Archive
from elm.config import ElmConfig, config_to_yaml, load_config, secret_variables
from elm.environment import Environment, EnvironmentLoadError, load_environment, seed_programs
from elm.errors import UserError
from elm.evaluator import Evaluator
from elm.loop import EvolutionLoop, IterationListener
from elm.mutation import make_mutator
from elm.sandbox import Sandbox, open_sandbox
from elm.store import READ_ERRORS, STORE_FILE, RunStore

CONFIG_FILE = "config.yaml"
# What starting a run writes into its folder (SQLite adds the -wal and -shm files).
_RUN_FILES = (CONFIG_FILE, STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm")
_T = TypeVar("_T")


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
    environment = _from_plugin(config, "loading it", lambda: open_environment(config))
    # An unknown seed name is refused before the folder exists.
    _from_plugin(config, "seeds()", lambda: seed_programs(environment))
    archive = Archive(environment.descriptor_space, config.archive,
                      qd_offset=environment.qd_offset, seed=config.run.seed)
    run_dir = new_run_dir(config, out)
    with _resources(config, environment) as (sandbox, mutator), _removed_unless_committed(run_dir):
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
    try:
        _refuse_shortening(config, store.last_iteration())
        meta = store.meta()
        environment = _from_plugin(config, "loading it", lambda: open_environment(config))
        layout = meta["archive"]
        archive = Archive(environment.descriptor_space, config.archive, qd_offset=meta["qd_offset"],
                          centroids=layout.get("centroids"), seed=config.run.seed)
        if archive.cells != layout["cells"]:
            raise UserError("the archive shape differs from the run's; archive settings cannot change on resume")
        with _resources(config, environment) as (sandbox, mutator):
            if overrides:  # the folder and the store both describe the run as it now continues
                (run_dir / CONFIG_FILE).write_text(config_to_yaml(config))
                store.set_meta("config", _config_data(config))
            _run_loop(config, environment, archive, sandbox, mutator, store, on_iteration)
    finally:
        store.close()
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


def _refuse_shortening(config: ElmConfig, last_iteration: int | None) -> None:
    if last_iteration is not None and config.run.iterations < last_iteration:
        raise UserError(
            f"run.iterations={config.run.iterations} is below the {last_iteration} iterations this run "
            f"has already committed; a run cannot be shortened (give {last_iteration} or more)")


def _from_plugin(config: ElmConfig, what: str, call: Callable[[], _T]) -> _T:
    """Run environment code before the run starts: its failure is one line, not a traceback."""
    try:
        return call()
    except UserError:
        raise
    except Exception as error:
        raise EnvironmentLoadError(f"environment {config.environment.name!r}: {what} raised "
                                   f"{type(error).__name__}: {error}") from error


@contextlib.contextmanager
def _removed_unless_committed(run_dir: Path) -> Iterator[None]:
    """A run that fails before committing its first iteration leaves no folder behind
    (nothing is lost: nothing was committed), so the same --out can be used again."""
    existed = run_dir.exists()
    ours = [name for name in _RUN_FILES if not (run_dir / name).exists()]
    try:
        yield
    except BaseException:
        if not _has_committed_iteration(run_dir):
            for name in ours:
                (run_dir / name).unlink(missing_ok=True)
            if not existed:
                with contextlib.suppress(OSError):
                    run_dir.rmdir()  # only when empty: files we did not write stay
        raise


def _has_committed_iteration(run_dir: Path) -> bool:
    if not (run_dir / STORE_FILE).is_file():
        return False
    try:
        store = RunStore.open(run_dir, readonly=True)
    except UserError:
        return True  # unreadable: keep it rather than guess
    try:
        return store.last_iteration() is not None
    except READ_ERRORS:
        return True
    finally:
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


def _config_data(config: ElmConfig) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(config))  # type: ignore[return-value]


def run_meta(config: ElmConfig, environment: Environment, archive: Archive) -> dict:
    """What a new run's store keeps about how it was started."""
    from dataclasses import asdict

    from elm.mutation.prompt import commit_messages_for

    return {
        "config": _config_data(config),
        "environment": config.environment.name,
        "environment_options": dict(config.environment.options),
        "archive": archive.layout(),
        "qd_offset": environment.qd_offset,
        "commit_messages": [asdict(m) for m in commit_messages_for(config, environment)],
        "created_at": time.time(),
        "elm_version": __version__,
    }
