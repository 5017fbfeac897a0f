"""The diff model: load a causal LM with its tokenizer and sample many children per prompt.

Sampling shares one prefill among all samples of a prompt: the prompts run once as a
left-padded batch, the KV cache is expanded to one row per sample into tensors sized for
the whole generation (`_PreallocatedCache`: a decode step writes one column in place
instead of copying the cache to append it), and a small decode loop draws the new tokens.
Each sample has its own random generator seeded from its own seed, so its tokens depend
on that seed, not on which other samples share the batch (up to the rounding differences
batch shapes can cause). A sample stops at the end-of-text token or
when a new `<NME>` record starts; finished samples leave the batch.

Weights come from a hub id or a local folder. The hub is offline by default
(`HF_HUB_OFFLINE=1` is set before transformers is imported), so a model that is not cached
fails at once with an error that names it and says how to provide it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from elm.errors import UserError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

if TYPE_CHECKING:
    import torch

RECORD_START = "<NME>"
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
# Enough trailing tokens to contain a whole RECORD_START, however it was split.
_RECORD_START_TAIL_TOKENS = 2 * len(RECORD_START)


class ModelLoadError(UserError):
    """The diff model or its tokenizer could not be loaded."""


class PromptTooLongError(ValueError):
    """A prompt does not fit the model's context together with the new tokens."""


@dataclass
class Generation:
    """Token ids drawn for each prompt (one list per sample, stop token excluded)."""

    tokens: list[list[list[int]]]
    prefill_s: float
    decode_s: float

    @property
    def new_tokens(self) -> int:
        return sum(len(sample) for samples in self.tokens for sample in samples)


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks the GPU when there is one; an unusable request is a ModelLoadError."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise ModelLoadError(f"mutation.device {device!r} is not a torch device (cpu, cuda, cuda:1)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"mutation.device is {device!r} but torch sees no CUDA GPU")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 (float16 without bf16 support) on GPU, float32 on CPU.

    Most CPUs have no native bfloat16 matrix units; there bfloat16 runs several times slower
    than float32, so a CPU gets bfloat16 only when asked for.
    """
    import torch

    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype == "float16" and device.type == "cpu":
        raise ModelLoadError("mutation.dtype float16 is not supported on CPU; use bfloat16 or float32")
    return getattr(torch, dtype)


class DiffModel:
    """A causal LM and its tokenizer, ready to sample diffs."""

    def __init__(self, model, tokenizer=None, name: str = "model") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.stop_token_ids = _stop_token_ids(model, tokenizer)
        self.pad_token_id = _pad_token_id(model, tokenizer)

    @classmethod
    def load(cls, name_or_path: str, dtype: str = "auto", device: str = "auto") -> DiffModel:
        """Load from a local folder or a hub id; any failure is one ModelLoadError line."""
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        source = _model_source(name_or_path)
        tokenizer = _load_tokenizer(name_or_path, source)
        model = _load_weights(name_or_path, source, torch_dtype)
        return cls(model.to(torch_device), tokenizer, name=str(name_or_path))

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def context_length(self) -> int:
        """Positions the model can attend to: prompt plus new tokens must fit."""
        config = self.model.config
        length = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if not length:
            raise ModelLoadError(f"{self.name}: the model config states no context length")
        return int(length)

    def prompt_token_limit(self, max_new_tokens: int) -> int:
        return self.context_length - max_new_tokens

    def encode(self, text: str) -> list[int]:
        return self._require_tokenizer().encode(text, add_special_tokens=False, verbose=False)

    def sample(
        self,
        prompts: Sequence[str],
        n: int,
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        seed: int,
    ) -> list[list[str]]:
        """`n` continuations for each prompt, decoded; each sample seeded from `seed`."""
        seeds = [[_derive_seed(seed, prompt, sample) for sample in range(n)] for prompt in range(len(prompts))]
        return self.sample_with_seeds(
            prompts, seeds, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
        )

    def sample_with_seeds(
        self,
        prompts: Sequence[str],
        seeds: Sequence[Sequence[int]],
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
    ) -> list[list[str]]:
        """One continuation per seed: `seeds[i]` lists the seeds of prompt i's samples."""
        prompt_ids = [self.encode(prompt) for prompt in prompts]
        generation = self.generate_ids(
            prompt_ids, seeds, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
        )
        return [[self._decode_continuation(sample) for sample in samples] for samples in generation.tokens]

    def generate_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        seeds: Sequence[Sequence[int]],
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        stop_at_record_start: bool = True,
    ) -> Generation:
        """Shared-prefill sampling on token ids; `temperature` 0 is greedy."""
        import torch

        self._check_lengths(prompt_ids, max_new_tokens)
        if len(prompt_ids) != len(seeds):
            raise ValueError("one list of seeds per prompt is required")
        if stop_at_record_start:
            self._require_tokenizer()
        if not any(seeds):
            return Generation([[] for _ in prompt_ids], prefill_s=0.0, decode_s=0.0)
        with torch.inference_mode():
            return _DecodeRun(self, prompt_ids, seeds, temperature, top_p, stop_at_record_start).run(
                max_new_tokens, min_new_tokens
            )

    def _check_lengths(self, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int) -> None:
        limit = self.prompt_token_limit(max_new_tokens)
        for ids in prompt_ids:
            if not ids:
                raise ValueError("an empty prompt cannot be sampled from")
            if len(ids) > limit:
                raise PromptTooLongError(
                    f"prompt of {len(ids)} tokens exceeds {limit} (context {self.context_length}"
                    f" minus {max_new_tokens} new tokens)"
                )

    def _decode_continuation(self, token_ids: list[int]) -> str:
        text = self._require_tokenizer().decode(token_ids, skip_special_tokens=False)
        return text.split(RECORD_START, 1)[0]

    def _ends_with_record_start(self, token_ids: list[int]) -> bool:
        tail = token_ids[-_RECORD_START_TAIL_TOKENS:]
        return RECORD_START in self.tokenizer.decode(tail, skip_special_tokens=False)

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError(f"{self.name} was built without a tokenizer")
        return self.tokenizer


