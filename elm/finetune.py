"""Fine-tuning the diff model on a run's diffs (the ELM paper's stage 2).

Examples come from `elm dataset` files or straight from run folders (elm.dataset). The
loss counts the completion tokens only: the model learns to write the diff, not the
prompt. Training examples are packed: several go into one sequence of at most
`max_tokens` tokens (positions restart at each example), so no step computes padding.
The learning rate warms up over the first 5% of the budget, then follows a cosine to a
tenth of its peak; the budget is `steps` or `minutes` of training, whichever is given.

Methods: `lora` (peft adapters on the attention and MLP projections, merged into the
weights on save, the default for models of 100M parameters or more), `full`, and
`scratch` (a new small CodeGen and a byte-level BPE tokenizer trained on the training
examples: `elm.mutation.scratch_model`). Every save, final or checkpoint, is a plain
Hugging Face folder that `DiffModel.load` (and so `mutation.model: DIR`) reads.

After training, one diff is sampled for each of up to `applied_check` held-out prompts
and applied to its parent with the mutator's own code: the share that applies is the
figure the held-out loss stands in for (`heldout_applied` in the result).

Checkpoints go to `OUT/checkpoint` every `checkpoint_every` steps and on an interrupt,
written to a fresh folder and renamed into place, so a run killed at any moment leaves
the last one loadable; `resume` continues from it to the same budget.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from elm.dataset import HELDOUT, DiffExample, collect_examples, read_examples
from elm.errors import UserError
from elm.mutation.scratch_model import CodeGenSizes

DEFAULT_MODEL = "CarperAI/diff-codegen-350m-v2"
LORA_FROM_PARAMETERS = 100_000_000
CHECKPOINT = "checkpoint"
RESULT_FILE = "finetune.json"
_TRAINER_STATE = "trainer.pt"
_ADAPTER = "adapter"
_LORA_TARGETS = ["qkv_proj", "out_proj", "fc_in", "fc_out"]
_DEFAULT_LR = {"scratch": 3e-3, "full": 5e-5, "lora": 2e-4}
_WARMUP_SHARE = 0.05
_FINAL_LR_SHARE = 0.1
_EVAL_LIMIT = 128
_IGNORE = -100


@dataclass
class FinetuneOptions:
    inputs: Sequence[str]
    out: Path
    model: str | None = None
    from_scratch: bool = False
    method: str | None = None  # lora, full, or None: by model size
    steps: int | None = None
    minutes: float | None = None
    batch_size: int = 8
    lr: float | None = None
    device: str = "auto"
    resume: bool = False
    select: str = "ok"
    messages: str = "written"
    holdout: float = 0.05
    max_tokens: int = 1024
    checkpoint_every: int = 100
    sizes: CodeGenSizes = field(default_factory=CodeGenSizes)
    vocab_size: int = 2048
    lora_rank: int = 16
    seed: int = 0
    applied_check: int = 32
    applied_temperature: float = 0.3


@dataclass
class _Encoded:
    prompt: list[int]
    completion: list[int]

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.completion)


@dataclass
class _State:
    """What a checkpoint holds besides the weights."""

    step: int = 0
    train_s: float = 0.0
    train_tokens: int = 0
    eval_loss_before: float | None = None
    last_loss: float | None = None


Progress = Callable[[dict[str, Any]], None]


def finetune(options: FinetuneOptions, on_step: Progress | None = None) -> dict[str, Any]:
    """Train, save the model into `options.out` and return the figures (also written to
    OUT/finetune.json)."""
    import torch

    _check(options)
    train, heldout = _split(_load_examples(options))
    torch.manual_seed(options.seed)
    device = _device(options.device)
    model, tokenizer, method, state, optimizer_state = _prepare(options, train, device)
    train_ids, too_long = _encode_all(tokenizer, train, options.max_tokens)
    heldout_ids, _ = _encode_all(tokenizer, heldout[:_EVAL_LIMIT], options.max_tokens)
    if not train_ids or not heldout_ids:
        raise UserError(f"every example is longer than --max-tokens {options.max_tokens}; raise it")
    if state.eval_loss_before is None:
        state.eval_loss_before = held_out_loss(model, heldout_ids, options.batch_size, device)
    trainer = _Trainer(options, model, tokenizer, method, state, train_ids, device, on_step, optimizer_state)
    trainer.train()
    eval_loss_after = held_out_loss(model, heldout_ids, options.batch_size, device)
    _save_model(model, tokenizer, method, options.out)
    shutil.rmtree(options.out / CHECKPOINT, ignore_errors=True)
    applied = _applied_check(options, heldout, device)
    result = {
        "out": str(options.out),
        "inputs": [str(Path(source).resolve()) for source in options.inputs],
        "method": method,
        "model": "scratch" if options.from_scratch else (options.model or DEFAULT_MODEL),
        "parameters": _parameter_count(model, method),
        "examples": len(train_ids),
        "heldout_examples": len(heldout_ids),
        "too_long": too_long,
        "eval_loss_before": round(state.eval_loss_before, 4),
        "eval_loss_after": round(eval_loss_after, 4),
        "steps": state.step,
        "train_tokens": state.train_tokens,
        "train_s": round(state.train_s, 2),
        "train_tokens_per_s": round(state.train_tokens / max(state.train_s, 1e-9), 1),
        "device": str(device),
        "heldout_applied": applied,
    }
    (options.out / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


def held_out_loss(model, examples: Sequence[_Encoded], batch_size: int, device) -> float:
    """Mean cross-entropy per completion token, each example on its own (right-padded)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            rows = [_example_row(example) for example in examples[start:start + batch_size]]
            batch = _collate(rows, device)
            loss_sum, tokens = _loss(model, batch, device)
            total += float(loss_sum)
            count += tokens
    model.train(was_training)
    return total / max(count, 1)


