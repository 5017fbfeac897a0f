"""The loop's mechanics, with a stand-in sandbox that derives a result from the source text
(no candidate code runs): placement, records, metrics, snapshots, determinism, resume."""

import hashlib
from collections import Counter

import pytest

from elm.archive import Archive
from elm.config import build_config
from elm.environment import EnvironmentLoadError, Program, seed_programs
from elm.evaluator import Evaluator
from elm.loop import EvolutionLoop
from elm.mutation.gp import GPMutator
from elm.records import Child, funnel_counts
from elm.sandbox import Outcome
from elm.store import RunStore
from tests.toy_environment import BROKEN_SEED, SEED, Toy


class HashSandbox:
    """Maps each source to a fixed pseudo-random outcome; every 5th distinct source errors."""

    def run_many(self, jobs):
        outcomes = []
        for job in jobs:
            digest = hashlib.sha256(job.files["point.py"].encode()).digest()
            if digest[0] % 5 == 0:
                outcomes.append(Outcome("error", 0.001, error="ValueError: boom"))
                continue
            x, y = (digest[i] / 255 * 8 - 4 for i in (1, 2))
            outcomes.append(Outcome("ok", 0.001, [x, y]))
        return outcomes

    def take_events(self):
        return []

    def close(self):
        pass


def _loop(tmp_path, iterations, name="run", store=None, mutator=None, in_flight=2):
    config = build_config({
        "environment": {"name": "toy"},
        "run": {"iterations": iterations, "batch_size": 8, "seed": 3, "snapshot_every": 2},
        "sandbox": {"backend": "local"},
        "workers": {"in_flight": in_flight},
    })
    environment = Toy()
    archive = Archive(environment.descriptor_space, config.archive, qd_offset=environment.qd_offset)
    if store is None:
        (tmp_path / name).mkdir()
        store = RunStore.create(tmp_path / name, {"archive": archive.layout()})
    evaluator = Evaluator(environment, HashSandbox(), config.sandbox)
    return EvolutionLoop(config, environment, archive, mutator or GPMutator(), evaluator, store), store


def _elites(loop):
    return [(e.candidate_id, e.niche, e.fitness) for e in loop.archive.elites()]


def test_every_candidate_and_iteration_is_recorded(tmp_path):
    loop, store = _loop(tmp_path, iterations=5)
    loop.run()
    candidates = list(store.candidates())
    assert len(candidates) == 1 + 5 * 8
    assert [m.iteration for m in store.metrics()] == [0, 1, 2, 3, 4, 5]
    assert store.snapshot_iterations() == [0, 2, 4, 5]
    assert candidates[0].operator == "seed" and candidates[0].parent_id is None
    assert all(c.parent_id is not None for c in candidates[1:])
    statuses = Counter(c.status for c in candidates)
    assert statuses["ok"] > 0 and statuses["error"] > 0
    assert statuses == Counter(store.status_counts())
    final = {(s.candidate_id, s.niche, s.fitness) for s in store.snapshot(5)}
    assert final == set(_elites(loop))
    placed = [c for c in candidates if c.placement in ("new", "improved")]
    assert all(c.stage == "placed" and c.niche is not None for c in placed)
    assert store.metrics()[-1].coverage == pytest.approx(loop.archive.stats().coverage)
    store.close()


def test_funnel_counts_each_stage_passed():
    class R:
        def __init__(self, stage):
            self.stage = stage

    counts = funnel_counts([R("generated"), R("applied"), R("placed"), R("scored"),
                            R("duplicate"), R("unchanged"), R("duplicate")])
    assert counts == {"generated": 7, "parsed": 6, "applied": 6, "unchanged": 1, "duplicate": 2,
                      "compiled": 2, "ran": 2, "scored": 2, "placed": 1}


def test_same_seed_same_archive(tmp_path):
    first, first_store = _loop(tmp_path, iterations=4, name="a")
    second, second_store = _loop(tmp_path, iterations=4, name="b")
    first.run()
    second.run()
    assert _elites(first) == _elites(second)
    first_store.close()
    second_store.close()


def test_resumed_run_continues_the_same_stream(tmp_path):
    whole, whole_store = _loop(tmp_path, iterations=6, name="whole")
    whole.run()
    part, part_store = _loop(tmp_path, iterations=3, name="part")
    part.run()
    resumed, _ = _loop(tmp_path, iterations=6, store=part_store)
    resumed.run()
    assert _elites(resumed) == _elites(whole)
    assert [c.source for c in part_store.candidates()] == [c.source for c in whole_store.candidates()]
    whole_store.close()
    part_store.close()


