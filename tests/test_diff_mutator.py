"""The diff mutator: every request gets a child counted at the stage it reached.

The funnel logic is checked with a scripted model that answers known texts; the real path
(tiny CodeGen, prompt, sample, parse, apply, a whole loop with the store) with random
weights, where most diffs fail and are counted, never raised.
"""

from __future__ import annotations

import pytest

from elm.archive import Archive
from elm.config import MutationConfig, build_config
from elm.errors import UserError
from elm.evaluator import Evaluator
from elm.loop import EvolutionLoop
from elm.mutation import MutationRequest
from elm.mutation.diff_mutator import DiffMutator
from elm.mutation.model import DiffModel
from elm.records import Stage
from elm.sandbox import open_sandbox
from elm.store import RunStore
from tests.tiny_codegen import tiny_codegen_dir  # noqa: F401
from tests.toy_environment import SEED, Toy

GOOD_DIFF = """@@ -1,3 +1,3 @@
 def point():
-    x = 1.5
+    x = 2.5
     y = -0.5
"""
UNAPPLIABLE_DIFF = """@@ -1,2 +1,2 @@
 def nothing_like_the_parent():
-    return 0
+    return 1
"""


class ScriptedModel:
    """Answers each sample with the text its seed names; records what it was asked."""

    name = "scripted"
    context_length = 2048

    def __init__(self, texts_by_seed: dict[int, str]) -> None:
        self.texts_by_seed = texts_by_seed
        self.calls: list[tuple[list[str], list[list[int]]]] = []

    def prompt_token_limit(self, max_new_tokens: int) -> int:
        return self.context_length - max_new_tokens

    def encode(self, text: str) -> list[int]:
        return list(text.encode())  # one token per byte

    def sample_with_seeds(self, prompts, seeds, *, temperature, top_p, max_new_tokens):
        self.calls.append((list(prompts), [list(group) for group in seeds]))
        return [[self.texts_by_seed[seed] for seed in group] for group in seeds]


def _request(seed: int, parent_id: int = 1, message: str = "Move the point.", source: str = SEED):
    return MutationRequest(parent_id, "point.py", source, message, seed)


def test_each_outcome_is_counted_at_the_stage_it_reached():
    model = ScriptedModel({1: GOOD_DIFF, 2: UNAPPLIABLE_DIFF, 3: "random words, no hunk", 4: ""})
    mutator = DiffMutator(model, MutationConfig(operator="diff"))
    children = mutator.propose([_request(seed) for seed in (1, 2, 3, 4)])
    by_diff = {child.diff: child for child in children}

    applied = by_diff[GOOD_DIFF]
    assert applied.stage == "applied" and applied.error is None
    assert applied.source == SEED.replace("x = 1.5", "x = 2.5")
    unappliable = by_diff[UNAPPLIABLE_DIFF]
    assert unappliable.stage == "parsed" and unappliable.source is None
    assert unappliable.error.startswith("apply:")
    garbage = by_diff["random words, no hunk"]
    assert garbage.stage == "generated" and garbage.error.startswith("parse:")
    assert by_diff[""].stage == "generated"
    for child in children:
        assert child.operator == "diff" and child.parent_id == 1
        assert child.commit_message == "Move the point."
        assert child.timings["generate_s"] >= 0


def test_identical_prompts_share_one_prefill_and_keep_their_own_seeds():
    model = ScriptedModel(dict.fromkeys(range(10, 16), GOOD_DIFF))
    mutator = DiffMutator(model, MutationConfig(operator="diff"))
    requests = [_request(10), _request(11), _request(12, message="Small change."), _request(13),
                _request(14, parent_id=2, source=SEED + "# another parent\n")]
    children = mutator.propose(requests)
    assert len(children) == 5
    [(prompts, seeds)] = model.calls  # one batch
    assert len(prompts) == 3
    assert sorted(map(sorted, seeds)) == [[10, 11, 13], [12], [14]]


def test_batches_are_capped_in_sequences():
    model = ScriptedModel(dict.fromkeys(range(6), GOOD_DIFF))
    mutator = DiffMutator(model, MutationConfig(operator="diff"), max_sequences_per_batch=2)
    mutator.propose([_request(seed, parent_id=seed, source=SEED + "#" * seed) for seed in range(6)])
    assert [sum(len(group) for group in seeds) for _, seeds in model.calls] == [2, 2, 2]