def applied_share(mutator, examples: Sequence[DiffExample], seed: int = 0) -> dict[str, Any]:
    """One diff from `mutator` for each example's prompt, applied to the parent in it: how
    many were sent and how many applied (skipped: prompts too long for the model, or not
    in the diff model's format)."""
    from elm.mutation import MutationRequest
    from elm.mutation.prompt import parse_diff_prompt
    from elm.records import Stage

    requests = []
    for index, example in enumerate(examples):
        try:
            file_name, source, message = parse_diff_prompt(example.prompt)
        except ValueError:  # a dataset's own prompt format: nothing to apply a diff to
            continue
        requests.append(MutationRequest(example.parent_id, file_name, source, message, seed + index))
    children = mutator.propose(requests)
    sent = [child for child in children if child.stage != Stage.SKIPPED]
    applied = sum(child.stage == Stage.APPLIED for child in sent)
    return {"prompts": len(sent), "applied": applied, "share": round(applied / max(len(sent), 1), 4),
            "skipped": len(examples) - len(sent)}


def _applied_check(options: FinetuneOptions, heldout: Sequence[DiffExample], device) -> dict[str, Any] | None:
    """`applied_share` of the saved model on the first `applied_check` held-out examples."""
    if options.applied_check <= 0:
        return None
    from elm.config import MutationConfig
    from elm.mutation.diff_mutator import DiffMutator
    from elm.mutation.model import DiffModel

    settings = MutationConfig(temperature=options.applied_temperature)
    mutator = DiffMutator(DiffModel.load(str(options.out), device=str(device)), settings)
    share = applied_share(mutator, heldout[:options.applied_check], options.seed)
    return {**share, "temperature": options.applied_temperature}


# -- examples -----------------------------------------------------------------------------


def _load_examples(options: FinetuneOptions) -> list[DiffExample]:
    examples: list[DiffExample] = []
    seen: set[tuple[str, str]] = set()
    for source in options.inputs:
        path = Path(source)
        if path.is_dir():
            found, _ = collect_examples([path], options.select, holdout=options.holdout, messages=options.messages)
        elif path.is_file():
            found = read_examples(path)
        else:
            raise UserError(f"no dataset file or run folder at {source}")
        for example in found:
            if (example.prompt, example.completion) not in seen:
                seen.add((example.prompt, example.completion))
                examples.append(example)
    if not examples:
        raise UserError(f"no training examples in {', '.join(map(str, options.inputs))} "
                        f"(selection {options.select!r})")
    if len(examples) < 2:
        raise UserError("one example is not enough: one is needed for training and one held out")
    return examples


