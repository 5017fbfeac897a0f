"""A small CodeGen-architecture diff model built from nothing: for offline machines and tests.

`train_tokenizer(texts)` trains a byte-level BPE tokenizer (the end-of-text token and the
diff prompt's record tags as single tokens); `build_codegen(folder, tokenizer, sizes)`
creates a CodeGenForCausalLM with random weights and saves model and tokenizer with
`save_pretrained`, so `DiffModel.load(folder)` reads it exactly like a downloaded model.
`build_tiny_codegen(folder)` does both on a few KB of built-in Python and diff text, in
seconds: the model the pipeline bench and the tests sample from.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

END_OF_TEXT = "<|endoftext|>"
PROMPT_TAGS = ("<NME>", "<BEF>", "<MSG>", "<DFF>")


@dataclass(frozen=True)
class CodeGenSizes:
    """The shape of a scratch CodeGen. `heads` must divide `hidden`; `rotary_dim` must
    be even and at most hidden / heads."""

    layers: int = 4
    hidden: int = 256
    heads: int = 8
    rotary_dim: int = 32
    context: int = 2048

    def problem(self) -> str | None:
        if min(self.layers, self.hidden, self.heads, self.rotary_dim, self.context) <= 0:
            return "model sizes must be positive"
        if self.hidden % self.heads:
            return f"hidden size {self.hidden} is not a multiple of {self.heads} heads"
        if self.rotary_dim % 2 or self.rotary_dim > self.hidden // self.heads:
            return f"rotary_dim {self.rotary_dim} must be even and at most hidden / heads ({self.hidden // self.heads})"
        return None


TINY = CodeGenSizes(layers=2, hidden=64, heads=4, rotary_dim=8, context=2048)

_PYTHON_SAMPLE = '''\
import math


def walker():
    """Build a small walker from joints and muscles."""
    joints = []
    muscles = []
    for index in range(4):
        angle = 2 * math.pi * index / 4
        joints.append((math.cos(angle) * 10.0, math.sin(angle) * 10.0))
    for first in range(len(joints)):
        for second in range(first + 1, len(joints)):
            muscles.append((first, second, 0.5, 1.0))
    return {"joints": joints, "muscles": muscles}


class Square:
    def __init__(self, side: float) -> None:
        self.side = side

    def area(self) -> float:
        return self.side * self.side

    def __repr__(self) -> str:
        return f"Square({self.side!r})"


def draw(size=32):
    pixels = [[0 for _ in range(size)] for _ in range(size)]
    for row in range(size):
        for column in range(size):
            if (row - size // 2) ** 2 + (column - size // 2) ** 2 < (size // 3) ** 2:
                pixels[row][column] = 1
    return pixels
'''

_DIFF_SAMPLE = '''\
<NME> walker.py
<BEF> def walker():
    return {"joints": [], "muscles": []}
<MSG> Add a joint to the walker
<DFF> @@ -1,2 +1,3 @@
 def walker():
-    return {"joints": [], "muscles": []}
+    joints = [(0.0, 0.0)]
+    return {"joints": joints, "muscles": []}
<|endoftext|>
--- a/square.py
+++ b/square.py
@@ -3,4 +3,4 @@ class Square:
     def area(self) -> float:
-        return self.side * self.side
+        return self.side ** 2
'''


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """A byte-level BPE tokenizer trained on `texts`, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    backend.add_tokens(list(PROMPT_TAGS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
    )


def new_codegen(tokenizer, sizes: CodeGenSizes = CodeGenSizes(), seed: int = 0):
    """A CodeGenForCausalLM with random weights sized for `tokenizer`."""
    import torch
    from transformers import CodeGenConfig, CodeGenForCausalLM

    problem = sizes.problem()
    if problem:
        raise ValueError(problem)
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    config = CodeGenConfig(
        vocab_size=len(tokenizer),
        n_positions=sizes.context,
        n_ctx=sizes.context,
        n_embd=sizes.hidden,
        n_layer=sizes.layers,
        n_head=sizes.heads,
        rotary_dim=sizes.rotary_dim,
        bos_token_id=end_id,
        eos_token_id=end_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return CodeGenForCausalLM(config)


def build_codegen(folder: str | Path, tokenizer, sizes: CodeGenSizes = CodeGenSizes(), seed: int = 0) -> Path:
    """Save a random-weight CodeGen and `tokenizer` into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    new_codegen(tokenizer, sizes, seed).save_pretrained(folder)
    return folder


def build_tiny_codegen(folder: str | Path, *, layers: int = TINY.layers, seed: int = 0) -> Path:
    """A 2-layer CodeGen and a 600-token tokenizer trained on built-in samples, in seconds."""
    tokenizer = train_tokenizer([_PYTHON_SAMPLE, _DIFF_SAMPLE] * 4, vocab_size=600)
    sizes = CodeGenSizes(layers=layers, hidden=TINY.hidden, heads=TINY.heads,
                         rotary_dim=TINY.rotary_dim, context=TINY.context)
    return build_codegen(folder, tokenizer, sizes, seed)