def _derive_seed(seed: int, *keys: int) -> int:
    """A well-mixed 63-bit seed for one sample, from a run seed and the sample's indices."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches `top_p`."""
    import torch

    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probabilities = sorted_logits.softmax(dim=-1)
    mass_before = probabilities.cumsum(dim=-1) - probabilities
    drop_sorted = mass_before >= top_p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_from_logits(
    logits: torch.Tensor, temperature: float, top_p: float, uniforms: torch.Tensor
) -> torch.Tensor:
    """One token per row by inverse transform: row i takes the token where the cumulative
    probability first exceeds `uniforms[i]` (uniform in [0, 1), drawn from its own seed)."""
    import torch

    probabilities = filter_top_p(logits / temperature, top_p).softmax(dim=-1)
    cumulative = probabilities.cumsum(dim=-1)
    targets = uniforms.to(cumulative.dtype)[:, None] * cumulative[:, -1:]
    picks = torch.searchsorted(cumulative, targets, right=True)
    return picks.clamp(max=logits.shape[-1] - 1).squeeze(-1)


class _DecodeRun:
    """One batched sampling call: prefill the prompts once, expand, decode to the end."""

    def __init__(
        self,
        diff_model: DiffModel,
        prompt_ids: Sequence[Sequence[int]],
        seeds: Sequence[Sequence[int]],
        temperature: float,
        top_p: float,
        stop_at_record_start: bool,
    ) -> None:
        import torch

        self.owner = diff_model
        self.model = diff_model.model
        self.device = diff_model.device
        self.prompt_ids = prompt_ids
        self.counts = [len(group) for group in seeds]
        flat_seeds = [seed for group in seeds for seed in group]
        self.temperature = temperature
        self.top_p = top_p
        self.stop_at_record_start = stop_at_record_start
        self.stop_ids = sorted(diff_model.stop_token_ids)
        self.generators = [torch.Generator(device=self.device).manual_seed(seed) for seed in flat_seeds]
        self.outputs: list[list[int]] = [[] for _ in flat_seeds]

    def run(self, max_new_tokens: int, min_new_tokens: int) -> Generation:
        started = time.perf_counter()
        logits, cache, attention_mask, positions = self._prefill(max_new_tokens)
        prefilled = time.perf_counter()
        active = list(range(len(self.outputs)))
        for step in range(max_new_tokens):
            if step < min_new_tokens:
                logits[:, self.stop_ids] = float("-inf")
            tokens = self._draw(logits, active)
            still_running = self._record(tokens, active, allow_stop=step >= min_new_tokens)
            if step == max_new_tokens - 1 or not any(still_running):
                break
            if not all(still_running):
                keep = [row for row, running in enumerate(still_running) if running]
                active, tokens, positions = _select_rows(keep, active, tokens, positions)
                cache.keep_rows(self._index(keep))
            logits, positions = self._step(tokens, cache, positions)
        finished = time.perf_counter()
        return Generation(self._grouped_outputs(), prefilled - started, finished - prefilled)

    def _prefill(self, max_new_tokens: int):
        from transformers import DynamicCache

        input_ids, attention_mask = _left_pad(self.prompt_ids, self.owner.pad_token_id, self.device)
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        prefill_cache = DynamicCache(config=self.model.config)
        output = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            cache=prefill_cache,
            use_cache=True,
            logits_to_keep=1,
        )
        rows = self._index([prompt for prompt, count in enumerate(self.counts) for _ in range(count)])
        cache = _PreallocatedCache(prefill_cache, rows, attention_mask[rows], max_new_tokens, self.model.dtype)
        logits = output.logits[:, -1, :].float()[rows]
        return logits, cache, attention_mask[rows], positions[rows, -1:]

    def _step(self, tokens, cache: _PreallocatedCache, positions):
        positions = positions + 1
        output = self.model(
            input_ids=tokens[:, None],
            attention_mask=cache.next_mask(),
            position_ids=positions,
            cache=cache,
            use_cache=True,
        )
        return output.logits[:, -1, :].float(), positions

    def _draw(self, logits, active: list[int]):
        import torch

        if self.temperature <= 0:
            return logits.argmax(dim=-1)
        uniforms = torch.cat(
            [torch.rand(1, generator=self.generators[sequence], device=self.device) for sequence in active]
        )
        return sample_from_logits(logits, self.temperature, self.top_p, uniforms)

    def _record(self, tokens, active: list[int], allow_stop: bool) -> list[bool]:
        """Append each row's token; False for rows whose sample just ended."""
        running = []
        for token, sequence in zip(tokens.tolist(), active):
            if allow_stop and token in self.owner.stop_token_ids:
                running.append(False)
                continue
            output = self.outputs[sequence]
            output.append(token)
            ended = allow_stop and self.stop_at_record_start and self.owner._ends_with_record_start(output)
            running.append(not ended)
        return running

    def _index(self, rows):
        import torch

        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def _grouped_outputs(self) -> list[list[list[int]]]:
        grouped, start = [], 0
        for count in self.counts:
            grouped.append(self.outputs[start : start + count])
            start += count
        return grouped