def _split(examples: list[DiffExample]) -> tuple[list[DiffExample], list[DiffExample]]:
    """The examples' own split; when none is held out, the 5% (at least one) whose prompts
    hash lowest, so the held-out set does not depend on the order of the input."""
    heldout = [example for example in examples if example.split == HELDOUT]
    train = [example for example in examples if example.split != HELDOUT]
    if heldout and train:
        return train, heldout
    ranked = sorted(examples, key=lambda example: hashlib.sha256(example.prompt.encode()).digest())
    count = max(1, len(ranked) // 20)
    held = {id(example) for example in ranked[:count]}
    return ([example for example in examples if id(example) not in held],
            [example for example in examples if id(example) in held])


def _encode_all(tokenizer, examples: Sequence[DiffExample], max_tokens: int) -> tuple[list[_Encoded], int]:
    encoded, too_long = [], 0
    for example in examples:
        item = _Encoded(tokenizer.encode(example.prompt, add_special_tokens=False),
                        tokenizer.encode(example.completion, add_special_tokens=False))
        if item.length > max_tokens:
            too_long += 1
        else:
            encoded.append(item)
    return encoded, too_long


def _example_row(example: _Encoded) -> tuple[list[int], list[int], list[int]]:
    """(input ids, labels, positions) of one example: labels only on the completion."""
    ids = example.prompt + example.completion
    labels = [_IGNORE] * len(example.prompt) + example.completion
    return ids, labels, list(range(len(ids)))


def pack(examples: Sequence[_Encoded], max_tokens: int) -> list[tuple[list[int], list[int], list[int]]]:
    """Examples in order, several to a row of at most `max_tokens` tokens."""
    rows: list[tuple[list[int], list[int], list[int]]] = []
    current: tuple[list[int], list[int], list[int]] = ([], [], [])
    for example in examples:
        ids, labels, positions = _example_row(example)
        if current[0] and len(current[0]) + len(ids) > max_tokens:
            rows.append(current)
            current = ([], [], [])
        current[0].extend(ids)
        current[1].extend(labels)
        current[2].extend(positions)
    if current[0]:
        rows.append(current)
    return rows


def _collate(rows, device) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _, _ in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), _IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (ids, row_labels, row_positions) in enumerate(rows):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        labels[row, :len(ids)] = torch.tensor(row_labels)
        positions[row, :len(ids)] = torch.tensor(row_positions)
        mask[row, :len(ids)] = 1
    return {"input_ids": input_ids.to(device), "labels": labels.to(device),
            "position_ids": positions.to(device), "attention_mask": mask.to(device)}


def _loss(model, batch: dict[str, Any], device):
    """(summed cross-entropy over the labelled tokens, their count)."""
    import torch

    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits
    targets = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
        ignore_index=_IGNORE, reduction="sum")
    return loss, int((targets != _IGNORE).sum())


# -- the model -----------------------------------------------------------------------------


def _prepare(options: FinetuneOptions, train: Sequence[DiffExample], device):
    """(model in training mode on `device`, tokenizer, method, state, saved optimizer state or None)."""
    checkpoint = options.out / CHECKPOINT
    if options.resume:
        if not (checkpoint / _TRAINER_STATE).is_file():
            raise UserError(f"nothing to resume: no checkpoint in {options.out}")
        return _from_checkpoint(options, checkpoint, device)
    if (options.out / CHECKPOINT).exists() or (options.out / RESULT_FILE).exists():
        raise UserError(f"{options.out} already holds a fine-tuning; continue it with --resume or pick another --out")
    if options.from_scratch:
        from elm.mutation.scratch_model import new_codegen, train_tokenizer

        tokenizer = train_tokenizer([e.prompt + e.completion for e in train], options.vocab_size)
        model, method = new_codegen(tokenizer, options.sizes, options.seed), "scratch"
    else:
        model, tokenizer = _pretrained(options.model or DEFAULT_MODEL, device)
        method = options.method or ("lora" if _parameter_count(model, "full") >= LORA_FROM_PARAMETERS else "full")
        if method == "lora":
            model = _with_lora(model, options.lora_rank)
    return model.to(device).train(), tokenizer, method, _State(), None


