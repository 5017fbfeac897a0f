"""A tiny CodeGen built at test time: the real loading and sampling path, in seconds.

`build_tiny_codegen(folder)` trains a byte-level BPE tokenizer on a few KB of Python and
diff text, creates a 2-layer CodeGenForCausalLM with random weights and saves both with
`save_pretrained`, so `DiffModel.load(folder)` reads it exactly like a downloaded model.
Test modules import the session-scoped `tiny_codegen_dir` fixture from here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

END_OF_TEXT = "<|endoftext|>"
PROMPT_TAGS = ("<NME>", "<BEF>", "<MSG>", "<DFF>")

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


def build_tiny_codegen(folder: str | Path, *, layers: int = 2, seed: int = 0) -> Path:
    """Save a random-weight CodeGen and a freshly trained tokenizer into `folder`."""
    from transformers import CodeGenConfig, CodeGenForCausalLM

    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    tokenizer.save_pretrained(folder)
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    config = CodeGenConfig(
        vocab_size=len(tokenizer),
        n_positions=2048,
        n_ctx=2048,
        n_embd=64,
        n_layer=layers,
        n_head=4,
        rotary_dim=8,
        bos_token_id=end_id,
        eos_token_id=end_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    CodeGenForCausalLM(config).save_pretrained(folder)
    return folder


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([_PYTHON_SAMPLE, _DIFF_SAMPLE] * 4, trainer)
    backend.add_tokens(list(PROMPT_TAGS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
    )


@pytest.fixture(scope="session")
def tiny_codegen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_codegen(tmp_path_factory.mktemp("tiny-codegen"))