def test_children_of_one_parent_share_its_commit_message(tmp_path):
    loop, store = _loop(tmp_path, iterations=0)
    loop.run()
    loop.config.mutation.children_per_parent = 4
    requests = loop.requests(1)
    assert len(requests) == 8
    for group in (requests[:4], requests[4:]):
        assert len({(r.parent_id, r.commit_message) for r in group}) == 1
    assert len({r.seed for r in requests}) == 8
    store.close()


class ReplacingSandbox(HashSandbox):
    """Like HashSandbox, and says it replaced one runner in every call that ran jobs."""

    def __init__(self):
        self.calls = 0

    def run_many(self, jobs):
        self.calls += 1
        return super().run_many(jobs)

    def take_events(self):
        calls, self.calls = self.calls, 0
        return [("runners_replaced", {"count": calls})] if calls else []


def test_the_sandbox_events_of_each_iteration_are_committed_with_it(tmp_path):
    loop, store = _loop(tmp_path, iterations=2)
    loop.evaluator = Evaluator(loop.environment, ReplacingSandbox(), loop.config.sandbox)
    loop.run()
    events = [(e["iteration"], e["kind"], e["detail"]) for e in store.events()]
    store.close()
    assert events == [(iteration, "runners_replaced", {"count": 1}) for iteration in (0, 1, 2)]


# -- scoring faults and seeds that are all invalid -----------------------------------------


class SeedOutcomeSandbox(HashSandbox):
    """Like HashSandbox, but a job whose source says `fails_with: STATUS` gets that status."""

    def run_many(self, jobs):
        outcomes = super().run_many(jobs)
        for index, job in enumerate(jobs):
            source = job.files["point.py"]
            if "fails_with: error" in source:
                outcomes[index] = Outcome("error", 0.001, error="Traceback (most recent call last):\n"
                                          "  File \"point.py\", line 2\nIndexError: list index out of range")
            elif "fails_with: timeout" in source:
                outcomes[index] = Outcome("timeout", 5.0, error="wall-clock limit of 5 s exceeded")
            elif source == BROKEN_SEED:
                outcomes[index] = Outcome("ok", 0.001, "not a point")
            elif "fails_with" not in source:
                outcomes[index] = Outcome("ok", 0.001, [1.25, -0.5])
        return outcomes


def _faulty_loop(tmp_path, environment, iterations=3, store=None, name="run"):
    loop, store = _loop(tmp_path, iterations, name=name, store=store)
    loop.environment = environment
    loop.evaluator = Evaluator(environment, SeedOutcomeSandbox(), loop.config.sandbox)
    return loop, store


def _seeded(*programs):
    """A Faulty environment whose seeds are the given (name, source) pairs."""
    from tests.faulty_environment import Faulty

    class Seeded(Faulty):
        def seeds(self):
            return self.select_seeds([Program(self.file_name, source, name) for name, source in programs])

    return Seeded


@pytest.mark.parametrize("fault", sorted(__import__("tests.faulty_environment").faulty_environment.FAULTS))
def test_no_valid_seed_is_one_line_naming_each_seed_and_commits_nothing(tmp_path, fault):
    from elm.errors import UserError
    from tests.faulty_environment import Faulty

    loop, store = _faulty_loop(tmp_path, Faulty(fault=fault, broken_seed=True))
    with pytest.raises(UserError) as caught:
        loop.run()
    message = str(caught.value)
    assert message.startswith("no seed program is valid") and "\n" not in message
    assert "toy" in message and "broken" in message  # each seed by name
    assert "point() must return [x, y]" in message  # the broken seed's own reason
    assert store.last_iteration() is None and list(store.candidates()) == []
    store.close()


@pytest.mark.parametrize("failure, reason", [
    ("def point(:\n    pass\n", "syntax_error: SyntaxError"),
    ("def point():\n    # fails_with: error\n    return []\n", "error: IndexError: list index out of range"),
    ("def point():\n    # fails_with: timeout\n    return []\n", "timeout: wall-clock limit of 5 s exceeded"),
])
def test_seeds_failing_before_scoring_are_named_with_their_reason(tmp_path, failure, reason):
    from elm.errors import UserError

    environment = _seeded(("first", failure), ("second", failure))()
    loop, store = _faulty_loop(tmp_path, environment)
    with pytest.raises(UserError, match="seeds first, second: " + reason):
        loop.run()
    assert store.last_iteration() is None
    store.close()


