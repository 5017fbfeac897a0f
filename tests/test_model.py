"""The diff model on a tiny random CodeGen: loading, shared-prefill sampling, load errors."""

from __future__ import annotations

import argparse
import shutil

import pytest
import torch

from elm.errors import UserError
from elm.mutation.model import (
    DiffModel,
    ModelLoadError,
    PromptTooLongError,
    filter_top_p,
    sample_from_logits,
)
from elm.mutation.prompt import diff_prompt
from tests.tiny_codegen import END_OF_TEXT, tiny_codegen_dir  # noqa: F401

PROMPT = diff_prompt("walker.py", "def walker():\n    return {}\n", "Add a joint")
SHORT_PROMPT = diff_prompt("a.py", "x = 1\n", "Fix")


@pytest.fixture(scope="module")
def tiny_model(tiny_codegen_dir) -> DiffModel:
    return DiffModel.load(str(tiny_codegen_dir))


def _greedy(model: DiffModel, prompts: list[str], copies: int = 1, new_tokens: int = 24) -> list[list[list[int]]]:
    generation = model.generate_ids(
        [model.encode(p) for p in prompts],
        [list(range(copies)) for _ in prompts],
        temperature=0.0,
        top_p=1.0,
        max_new_tokens=new_tokens,
        stop_at_record_start=False,
    )
    return generation.tokens


def _biased_model(folder, token: str, bias: float = 1e4) -> DiffModel:
    """A fresh copy of the tiny model that favours `token` (by default: always picks it)."""
    model = DiffModel.load(str(folder))
    token_id = model.tokenizer.convert_tokens_to_ids(token)
    with torch.no_grad():
        model.model.lm_head.bias[token_id] = bias
    return model


def test_loads_model_and_tokenizer_from_a_folder(tiny_model):
    assert tiny_model.model.dtype == torch.float32  # auto on CPU
    assert tiny_model.device.type == "cpu"
    assert tiny_model.tokenizer.padding_side == "left"
    assert tiny_model.context_length == 2048
    assert tiny_model.prompt_token_limit(256) == 2048 - 256
    assert tiny_model.tokenizer.decode(tiny_model.encode(PROMPT)) == PROMPT


def test_loads_in_bfloat16_when_asked(tiny_codegen_dir):
    model = DiffModel.load(str(tiny_codegen_dir), dtype="bfloat16")
    assert model.model.dtype == torch.bfloat16
    texts = model.sample([SHORT_PROMPT], 2, temperature=0.8, top_p=0.95, max_new_tokens=4, seed=0)
    assert len(texts[0]) == 2


def test_sample_returns_n_texts_per_prompt_and_repeats_for_a_seed(tiny_model):
    settings = dict(temperature=0.8, top_p=0.95, max_new_tokens=16)
    first = tiny_model.sample([PROMPT, SHORT_PROMPT], 3, seed=5, **settings)
    again = tiny_model.sample([PROMPT, SHORT_PROMPT], 3, seed=5, **settings)
    other = tiny_model.sample([PROMPT, SHORT_PROMPT], 3, seed=6, **settings)
    assert [len(texts) for texts in first] == [3, 3]
    assert all(isinstance(text, str) for texts in first for text in texts)
    assert first == again
    assert first != other
    assert len(set(first[0])) > 1  # each sample has its own seed


def test_a_samples_tokens_depend_on_its_seed_not_its_batch_mates(tiny_model):
    ids = tiny_model.encode(PROMPT)
    settings = dict(temperature=1.0, top_p=1.0, max_new_tokens=16, stop_at_record_start=False)
    together = tiny_model.generate_ids([ids, tiny_model.encode(SHORT_PROMPT)], [[11, 12], [13]], **settings)
    alone = tiny_model.generate_ids([ids], [[12]], **settings)
    assert together.tokens[0][1] == alone.tokens[0][0]


def test_finished_samples_leave_the_batch_without_disturbing_the_others(tiny_codegen_dir):
    model = _biased_model(tiny_codegen_dir, END_OF_TEXT, bias=4.5)  # ends a sample now and then
    ids = model.encode(PROMPT)
    settings = dict(temperature=1.0, top_p=1.0, max_new_tokens=20, stop_at_record_start=False)
    seeds = list(range(8))
    together = model.generate_ids([ids], [seeds], **settings).tokens[0]
    alone = [model.generate_ids([ids], [[seed]], **settings).tokens[0][0] for seed in seeds]
    assert together == alone
    lengths = {len(tokens) for tokens in together}
    assert len(lengths) > 1 and max(lengths) == 20


def test_shared_prefill_greedy_equals_generate_for_every_copy(tiny_model):
    ids = tiny_model.encode(PROMPT)
    expected = tiny_model.model.generate(
        torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        do_sample=False,
        max_new_tokens=24,
        pad_token_id=tiny_model.tokenizer.eos_token_id,
    )[0, len(ids):].tolist()
    end = tiny_model.tokenizer.eos_token_id
    expected = expected[: expected.index(end)] if end in expected else expected
    copies = _greedy(tiny_model, [PROMPT], copies=3)[0]
    assert copies == [expected] * 3