def _pretrained(name: str, device):
    from elm.mutation.model import DiffModel

    loaded = DiffModel.load(name, dtype="float32", device=str(device))
    return loaded.model, loaded.tokenizer


def _with_lora(model, rank: int):
    from peft import LoraConfig, get_peft_model

    targets = sorted({name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} & set(_LORA_TARGETS))
    if not targets:
        raise UserError("--lora: the model has none of the projections LoRA adapts "
                        f"({', '.join(_LORA_TARGETS)}); use --full")
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05, target_modules=targets,
                        task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft asks transformers a question it deprecated
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def _from_checkpoint(options: FinetuneOptions, checkpoint: Path, device):
    import torch

    saved = torch.load(checkpoint / _TRAINER_STATE, weights_only=False)
    method = saved["method"]
    if method == "lora":
        from peft import PeftModel

        base, tokenizer = _pretrained(saved["model"], device)
        model = PeftModel.from_pretrained(base, checkpoint / _ADAPTER, is_trainable=True)
    else:
        model, tokenizer = _pretrained(str(checkpoint), device)
    return model.to(device).train(), tokenizer, method, _State(**saved["state"]), saved["optimizer"]


def _save_model(model, tokenizer, method: str, folder: Path) -> None:
    """A plain Hugging Face folder: LoRA adapters are merged into a copy of the weights."""
    from transformers.utils import logging as transformers_logging

    folder.mkdir(parents=True, exist_ok=True)
    plain = copy.deepcopy(model).merge_and_unload() if method == "lora" else model
    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        plain.save_pretrained(folder)
    finally:
        if shown:
            transformers_logging.enable_progress_bar()
    tokenizer.save_pretrained(folder)


def _parameter_count(model, method: str) -> int:
    parameters = model.parameters()
    if method == "lora":
        parameters = (p for p in parameters if p.requires_grad)
    return sum(p.numel() for p in parameters)


def _device(name: str):
    from elm.mutation.model import resolve_device

    return resolve_device(name)


# -- training -------------------------------------------------------------------------------