def _select_rows(keep: list[int], active: list[int], tokens, positions):
    import torch

    index = torch.tensor(keep, dtype=torch.long, device=tokens.device)
    return [active[row] for row in keep], tokens[index], positions[index]


class _PreallocatedCache:
    """Every layer's keys and values in tensors with room for all new tokens: each decode
    step writes its column in place, so no step copies the cache (a growing cache copies
    all of it to append one column). The model is given a ready 4-D additive mask, so
    it never asks this cache for sizes; positions come from the caller (left padding)."""

    def __init__(self, prefilled, rows, prompt_mask, max_new_tokens: int, dtype) -> None:
        import torch

        width = prompt_mask.shape[1]
        self.capacity = width + max_new_tokens
        self.keys: list = []
        self.values: list = []
        for layer in prefilled.layers:
            self.keys.append(_room_for(layer.keys.index_select(0, rows), self.capacity))
            self.values.append(_room_for(layer.values.index_select(0, rows), self.capacity))
        self.filled = width  # columns written by every layer
        self.visible = torch.zeros((len(rows), self.capacity), dtype=torch.bool, device=prompt_mask.device)
        self.visible[:, :width] = prompt_mask.bool()
        self.blocked = torch.finfo(dtype).min
        self.dtype = dtype

    def next_mask(self):
        """The additive mask of the next step: the prompt's real tokens, every token drawn
        so far and the one being fed now."""
        import torch

        self.visible[:, self.filled] = True
        zero = torch.zeros((), dtype=self.dtype, device=self.visible.device)
        blocked = torch.full((), self.blocked, dtype=self.dtype, device=self.visible.device)
        return torch.where(self.visible, zero, blocked)[:, None, None, :]

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        column = self.filled
        self.keys[layer_idx][:, :, column:column + 1].copy_(key_states)
        self.values[layer_idx][:, :, column:column + 1].copy_(value_states)
        if layer_idx == len(self.keys) - 1:
            self.filled += 1
        return self.keys[layer_idx], self.values[layer_idx]

    def keep_rows(self, index) -> None:
        """Only these rows go on (the others' samples ended)."""
        self.keys = [keys.index_select(0, index) for keys in self.keys]
        self.values = [values.index_select(0, index) for values in self.values]
        self.visible = self.visible.index_select(0, index)


