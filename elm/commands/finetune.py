"""`elm finetune DATA_OR_RUN_DIR --out DIR`: fine-tune the diff model on a run's diffs."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

_DEFAULT_STEPS = 200
_DEFAULT_BATCH = 8
_SCRATCH_BATCH = 2  # more, smaller steps: a scratch model on a CPU learns more per minute


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "finetune", help="fine-tune the diff model (or train a small one from scratch) on runs' diffs")
    parser.add_argument("inputs", nargs="+", metavar="DATA_OR_RUN_DIR",
                        help="elm dataset files (JSONL) or run folders")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="where the model is saved")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", metavar="HUB_ID_OR_FOLDER",
                        help="the model to fine-tune (default CarperAI/diff-codegen-350m-v2)")
    source.add_argument("--from-scratch", action="store_true",
                        help="train a new small CodeGen and its tokenizer on the data")
    method = parser.add_mutually_exclusive_group()
    method.add_argument("--lora", dest="method", action="store_const", const="lora",
                        help="LoRA adapters, merged on save (default for models of 100M parameters or more)")
    method.add_argument("--full", dest="method", action="store_const", const="full", help="train every weight")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help=f"optimizer steps (default {_DEFAULT_STEPS})")
    budget.add_argument("--minutes", type=float, help="minutes of training")
    parser.add_argument("--batch-size", type=int,
                        help=f"packed sequences per step (default {_DEFAULT_BATCH}, {_SCRATCH_BATCH} from scratch)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: 3e-3 scratch, 5e-5 full, 2e-4 LoRA)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--resume", action="store_true", help="continue from DIR's last checkpoint")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    data = parser.add_argument_group("data")
    data.add_argument("--select", default="ok", choices=("placed", "improved", "ok", "all"),
                      help="which children of a run folder are examples (default ok: ran and scored)")
    data.add_argument("--messages", choices=("written", "drawn"), default="written",
                      help="commit messages in a run folder's prompts: written, the one each child carries "
                           "(default); drawn, the one the run drew for it (train on GP diffs for the "
                           "prompts a diff run of the same setup sends)")
    data.add_argument("--holdout", type=float, default=0.05, help="held-out share of a run folder's prompts")
    data.add_argument("--max-tokens", type=int, default=1024,
                      help="longest example and packed sequence, in tokens (default 1024)")
    data.add_argument("--checkpoint-every", type=int, default=100, metavar="N", help="steps between checkpoints")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--applied-check", type=int, default=32, metavar="N",
                      help="after training, sample one diff for each of N held-out prompts and count those "
                           "that apply to their parent (default 32; 0 skips it)")
    data.add_argument("--applied-temperature", type=float, default=0.3,
                      help="sampling temperature of that check (default 0.3)")
    sizes = parser.add_argument_group("--from-scratch model")
    sizes.add_argument("--layers", type=int, default=4,
                       help="(default 4 x 256, 4M parameters: on a CPU, 2 x 128 learns the diffs' "
                            "text but not to copy the lines it changes from the prompt)")
    sizes.add_argument("--hidden", type=int, default=256)
    sizes.add_argument("--heads", type=int, default=8)
    sizes.add_argument("--rotary-dim", type=int, default=32)
    sizes.add_argument("--context", type=int, default=2048, help="positions the model attends to")
    sizes.add_argument("--vocab-size", type=int, default=2048, help="BPE tokens trained on the data")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.set_defaults(handler=_finetune)


def _finetune(args: argparse.Namespace) -> int:
    from elm.finetune import FinetuneOptions, finetune
    from elm.mutation.scratch_model import CodeGenSizes
    from elm.progress import StepProgress

    options = FinetuneOptions(
        inputs=args.inputs, out=args.out, model=args.model, from_scratch=args.from_scratch,
        method=args.method, steps=args.steps if args.steps is not None or args.minutes is not None else _DEFAULT_STEPS,
        minutes=args.minutes,
        batch_size=args.batch_size or (_SCRATCH_BATCH if args.from_scratch else _DEFAULT_BATCH),
        lr=args.lr, device=args.device, resume=args.resume,
        select=args.select, messages=args.messages, holdout=args.holdout, max_tokens=args.max_tokens,
        checkpoint_every=args.checkpoint_every, seed=args.seed,
        applied_check=args.applied_check, applied_temperature=args.applied_temperature, lora_rank=args.lora_rank,
        vocab_size=args.vocab_size,
        sizes=CodeGenSizes(args.layers, args.hidden, args.heads, args.rotary_dim, args.context),
    )
    signal.signal(signal.SIGTERM, _interrupt)  # a terminated run saves its checkpoint too
    with StepProgress(enabled=not args.quiet) as progress:
        result = finetune(options, on_step=progress.update)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['method']}: {result['steps']} steps on {result['examples']} examples, "
              f"{result['train_tokens_per_s']:.0f} tokens/s; held-out loss {result['eval_loss_before']:.3f} "
              f"-> {result['eval_loss_after']:.3f}; model saved to {result['out']}", file=sys.stdout)
        applied = result["heldout_applied"]
        if applied is not None:
            print(f"held-out prompts: {applied['applied']} of {applied['prompts']} sampled diffs apply to their "
                  f"parent (temperature {applied['temperature']:g})", file=sys.stdout)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