def test_prompts_too_long_are_skipped_and_never_sent():
    model = ScriptedModel({1: GOOD_DIFF, 2: GOOD_DIFF})
    settings = MutationConfig(operator="diff", max_prompt_tokens=len(SEED) + 80)
    mutator = DiffMutator(model, settings)
    long_source = SEED + "# padding\n" * 20
    children = mutator.propose([_request(1), _request(2, parent_id=2, source=long_source)])
    skipped = [child for child in children if child.parent_id == 2]
    assert len(skipped) == 1 and skipped[0].stage == Stage.SKIPPED and skipped[0].source is None
    assert skipped[0].error.startswith("prompt too long (")
    assert all(SEED + "# padding" not in prompt for prompts, _ in model.calls for prompt in prompts)


def test_the_context_caps_the_prompt_limit_too():
    model = ScriptedModel({})
    mutator = DiffMutator(model, MutationConfig(max_prompt_tokens=4000, max_new_tokens=256))
    assert mutator.prompt_token_limit == 2048 - 256
    with pytest.raises(UserError, match="leaves no room"):
        DiffMutator(model, MutationConfig(max_new_tokens=2048))


# --- the real path on the tiny CodeGen ----------------------------------------------------


def test_tiny_model_children_are_counted_not_crashed(tiny_codegen_dir):
    model = DiffModel.load(str(tiny_codegen_dir))
    mutator = DiffMutator(model, MutationConfig(operator="diff", max_new_tokens=32))
    messages = ("Move the point.", "Small change.")
    requests = [_request(seed, parent_id=seed % 2, message=messages[seed % 3 == 0]) for seed in range(8)]
    children = mutator.propose(requests)
    assert sorted(child.parent_id for child in children) == sorted(r.parent_id for r in requests)
    for child in children:
        assert child.stage in ("generated", "parsed", "applied")
        assert (child.source is None) == (child.stage != "applied")
        assert (child.error is None) == (child.stage == "applied")
        assert isinstance(child.diff, str)
    again = mutator.propose(requests)
    assert [(c.parent_id, c.diff) for c in again] == [(c.parent_id, c.diff) for c in children]
    mutator.close()


def test_tiny_model_prompts_over_the_limit_are_skipped(tiny_codegen_dir):
    model = DiffModel.load(str(tiny_codegen_dir))
    mutator = DiffMutator(model, MutationConfig(operator="diff", max_prompt_tokens=10))
    children = mutator.propose([_request(1), _request(2)])
    assert [child.stage for child in children] == [Stage.SKIPPED, Stage.SKIPPED]
    assert "tokens > 10)" in children[0].error


def test_a_loop_with_the_diff_mutator_records_the_funnel(tmp_path, tiny_codegen_dir):
    config = build_config({
        "environment": {"name": "toy"},
        "run": {"iterations": 2, "batch_size": 6, "seed": 1, "snapshot_every": 1},
        "mutation": {"operator": "diff", "model": str(tiny_codegen_dir), "max_new_tokens": 24},
        "sandbox": {"backend": "local", "pool_size": 1},
    })
    environment = Toy()
    archive = Archive(environment.descriptor_space, config.archive, qd_offset=environment.qd_offset)
    store = RunStore.create(tmp_path, {"archive": archive.layout()})
    mutator = DiffMutator(DiffModel.load(str(tiny_codegen_dir)), config.mutation)
    sandbox = open_sandbox(config.sandbox)
    try:
        evaluator = Evaluator(environment, sandbox, config.sandbox)
        EvolutionLoop(config, environment, archive, mutator, evaluator, store).run()
        metrics = store.metrics()
        mutated = [record for record in store.candidates() if record.operator == "diff"]
    finally:
        sandbox.close()
        mutator.close()
        store.close()
    assert [m.iteration for m in metrics] == [0, 1, 2]
    assert len(mutated) == 12
    for iteration in metrics[1:]:
        assert iteration.funnel["generated"] == 6
        assert iteration.funnel["generated"] >= iteration.funnel["parsed"] >= iteration.funnel["applied"]
    assert all(record.diff is not None and record.commit_message for record in mutated)
    assert all(record.status == "mutation_failed" for record in mutated if record.stage != "applied")