class _Trainer:
    def __init__(self, options: FinetuneOptions, model, tokenizer, method: str, state: _State,
                 examples: list[_Encoded], device, on_step: Progress | None,
                 optimizer_state: dict | None = None) -> None:
        import torch

        self.options, self.model, self.tokenizer, self.method = options, model, tokenizer, method
        self.state, self.examples, self.device = state, examples, device
        self.on_step = on_step or (lambda figures: None)
        self.peak_lr = options.lr or _DEFAULT_LR[method]
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=self.peak_lr, betas=(0.9, 0.95),
                                           weight_decay=0.0 if method == "lora" else 0.01)
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)

    def train(self) -> None:
        batches = self._batches()
        try:
            while not self._done():
                self._step(next(batches))
                if self.state.step % self.options.checkpoint_every == 0 and not self._done():
                    self.save_checkpoint()
        except KeyboardInterrupt:
            self.save_checkpoint()
            raise

    def progress(self) -> float:
        if self.options.minutes is not None:
            return min(self.state.train_s / (self.options.minutes * 60.0), 1.0)
        if self.options.steps is None:  # the options were checked: one budget is given
            raise ValueError("fine-tuning needs a budget of steps or minutes")
        return min(self.state.step / self.options.steps, 1.0)

    def _done(self) -> bool:
        return self.progress() >= 1.0

    def _step(self, rows) -> None:
        import torch

        started = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.peak_lr, self.progress())
        batch = _collate(rows, self.device)
        try:
            loss_sum, tokens = _loss(self.model, batch, self.device)
            loss = loss_sum / max(tokens, 1)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
            self.optimizer.step()
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not _is_out_of_memory(error):
                raise
            raise UserError(
                f"a batch of {len(rows)} x {batch['input_ids'].shape[1]} tokens does not fit in memory on "
                f"{self.device}; lower --batch-size or --max-tokens") from None
        self.state.step += 1
        self.state.train_s += time.perf_counter() - started
        self.state.train_tokens += int(batch["attention_mask"].sum())
        self.state.last_loss = float(loss.detach())
        self.on_step({"step": self.state.step, "loss": self.state.last_loss, "progress": self.progress(),
                      "tokens_per_s": self.state.train_tokens / max(self.state.train_s, 1e-9),
                      "train_s": self.state.train_s})

    def _batches(self) -> Iterator[list]:
        """Packed rows, `batch_size` at a time, epoch after epoch in a seeded order; on
        resume, the batches already trained on are skipped."""
        import numpy as np

        skip, epoch = self.state.step, 0
        while True:
            order = np.random.default_rng([self.options.seed, epoch]).permutation(len(self.examples))
            rows = pack([self.examples[i] for i in order], self.options.max_tokens)
            for start in range(0, len(rows), self.options.batch_size):
                if skip:
                    skip -= 1
                    continue
                yield rows[start:start + self.options.batch_size]
            epoch += 1

    def save_checkpoint(self) -> None:
        import torch

        final = self.options.out / CHECKPOINT
        fresh = self.options.out / (CHECKPOINT + ".new")
        shutil.rmtree(fresh, ignore_errors=True)
        _save_model(self.model, self.tokenizer, self.method, fresh)
        if self.method == "lora":
            self.model.save_pretrained(fresh / _ADAPTER)
        torch.save({"method": self.method, "model": self.options.model or DEFAULT_MODEL,
                    "optimizer": self.optimizer.state_dict(), "state": asdict(self.state)},
                   fresh / _TRAINER_STATE)
        stale = self.options.out / (CHECKPOINT + ".old")
        shutil.rmtree(stale, ignore_errors=True)
        if final.exists():
            final.rename(stale)
        fresh.rename(final)
        shutil.rmtree(stale, ignore_errors=True)


def learning_rate(peak: float, progress: float) -> float:
    """Linear warmup over the first 5% of the budget, then a cosine down to 10% of `peak`."""
    if progress < _WARMUP_SHARE:
        return peak * max(progress / _WARMUP_SHARE, 0.01)
    decay = (progress - _WARMUP_SHARE) / (1.0 - _WARMUP_SHARE)
    floor = peak * _FINAL_LR_SHARE
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(decay, 1.0)))


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    text = str(error).lower()
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def _check(options: FinetuneOptions) -> None:
    if options.from_scratch and options.model:
        raise UserError("--from-scratch builds a new model; it takes no --model")
    if options.from_scratch and options.method == "lora":
        raise UserError("--lora adapts pretrained weights; a --from-scratch model is trained in full")
    if (options.steps is None) == (options.minutes is None):
        raise UserError("give the training budget as --steps N or --minutes M (one of them)")
    if (options.steps is not None and options.steps <= 0) or (options.minutes is not None and options.minutes <= 0):
        raise UserError("--steps and --minutes must be positive")
    if min(options.batch_size, options.max_tokens, options.checkpoint_every, options.lora_rank) <= 0:
        raise UserError("--batch-size, --max-tokens, --checkpoint-every and --lora-rank must be positive")
    if options.lr is not None and not options.lr > 0:
        raise UserError("--lr must be positive")
    if options.applied_check < 0 or options.applied_temperature < 0:
        raise UserError("--applied-check and --applied-temperature must not be negative")
    problem = options.sizes.problem()
    if options.from_scratch and problem:
        raise UserError(problem)
    if options.from_scratch and options.vocab_size < 300:
        raise UserError("--vocab-size must be at least 300 (the 256 byte symbols and the special tokens)")
