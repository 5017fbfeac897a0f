"""Fine-tuning speed: training tokens/s of LoRA against full fine-tuning.

The model has CodeGen-350M-mono's architecture (the diff model's base) with random
weights; both methods train it with the same packed batch of random tokens (loss on the
second half of each row, as on a completion), the same optimizer, device and precision as
`elm finetune`. Each method warms up for one step, then its fastest of `--steps` timed
steps counts.
"""

from __future__ import annotations

import argparse
import time

from elm.bench.mutation import CODEGEN_350M
from elm.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layers", type=int, default=CODEGEN_350M["n_layer"], help="transformer blocks (20)")
    parser.add_argument("--hidden", type=int, default=CODEGEN_350M["n_embd"],
                        help="embedding width (1024); heads stay 64 wide")
    parser.add_argument("--batch-size", type=int, default=4, help="packed sequences per step")
    parser.add_argument("--tokens", type=int, default=512, help="tokens per sequence")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict:
    if min(args.layers, args.hidden, args.batch_size, args.tokens, args.steps, args.lora_rank) <= 0:
        raise UserError("--layers, --hidden, --batch-size, --tokens, --steps and --lora-rank must be positive")
    import torch

    from elm.mutation.model import resolve_device

    device = resolve_device(args.device)
    batch = _batch(args, device)
    figures = {}
    for method in ("full", "lora"):
        model = _model(args, method).to(device).train()
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        seconds = _fastest_step(model, batch, device, args.steps)
        figures[method] = {"tokens_per_s": round(args.batch_size * args.tokens / seconds, 1),
                           "step_s": round(seconds, 4), "trainable_parameters": trainable}
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {
        "lora_tokens_per_s": figures["lora"]["tokens_per_s"],
        "full_tokens_per_s": figures["full"]["tokens_per_s"],
        "lora_speedup": round(figures["lora"]["tokens_per_s"] / figures["full"]["tokens_per_s"], 3),
        "lora": figures["lora"],
        "full": figures["full"],
        "batch_size": args.batch_size,
        "tokens": args.tokens,
        "layers": args.layers,
        "hidden": args.hidden,
        "device": str(device),
        "precision": "bfloat16 autocast" if device.type == "cuda" else "float32",
    }


def describe(result: dict) -> str:
    return "\n".join([
        f"fine-tuning speed: CodeGen-350M architecture ({result['layers']} layers x {result['hidden']}), random "
        f"weights, {result['batch_size']} x {result['tokens']} tokens a step, {result['device']} "
        f"({result['precision']})",
        f"  full  {result['full_tokens_per_s']:10.1f} tokens/s  "
        f"({result['full']['trainable_parameters']:,} trainable parameters)",
        f"  LoRA  {result['lora_tokens_per_s']:10.1f} tokens/s  "
        f"({result['lora']['trainable_parameters']:,} trainable parameters)",
        f"  LoRA / full  {result['lora_speedup']:.2f}x",
    ])


def _model(args: argparse.Namespace, method: str):
    import torch
    from transformers import CodeGenConfig, CodeGenForCausalLM

    from elm.finetune import _with_lora

    torch.manual_seed(args.seed)
    heads = max(1, args.hidden // 64)  # 350M's head width (1024 / 16), kept when shrunk
    config = CodeGenConfig(**{**CODEGEN_350M, "n_layer": args.layers, "n_embd": args.hidden, "n_head": heads,
                              "rotary_dim": min(CODEGEN_350M["rotary_dim"], args.hidden // heads)})
    model = CodeGenForCausalLM(config)
    return _with_lora(model, args.lora_rank) if method == "lora" else model


def _batch(args: argparse.Namespace, device) -> dict:
    import torch

    generator = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, CODEGEN_350M["vocab_size"], (args.batch_size, args.tokens), generator=generator)
    labels = ids.clone()
    labels[:, : args.tokens // 2] = -100  # the prompt half carries no loss
    positions = torch.arange(args.tokens).expand(args.batch_size, -1)
    return {"input_ids": ids.to(device), "labels": labels.to(device), "position_ids": positions.to(device),
            "attention_mask": torch.ones_like(ids).to(device)}


def _fastest_step(model, batch: dict, device, steps: int) -> float:
    import torch

    from elm.finetune import _loss

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for step in range(steps + 1):
        _synchronize(device)
        started = time.perf_counter()
        loss_sum, tokens = _loss(model, batch, device)
        optimizer.zero_grad(set_to_none=True)
        (loss_sum / tokens).backward()
        optimizer.step()
        _synchronize(device)
        if step:  # the first step pays one-time costs
            times.append(time.perf_counter() - started)
    return min(times)


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
