"""`elm finetune` on tiny models: the loss counts completions only, the saved folder loads
as a diff model, checkpoints resume, bad input is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from elm.dataset import DiffExample, completion_for, write_examples
from elm.errors import UserError
from elm.finetune import CHECKPOINT, FinetuneOptions, _Encoded, finetune, learning_rate, pack
from elm.mutation.model import DiffModel
from elm.mutation.prompt import diff_prompt
from elm.mutation.scratch_model import CodeGenSizes
from tests.conftest import run_elm
from tests.tiny_codegen import tiny_codegen_dir  # noqa: F401
from tests.toy_environment import SEED

SMALL = CodeGenSizes(layers=1, hidden=32, heads=2, rotary_dim=8, context=512)


def _examples(count: int = 16) -> list[DiffExample]:
    examples = []
    for index in range(count):
        child = SEED.replace("x = 1.5", f"x = {index}.5").replace("y = -0.5", f"y = -{index % 3}.25")
        examples.append(DiffExample(diff_prompt("point.py", SEED, "Move the point."), completion_for(SEED, child),
                                    "synthetic", index + 1, 0, "gp", None, False))
    return examples


@pytest.fixture
def data_file(tmp_path) -> Path:
    path = tmp_path / "data.jsonl"
    write_examples(_examples(), path)
    return path


def _options(data_file: Path, out: Path, **overrides) -> FinetuneOptions:
    settings = dict(inputs=[str(data_file)], out=out, from_scratch=True, steps=4, batch_size=2,
                    max_tokens=256, sizes=SMALL, vocab_size=300, device="cpu", checkpoint_every=2)
    settings.update(overrides)
    return FinetuneOptions(**settings)


def test_from_scratch_lowers_the_held_out_loss_and_saves_a_loadable_diff_model(data_file, tmp_path):
    result = finetune(_options(data_file, tmp_path / "model", steps=30, lr=3e-3))

    assert result["method"] == "scratch" and result["steps"] == 30
    assert result["examples"] + result["heldout_examples"] == 16 and result["heldout_examples"] >= 1
    assert result["eval_loss_after"] < 0.75 * result["eval_loss_before"]
    assert result["train_tokens_per_s"] > 0
    applied = result["heldout_applied"]
    assert applied["prompts"] + applied["skipped"] == result["heldout_examples"] and applied["temperature"] == 0.3
    assert 0 <= applied["applied"] <= applied["prompts"]
    assert json.loads((tmp_path / "model" / "finetune.json").read_text()) == result
    assert not (tmp_path / "model" / CHECKPOINT).exists()
    model = DiffModel.load(str(tmp_path / "model"))
    assert model.context_length == SMALL.context
    texts = model.sample([diff_prompt("point.py", SEED, "Move the point.")], 2, temperature=0.8, top_p=0.95,
                         max_new_tokens=16, seed=0)
    assert len(texts[0]) == 2


def test_full_and_lora_fine_tuning_of_a_pretrained_folder(tiny_codegen_dir, data_file, tmp_path):
    for method in ("full", "lora"):
        result = finetune(_options(data_file, tmp_path / method, from_scratch=False, model=str(tiny_codegen_dir),
                                   method=method, steps=3))
        assert result["method"] == method
        loaded = DiffModel.load(str(tmp_path / method))  # merged: a plain folder
        assert not any("lora" in name for name, _ in loaded.model.named_parameters())
        original = DiffModel.load(str(tiny_codegen_dir))
        changed = any(not torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(),
                                                              original.model.state_dict().values()))
        assert changed, method
    # small pretrained models default to full fine-tuning
    assert finetune(_options(data_file, tmp_path / "auto", from_scratch=False, model=str(tiny_codegen_dir),
                             steps=1))["method"] == "full"


def test_the_loss_counts_completion_tokens_only():
    example = _Encoded(prompt=[5, 6, 7], completion=[8, 9])
    [(ids, labels, positions)] = pack([example], 16)
    assert ids == [5, 6, 7, 8, 9] and labels == [-100, -100, -100, 8, 9] and positions == [0, 1, 2, 3, 4]


def test_packing_fills_rows_and_restarts_positions():
    examples = [_Encoded([1, 2], [3]), _Encoded([4], [5, 6]), _Encoded([7, 8, 9], [10])]
    rows = pack(examples, 7)
    assert [row[0] for row in rows] == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10]]
    assert rows[0][2] == [0, 1, 2, 0, 1, 2]


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    assert learning_rate(1.0, 0.0) < learning_rate(1.0, 0.04) < learning_rate(1.0, 0.05) == pytest.approx(1.0)
    assert learning_rate(1.0, 0.5) < 1.0
    assert learning_rate(1.0, 1.0) == pytest.approx(0.1)


def test_an_interrupted_run_leaves_a_loadable_checkpoint_and_resumes(data_file, tmp_path, monkeypatch):
    from elm import finetune as module

    out = tmp_path / "model"
    original = module._Trainer._step

    def interrupt_at_step_4(self, rows):
        if self.state.step == 3:
            raise KeyboardInterrupt
        original(self, rows)

    monkeypatch.setattr(module._Trainer, "_step", interrupt_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        finetune(_options(data_file, out, steps=6))
    DiffModel.load(str(out / CHECKPOINT))  # loadable as it is
    with pytest.raises(UserError, match="--resume"):
        finetune(_options(data_file, out, steps=6))
    monkeypatch.setattr(module._Trainer, "_step", original)
    result = finetune(_options(data_file, out, steps=6, resume=True))
    assert result["steps"] == 6
    DiffModel.load(str(out))


def test_a_batch_that_does_not_fit_in_memory_is_a_user_error(data_file, tmp_path, monkeypatch):
    from elm import finetune as module

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(module, "_loss", lambda *a, **k: out_of_memory())
    monkeypatch.setattr(module, "held_out_loss", lambda *a, **k: 1.0)
    with pytest.raises(UserError, match="does not fit in memory.*--batch-size"):
        finetune(_options(data_file, tmp_path / "model"))


@pytest.mark.parametrize("setup, expected", [
    ("empty", "no training examples"),
    ("not_a_model", "cannot load"),
    ("missing", "no dataset file or run folder"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, data_file, setup, expected):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (folder / "tokenizer.json").write_text("{}")
    arguments = {
        "empty": [str(empty), "--from-scratch"],
        "not_a_model": [str(data_file), "--model", str(folder)],
        "missing": [str(tmp_path / "absent.jsonl"), "--from-scratch"],
    }[setup]
    result = run_elm("finetune", *arguments, "--out", str(tmp_path / "out"), "--steps", "1", "--quiet")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr


class _Answers:
    """A mutator that writes the example's own diff for the prompts it knows, and a diff
    that cannot apply for the others."""

    name = "answers"

    def __init__(self, known: dict[str, str]) -> None:
        self.known = known

    def propose(self, requests):
        from elm.mutation.diff import extract_diff
        from elm.mutation.diff_mutator import child_from_diff

        return [child_from_diff(request, extract_diff(self.known.get(request.commit_message,
                                                                     " @@ -1,1 +1,1 @@\n-nowhere\n+else\n")),
                                "answers", {}) for request in requests]


def test_applied_share_counts_the_sampled_diffs_that_apply_to_their_parent():
    from elm.finetune import applied_share

    examples = []
    for index in range(4):
        child = SEED.replace("x = 1.5", f"x = {index}.5")
        examples.append(DiffExample(diff_prompt("point.py", SEED, f"message {index}"), completion_for(SEED, child),
                                    "synthetic", index + 1, 0, "gp", None, False))
    mutator = _Answers({"message 0": examples[0].completion, "message 2": examples[2].completion})
    assert applied_share(mutator, examples) == {"prompts": 4, "applied": 2, "share": 0.5, "skipped": 0}
    foreign = DiffExample("Q: change x\nA:", examples[0].completion, "synthetic", 9, 0, "gp", None, False)
    assert applied_share(mutator, [*examples, foreign]) == {"prompts": 4, "applied": 2, "share": 0.5, "skipped": 1}
