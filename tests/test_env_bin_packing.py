"""Online bin packing: the harness calls the candidate once per item inside the sandbox;
the host regenerates nothing from the candidate, recounts the bins from the placements,
checks every capacity, and measures how the heuristic chooses."""

from __future__ import annotations

import json

import pytest

from elm.environment import EnvironmentLoadError, load_environment
from tests.test_env_builtins import run_harness

WORST_FIT = "def priority(item, bins):\n    return bins - item\n"
# Every call appends the item it was asked about to a file in the scratch folder.
RECORDING_FIRST_FIT = """\
import numpy as np


def priority(item, bins):
    with open("calls.txt", "a") as calls:
        calls.write(f"{item:g}\\n")
    return -np.arange(len(bins), dtype=float)
"""


@pytest.fixture(scope="module")
def small():
    return load_environment("bin_packing", {"items": 60, "instances": 3, "instance_seed": 4})


def _one_bin_per_item(environment) -> dict:
    return {"assignments": [list(range(len(items))) for items in environment.instances]}


def test_the_candidate_is_called_once_per_item_in_arrival_order(small, tmp_path):
    result = run_harness(small, RECORDING_FIRST_FIT, tmp_path)
    calls = [float(line) for line in (tmp_path / "calls.txt").read_text().split()]
    assert calls == [float(item) for items in small.instances for item in items]
    assert small.score(result).valid


def test_the_host_recounts_bins_and_measures_the_choices(small, tmp_path):
    best = small.score(run_harness(small, small.seeds()[0].source, tmp_path / "best"))
    assert small.seeds()[0].name == "best_fit"
    assert best.descriptor[0] == 0.0  # always the tightest bin
    assert 0.0 < best.descriptor[1] < 0.4
    assert best.extras["bins"] >= best.extras["lower_bound"]
    worst = small.score(run_harness(small, WORST_FIT, tmp_path / "worst"))
    assert worst.descriptor == pytest.approx((1.0, 0.0))  # never the tightest, never a bin filled
    assert worst.fitness == pytest.approx(small.qd_offset)  # a new bin for every item
    assert best.fitness > worst.fitness


def test_descriptors_count_the_choices_exactly():
    environment = load_environment("bin_packing", {"items": 4, "instances": 1})
    environment.instances = [[60, 30, 40, 10]]  # capacity 100
    # 60 -> bin 0; 30 -> bin 1 although bin 0 fits (off the tightest); 40 -> bin 0, filling it
    # exactly (tightest: room 40 vs 70); 10 -> bin 1 (the only opened bin with room).
    score = environment.score({"assignments": [[0, 1, 0, 1]]})
    assert score.descriptor == pytest.approx((3 ** -0.5, 0.25))
    assert score.extras == {"bins": 2, "lower_bound": 2}
    assert score.fitness == 0.0


def test_the_fitness_is_minus_the_excess_over_the_lower_bound(small):
    score = small.score(_one_bin_per_item(small))
    bounds = [-(-sum(items) // small.capacity) for items in small.instances]
    expected = -100 * sum((len(items) - bound) / bound for items, bound in zip(small.instances, bounds)) / 3
    assert score.fitness == pytest.approx(expected)
    assert score.extras == {"bins": 180, "lower_bound": sum(bounds)}


def test_a_packing_over_capacity_is_refused(small):
    crammed = {"assignments": [[0] * len(items) for items in small.instances]}
    score = small.score(crammed)
    assert not score.valid
    assert score.invalid_reason.startswith("instance 0: bin 0 has room for")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda a: a[:2], "list of 3 lists"),
        (lambda a: [a[0][:-1], a[1], a[2]], "instance 0: expected 60 bin numbers"),
        (lambda a: [a[0], [True] + a[1][1:], a[2]], "instance 1: bin numbers must be integers"),
        (lambda a: [a[0], a[1], [-1] + a[2][1:]], "instance 2: bin numbers must be integers from 0 to 59"),
        (lambda a: [a[0], a[1], [60] + a[2][1:]], "instance 2: bin numbers must be integers"),
        (lambda a: [[0.0] + a[0][1:], a[1], a[2]], "instance 0: bin numbers must be integers"),
        (lambda a: [[10**400] + a[0][1:], a[1], a[2]], "instance 0: bin numbers must be integers"),
        (lambda a: {"0": a[0]}, "list of 3 lists"),
    ],
)
def test_broken_placements_are_refused_with_the_reason(small, change, reason):
    result = {"assignments": change(_one_bin_per_item(small)["assignments"])}
    score = small.score(result)
    assert not score.valid
    assert reason in score.invalid_reason


def test_the_harness_refuses_bad_priorities(small, tmp_path):
    short = "def priority(item, bins):\n    return [1.0]\n"
    with pytest.raises(RuntimeError, match=r"priority returned shape \(1,\) for \d+ bins"):
        run_harness(small, short, tmp_path / "short")
    nan = "import numpy as np\n\ndef priority(item, bins):\n    return bins * np.nan\n"
    with pytest.raises(RuntimeError, match="NaN"):
        run_harness(small, nan, tmp_path / "nan")


def test_instances_come_from_the_seed_and_travel_as_data():
    first = load_environment("bin_packing", {"instance_seed": 1, "items": 50})
    again = load_environment("bin_packing", {"instance_seed": 1, "items": 50})
    other = load_environment("bin_packing", {"instance_seed": 2, "items": 50})
    assert first.instances == again.instances != other.instances
    shipped = json.loads(first.sandbox_files()["environment.json"])
    assert shipped["instances"] == first.instances and shipped["capacity"] == 100
    assert all(1 <= item <= 100 for items in first.instances for item in items)
    uniform = load_environment("bin_packing", {"distribution": "uniform", "items": 50})
    assert uniform.capacity == 150
    assert all(20 <= item <= 100 for items in uniform.instances for item in items)


@pytest.mark.parametrize(
    "options",
    [{"distribution": "normal"}, {"items": 0}, {"items": 10**6}, {"instances": "5"}, {"instance_seed": 1.5}],
)
def test_bad_options_are_refused(options):
    with pytest.raises(EnvironmentLoadError, match="bin_packing option"):
        load_environment("bin_packing", options)