def test_left_padding_gives_each_prompt_its_own_greedy_output(tiny_model):
    batched = _greedy(tiny_model, [PROMPT, SHORT_PROMPT])
    assert len(tiny_model.encode(PROMPT)) != len(tiny_model.encode(SHORT_PROMPT))
    assert batched[0] == _greedy(tiny_model, [PROMPT])[0]
    assert batched[1] == _greedy(tiny_model, [SHORT_PROMPT])[0]


def test_sampling_stops_when_a_new_record_starts(tiny_codegen_dir):
    model = _biased_model(tiny_codegen_dir, "<NME>")
    settings = dict(temperature=0.0, top_p=1.0, max_new_tokens=5)
    stopped = model.generate_ids([model.encode(PROMPT)], [[0]], **settings)
    running = model.generate_ids([model.encode(PROMPT)], [[0]], stop_at_record_start=False, **settings)
    assert len(stopped.tokens[0][0]) == 1
    assert len(running.tokens[0][0]) == 5
    assert model.sample([PROMPT], 1, seed=0, **settings) == [[""]]  # the new record is cut off


def test_sampling_stops_at_end_of_text_unless_a_minimum_is_set(tiny_codegen_dir):
    model = _biased_model(tiny_codegen_dir, END_OF_TEXT)
    settings = dict(temperature=0.0, top_p=1.0, max_new_tokens=6)
    assert model.generate_ids([model.encode(PROMPT)], [[0, 1]], **settings).tokens == [[[], []]]
    forced = model.generate_ids([model.encode(PROMPT)], [[0]], min_new_tokens=6, **settings)
    assert len(forced.tokens[0][0]) == 6
    assert model.tokenizer.eos_token_id not in forced.tokens[0][0]


def test_prompts_beyond_the_context_are_refused(tiny_model):
    too_long = [1] * (tiny_model.context_length - 10)
    with pytest.raises(PromptTooLongError, match="2038 tokens exceeds 2032"):
        tiny_model.generate_ids([too_long], [[0]], temperature=0.0, top_p=1.0, max_new_tokens=16)
    fits = tiny_model.generate_ids([too_long], [[0]], temperature=0.0, top_p=1.0, max_new_tokens=10,
                                   stop_at_record_start=False)
    assert len(fits.tokens[0][0]) <= 10


def test_top_p_filter_matches_transformers():
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(0)) * 3
    for top_p in (0.1, 0.5, 0.9, 0.99):
        expected = TopPLogitsWarper(top_p)(None, logits.clone())
        assert torch.equal(torch.isinf(filter_top_p(logits, top_p)), torch.isinf(expected))


def test_sampler_draws_in_proportion_to_the_filtered_probabilities():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, -4.0]]).repeat(40000, 1)
    uniforms = torch.rand(40000, generator=torch.Generator().manual_seed(1))
    picks = sample_from_logits(logits, 1.0, 0.9, uniforms)
    expected = filter_top_p(logits[:1], 0.9).softmax(-1)[0]
    observed = torch.bincount(picks, minlength=5).float() / len(picks)
    assert expected[3:].sum() == 0 and observed[3:].sum() == 0
    assert torch.allclose(observed, expected, atol=0.01)


# --- load errors: one UserError line each ------------------------------------------------


def test_unknown_hub_id_offline_names_the_model_and_the_way_out(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as caught:
        DiffModel.load("nobody-here/no-such-diff-model")
    message = str(caught.value)
    assert isinstance(caught.value, UserError)
    assert "nobody-here/no-such-diff-model" in message and "HF_HUB_OFFLINE" in message
    assert "mutation.model" in message and "\n" not in message


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(ModelLoadError, match="model folder not found"):
        DiffModel.load(str(tmp_path / "absent"))


def test_corrupt_weights_are_reported(tmp_path, tiny_codegen_dir):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_codegen_dir, folder)
    (folder / "model.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(ModelLoadError, match="cannot load the weights") as caught:
        DiffModel.load(str(folder))
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)


def test_corrupt_config_is_reported(tmp_path, tiny_codegen_dir):
    folder = tmp_path / "bad-config"
    shutil.copytree(tiny_codegen_dir, folder)
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(ModelLoadError, match="bad-config"):
        DiffModel.load(str(folder))


def test_folder_without_tokenizer_is_reported(tmp_path, tiny_codegen_dir):
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(tiny_codegen_dir / name, folder / name)
    with pytest.raises(ModelLoadError, match="has no tokenizer"):
        DiffModel.load(str(folder))


def test_float16_on_cpu_is_refused(tiny_codegen_dir):
    with pytest.raises(ModelLoadError, match="float16 is not supported on CPU"):
        DiffModel.load(str(tiny_codegen_dir), dtype="float16", device="cpu")


# --- the benchmark, shrunk to a smoke run -----------------------------------------------


def test_mutation_bench_reports_both_rates_and_the_batch_scaling():
    from elm.bench import mutation as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(
        ["--layers", "1", "--hidden", "64", "--prompt-tokens", "16", "--new-tokens", "3",
         "--children", "2", "--batch-sizes", "1,2"]
    )
    result = bench.run(args)
    assert result["shared_prefill_tok_s"] > 0 and result["generate_tok_s"] > 0
    assert result["speedup"] == pytest.approx(result["shared_prefill_tok_s"] / result["generate_tok_s"], rel=0.01)
    assert [entry["sequences"] for entry in result["batch_scaling"]] == [1, 2]
    assert "speedup" in bench.describe(result)
