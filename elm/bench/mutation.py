"""Diff-model sampling speed: one shared prefill per parent vs generate(num_return_sequences).

The model has CodeGen-350M-mono's architecture (the diff model's base) with random weights;
every sample is forced to exactly `--new-tokens` tokens, so both methods do the same work
apart from the prefill. Both run in the same process, dtype and device. Also reported: how
tokens/s of the shared-prefill sampler grows with the number of sequences decoded together.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# CodeGen-350M-mono (Salesforce/codegen-350M-mono) as published.
CODEGEN_350M: dict[str, Any] = {
    "vocab_size": 51200,
    "n_positions": 2048,
    "n_ctx": 2048,
    "n_embd": 1024,
    "n_layer": 20,
    "n_head": 16,
    "rotary_dim": 32,
    "activation_function": "gelu_new",
    "bos_token_id": 1,
    "eos_token_id": 50256,
    "tie_word_embeddings": False,
}
_TEMPERATURE = 0.8
_TOP_P = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layers", type=int, default=CODEGEN_350M["n_layer"], help="transformer blocks (20)")
    parser.add_argument("--hidden", type=int, default=CODEGEN_350M["n_embd"], help="embedding width (1024)")
    parser.add_argument("--prompt-tokens", type=int, default=600)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--children", type=int, default=8, help="samples per parent prompt")
    parser.add_argument("--batch-sizes", default="1,4,8,16", help="sequences decoded together (comma-separated)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each measurement; the fastest counts")


def run(args: argparse.Namespace) -> dict:
    import torch

    from elm.mutation.model import DiffModel, resolve_device, resolve_dtype

    sizes = _check_arguments(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    model = DiffModel(_random_codegen(args.layers, args.hidden, args.seed).to(device=device, dtype=dtype))
    random = torch.Generator().manual_seed(args.seed)
    prompt_ids = torch.randint(0, 50000, (args.prompt_tokens,), generator=random).tolist()

    _shared_prefill(model, prompt_ids, 2, 2)  # the first full-length call pays one-time setup costs
    shared, baseline = _compare(model, prompt_ids, args.children, args.new_tokens, args.repeats)
    scaling = [
        _fastest([_shared_prefill(model, prompt_ids, size, args.new_tokens) for _ in range(args.repeats)])
        for size in sizes
    ]
    return {
        "shared_prefill_tok_s": round(shared["tok_s"], 2),
        "generate_tok_s": round(baseline["tok_s"], 2),
        "speedup": round(shared["tok_s"] / baseline["tok_s"], 3),
        "shared_prefill_s": round(shared["seconds"], 3),
        "generate_s": round(baseline["seconds"], 3),
        "batch_scaling": [_scaling_entry(size, timing) for size, timing in zip(sizes, scaling)],
        "children": args.children,
        "repeats": args.repeats,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "layers": args.layers,
        "hidden": args.hidden,
        "parameters_m": round(sum(p.numel() for p in model.model.parameters()) / 1e6, 1),
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def describe(result: dict) -> str:
    lines = [
        f"diff model sampling, {result['parameters_m']}M-parameter CodeGen ({result['layers']} layers, "
        f"width {result['hidden']}), {result['dtype']} on {result['device']} ({result['threads']} threads)",
        f"{result['children']} children of one {result['prompt_tokens']}-token prompt, "
        f"{result['new_tokens']} new tokens each (best of {result['repeats']}):",
        f"  shared prefill             {result['shared_prefill_tok_s']:9.1f} tok/s"
        f"  ({result['shared_prefill_s']} s)",
        f"  generate(num_return_seqs)  {result['generate_tok_s']:9.1f} tok/s  ({result['generate_s']} s)",
        f"  speedup                    {result['speedup']:9.2f}x",
        f"shared prefill by sequences decoded together (best of {result['repeats']}):",
    ]
    for entry in result["batch_scaling"]:
        lines.append(
            f"  {entry['sequences']:3d} sequences  {entry['tok_s']:9.1f} tok/s overall, "
            f"{entry['decode_tok_s']:9.1f} tok/s decoding"
        )
    return "\n".join(lines)


def _random_codegen(layers: int, hidden: int, seed: int):
    import torch
    from transformers import CodeGenConfig, CodeGenForCausalLM

    head_width = hidden // CODEGEN_350M["n_head"]
    rotary_dim = min(CODEGEN_350M["rotary_dim"], head_width)
    config = CodeGenConfig(**{**CODEGEN_350M, "n_layer": layers, "n_embd": hidden, "rotary_dim": rotary_dim})
    torch.manual_seed(seed)
    return CodeGenForCausalLM(config)


def _scaling_entry(size: int, timing: dict) -> dict:
    return {"sequences": size, "tok_s": round(timing["tok_s"], 2), "decode_tok_s": round(timing["decode_tok_s"], 2)}


def _compare(model, prompt: list[int], children: int, new_tokens: int, repeats: int) -> tuple[dict, dict]:
    """Best run of each method; their order alternates so a busy machine hurts both alike."""
    shared_runs, generate_runs = [], []
    for repeat in range(repeats):
        if repeat % 2:
            generate_runs.append(_generate(model, prompt, children, new_tokens))
        shared_runs.append(_shared_prefill(model, prompt, children, new_tokens))
        if not repeat % 2:
            generate_runs.append(_generate(model, prompt, children, new_tokens))
    return _fastest(shared_runs), _fastest(generate_runs)


def _fastest(runs: list[dict]) -> dict:
    return min(runs, key=lambda run: run["seconds"])


def _shared_prefill(model, prompt: list[int], children: int, new_tokens: int) -> dict:
    started = time.perf_counter()
    generation = model.generate_ids(
        [prompt],
        [list(range(children))],
        temperature=_TEMPERATURE,
        top_p=_TOP_P,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        stop_at_record_start=False,
    )
    seconds = time.perf_counter() - started
    _check_length(generation.new_tokens, children, new_tokens, "shared prefill")
    decode_tokens = children * (new_tokens - 1)
    return {
        "seconds": seconds,
        "tok_s": generation.new_tokens / seconds,
        "decode_tok_s": decode_tokens / generation.decode_s if decode_tokens else 0.0,
    }


def _generate(model, prompt: list[int], children: int, new_tokens: int) -> dict:
    import torch

    input_ids = torch.tensor([prompt], device=model.device)
    torch.manual_seed(0)
    started = time.perf_counter()
    with torch.inference_mode():
        output = model.model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=True,
            temperature=_TEMPERATURE,
            top_p=_TOP_P,
            top_k=0,
            num_return_sequences=children,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=CODEGEN_350M["eos_token_id"],
        )
    seconds = time.perf_counter() - started
    produced = output.shape[0] * (output.shape[1] - len(prompt))
    _check_length(produced, children, new_tokens, "generate")
    return {"seconds": seconds, "tok_s": produced / seconds}


def _check_length(produced: int, children: int, new_tokens: int, method: str) -> None:
    if produced != children * new_tokens:
        raise RuntimeError(f"{method} produced {produced} tokens, expected {children} x {new_tokens}")


def _check_arguments(args: argparse.Namespace) -> list[int]:
    """The batch sizes to measure; a UserError for arguments that cannot be run."""
    from elm.errors import UserError

    counts = (args.layers, args.hidden, args.prompt_tokens, args.new_tokens, args.children, args.repeats)
    if min(counts) <= 0 or (args.threads is not None and args.threads <= 0):
        raise UserError("--layers, --hidden, --prompt-tokens, --new-tokens, --children, --repeats, --threads "
                        "must be positive")
    if args.hidden % CODEGEN_350M["n_head"]:
        raise UserError(f"--hidden must be a multiple of {CODEGEN_350M['n_head']} (the number of heads)")
    context = CODEGEN_350M["n_positions"]
    if args.prompt_tokens + args.new_tokens > context:
        raise UserError(f"--prompt-tokens plus --new-tokens must fit the {context}-token context")
    return _batch_sizes(args.batch_sizes)


def _batch_sizes(text: str) -> list[int]:
    from elm.errors import UserError

    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--batch-sizes must be comma-separated integers; got {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise UserError(f"--batch-sizes must be positive integers; got {text!r}")
    return sizes