def test_resuming_a_run_without_valid_seeds_is_one_line(tmp_path):
    """A store written before seeds were checked: iteration 0 committed, nothing scored."""
    from elm.errors import UserError
    from tests.faulty_environment import Faulty

    loop, store = _faulty_loop(tmp_path, Faulty(fault="raises"), iterations=3)
    records = loop.evaluator.evaluate([Child(None, SEED, "seed", commit_message="toy")], [0], 0)
    store.record_iteration(records, loop._metrics(0, records, 0.1))
    with pytest.raises(UserError, match="no seed program is valid.*seed toy: invalid: scoring failed"):
        loop.run()
    assert store.last_iteration() == 0
    store.close()


def test_score_safely_takes_any_real_numbers_and_hands_back_floats():
    import numpy as np

    from elm.environment import Score
    from elm.evaluator import score_safely
    from tests.faulty_environment import Faulty

    class NumpyScores(Faulty):
        def score(self, result):
            return Score(fitness=np.float32(0.5), descriptor=np.array([1, -2], dtype=np.int64),
                         extras={"size": 3})

    score, failure = score_safely(NumpyScores(), [1.0, 2.0])
    assert failure is None and score.valid and score.fitness == 0.5 and score.descriptor == (1.0, -2.0)
    assert type(score.fitness) is float and all(type(v) is float for v in score.descriptor)


@pytest.mark.parametrize("fault", ["short_descriptor", "long_descriptor", "scalar_descriptor",
                                   "no_descriptor", "infinite_descriptor", "text_descriptor"])
def test_a_misshaped_descriptor_makes_the_candidate_invalid_and_the_run_goes_on(tmp_path, fault):
    from tests.faulty_environment import Faulty

    seeded, store = _faulty_loop(tmp_path, Faulty(), iterations=0)
    seeded.run()
    loop, _ = _faulty_loop(tmp_path, Faulty(fault=fault, left_only=True), iterations=4, store=store)
    loop.evaluator.sandbox = HashSandbox()  # children land left and right of x = 0
    loop.run()
    children = [c for c in store.candidates() if c.iteration > 0]
    faulty = [c for c in children if c.status == "invalid"]
    assert store.last_iteration() == 4 and faulty and any(c.status == "ok" for c in children)
    assert all(c.error.startswith("score() returned a descriptor") for c in faulty)
    assert all(c.stage == "ran" and c.niche is None for c in faulty)
    assert all(len(c.descriptor) == 2 for c in children if c.status == "ok")
    store.close()


class _CountingMutator(GPMutator):
    """GP edits, counting the batches submitted and not yet collected."""

    def __init__(self, max_in_flight):
        super().__init__()
        self.max_in_flight = max_in_flight
        self.outstanding = self.most_outstanding = 0

    def submit(self, requests):
        self.outstanding += 1
        self.most_outstanding = max(self.most_outstanding, self.outstanding)
        return super().submit(requests)

    def collect(self, ticket):
        self.outstanding -= 1
        return super().collect(ticket)


@pytest.mark.parametrize(("declared", "in_flight", "expected"), [(2, 5, 2), (None, 3, 3), (1, 4, 1)])
def test_the_loop_keeps_as_many_batches_in_flight_as_the_mutator_declares(tmp_path, declared, in_flight, expected):
    mutator = _CountingMutator(declared)
    loop, store = _loop(tmp_path, iterations=6, mutator=mutator, in_flight=in_flight)
    loop.run()
    assert mutator.most_outstanding == expected
    store.close()


def test_the_environment_alone_chooses_the_seeds():
    class Careless(Toy):
        def seeds(self):  # ignores environment.seeds: no select_seeds
            return [Program(self.file_name, SEED, "toy"), Program(self.file_name, BROKEN_SEED, "broken")]

    assert [p.name for p in seed_programs(Toy(broken_seed=True, seeds=["broken"]))] == ["broken"]
    assert [p.name for p in seed_programs(Careless())] == ["toy", "broken"]
    with pytest.raises(EnvironmentLoadError, match=r"asked for the seeds toy but its seeds\(\) returned toy, broken"):
        seed_programs(Careless(seeds=["toy"]))
