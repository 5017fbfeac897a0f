"""Online stage 2: the run fine-tunes its diff model on its own diffs and swaps the weights in.

`OnlineFinetuning` wraps the Ray diff mutator. After every `mutation.finetune_every`-th
committed iteration it starts `elm finetune RUN_DIR` in a separate process (the committed
children selected by `mutation.finetune_select`, plus `mutation.finetune_data` if set;
`mutation.finetune_steps` steps from the current weights, into RUN_DIR/models/vN), so
generation and evaluation go on with the current weights meanwhile. When the process has
finished, the workers swap to the new weights (`RayDiffMutator.load_model`), and the next
iteration's commit stores a `model_updated` event: version, model folder, dataset size,
held-out loss before and after. A fine-tuning that fails (too few examples yet, say) is a
`finetune_failed` event and is tried again at the next multiple.

Each child carries the version of the weights that wrote it (`extras["model_version"]`; 0
is `mutation.model`). A resumed run starts from its latest `model_updated` version. The
training process dies with the run (parent-death signal), so a killed run leaves none.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from elm.config import ConfigError, ElmConfig
from elm.finetune import RESULT_FILE
from elm.mutation import Mutator, MutatorWrapper
from elm.mutation.workers import RayDiffMutator
from elm.store import IterationMetrics

MODELS_FOLDER = "models"
MODEL_UPDATED = "model_updated"
FINETUNE_FAILED = "finetune_failed"
_PR_SET_PDEATHSIG = 1

Event = tuple[str, dict[str, Any]]


def latest_model(events: Sequence[dict[str, Any]]) -> tuple[str, int] | None:
    """(model folder, version) of a run's last `model_updated` event, or None."""
    updates = [event["detail"] for event in events if event["kind"] == MODEL_UPDATED]
    return (updates[-1]["model"], int(updates[-1]["version"])) if updates else None


class OnlineFinetuning(MutatorWrapper):
    """A Mutator: the wrapped diff mutator plus the fine-tuning schedule (see module doc)."""

    mutator: RayDiffMutator

    def __init__(self, mutator: Mutator, config: ElmConfig, run_dir: Path, events: Sequence[dict[str, Any]]) -> None:
        if not isinstance(mutator, RayDiffMutator):
            raise ConfigError("mutation.finetune_every needs the Ray diff workers, which can swap weights")
        super().__init__(mutator)
        self.settings = config.mutation
        self.device = "cuda" if config.workers.num_gpus > 0 else "cpu"
        self.run_dir = Path(run_dir)
        self.model, self.version = config.mutation.model, 0
        self._training: subprocess.Popen | None = None
        self._training_version = 0
        self._training_inputs: list[str] = []
        self._events: list[Event] = []
        latest = latest_model(events)
        if latest is not None:
            self.model, self.version = latest
            self.mutator.load_model(self.model, self.version)

    # -- the Mutator protocol -----------------------------------------------------------------

    def take_events(self) -> list[Event]:
        self._check_training()
        events, self._events = self._events, []
        return self.mutator.take_events() + events

    def close(self) -> None:
        self.stop_training()
        self.mutator.close()

    def stop_training(self) -> None:
        """End a fine-tuning still running (the run is over; its weights would go unused)."""
        if self._training is not None and self._training.poll() is None:
            self._training.kill()
            self._training.wait()
        self._training = None

    # -- the schedule ---------------------------------------------------------------------------

    def after_iteration(self, metrics: IterationMetrics) -> None:
        """Called once an iteration is committed: starts a fine-tuning on every K-th."""
        every = self.settings.finetune_every
        if metrics.iteration > 0 and metrics.iteration % every == 0 and self._training is None:
            self._start(self.version + 1)

    def _start(self, version: int) -> None:
        out = self.run_dir / MODELS_FOLDER / f"v{version}"
        shutil.rmtree(out, ignore_errors=True)  # left by a run killed while training
        out.parent.mkdir(parents=True, exist_ok=True)
        inputs = [str(self.run_dir), *self._base_data()]
        command = [sys.executable, "-m", "elm.cli", "finetune", *inputs, "--model", self.model,
                   "--select", self.settings.finetune_select, "--steps", str(self.settings.finetune_steps),
                   "--batch-size", str(self.settings.finetune_batch_size),
                   "--device", self.device, "--out", str(out), "--applied-check", "0", "--json", "--quiet"]
        self._training_inputs = inputs
        log = out.parent / f"v{version}.log"
        with log.open("w") as stderr:
            self._training = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                              preexec_fn=_die_with_parent)
        self._training_version = version

    def _base_data(self) -> list[str]:
        """`mutation.finetune_data`; without it, the data `elm finetune` trained the
        starting model on (named in its finetune.json), so the model keeps what it learned."""
        if self.settings.finetune_data:
            return [self.settings.finetune_data]
        record = Path(self.settings.model) / RESULT_FILE
        if not record.is_file():
            return []
        inputs = json.loads(record.read_text()).get("inputs") or []
        return [path for path in inputs if Path(path).exists() and Path(path).resolve() != self.run_dir.resolve()]

    def _check_training(self) -> None:
        process = self._training
        if process is None or process.poll() is None:
            return
        self._training = None
        output = process.stdout.read() if process.stdout else ""
        version = self._training_version
        log = self.run_dir / MODELS_FOLDER / f"v{version}.log"
        if process.returncode != 0:
            reason = _last_line(log) or f"exit code {process.returncode}"
            self._events.append((FINETUNE_FAILED, {"version": version, "reason": reason}))
            return
        result = json.loads(output.strip().splitlines()[-1])
        self.model, self.version = result["out"], version
        self.mutator.load_model(self.model, self.version)
        self._events.append((MODEL_UPDATED, {
            "version": version, "model": result["out"], "examples": result["examples"],
            "heldout_examples": result["heldout_examples"], "eval_loss_before": result["eval_loss_before"],
            "eval_loss_after": result["eval_loss_after"], "steps": result["steps"],
            "inputs": self._training_inputs,
        }))


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when the run's process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""