def _room_for(states, capacity: int):
    """`states` (rows, heads, length, width) copied into zeros with `capacity` positions."""
    import torch

    rows, heads, length, width = states.shape
    room = torch.zeros((rows, heads, capacity, width), dtype=states.dtype, device=states.device)
    room[:, :, :length].copy_(states)
    return room


def _left_pad(prompt_ids, pad_id: int, device):
    import torch

    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for row, ids in enumerate(prompt_ids):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def _stop_token_ids(model, tokenizer) -> frozenset[int]:
    ids: set[int] = set()
    generation_config = getattr(model, "generation_config", None)
    configured = getattr(generation_config, "eos_token_id", None)
    if configured is None:
        configured = model.config.eos_token_id
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer is not None and tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


def _pad_token_id(model, tokenizer) -> int:
    """Any id works for padding (masked out); prefer the tokenizer's own pad or end token."""
    for candidate in (
        getattr(tokenizer, "pad_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
        model.config.pad_token_id if hasattr(model.config, "pad_token_id") else None,
        model.config.eos_token_id,
    ):
        if isinstance(candidate, int):
            return candidate
    return 0


# --- loading -------------------------------------------------------------------------------


def _model_source(name_or_path: str) -> str:
    """'folder' for an existing directory, 'hub' for an id; a missing path is an error."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return "folder"
    looks_like_path = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1
    if path.exists() or looks_like_path:
        raise ModelLoadError(f"model folder not found: {name_or_path}")
    return "hub"


def _load_tokenizer(name_or_path: str, source: str):
    from transformers import AutoTokenizer

    if source == "folder" and not _has_tokenizer_files(Path(name_or_path).expanduser()):
        raise ModelLoadError(
            f"model folder {name_or_path} has no tokenizer ({' or '.join(_TOKENIZER_FILES)}); "
            "save one there with tokenizer.save_pretrained(folder)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except Exception as error:  # any failure here is an unusable model for the user
        raise _load_error(name_or_path, source, "tokenizer", error) from None
    if len(tokenizer) < 2 or not tokenizer.encode("def f():", add_special_tokens=False):
        raise ModelLoadError(f"{name_or_path} has no usable tokenizer (it encodes nothing)")
    tokenizer.padding_side = "left"
    return tokenizer


def _load_weights(name_or_path: str, source: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    try:
        with _quiet_progress_bars():
            return AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
    except Exception as error:  # corrupt or foreign files: one line naming the model
        raise _load_error(name_or_path, source, "weights", error) from None


def _load_error(name_or_path: str, source: str, part: str, error: Exception) -> ModelLoadError:
    if source == "hub" and _hub_offline() and not _is_cached(name_or_path):
        return ModelLoadError(
            f"diff model {name_or_path!r} is not in the local Hugging Face cache and the hub is offline "
            f"(HF_HUB_OFFLINE=1): download it once with `hf download {name_or_path}` (or run with "
            "HF_HUB_OFFLINE=0 where there is network), or set mutation.model to a local model folder"
        )
    reason = " ".join(str(error).split()) or type(error).__name__
    return ModelLoadError(f"cannot load the {part} of diff model {name_or_path!r}: {reason}")


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _is_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id at all
        return False


def _has_tokenizer_files(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _TOKENIZER_FILES)


@contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()
