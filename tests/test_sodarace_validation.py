"""Hostile walker data is rejected with a reason and never crashes or hangs the host."""

from __future__ import annotations

import json
import math

import pytest

from environments.sodarace import Sodarace
from environments.sodarace.walker_creator import COORDINATE_LIMIT, MAX_JOINTS, MAX_MUSCLES

TRIANGLE = [[0.0, 0.0], [6.0, 0.0], [3.0, 4.0]]
SPRINGS = [[0, 1, 0.0, 0.0], [1, 2, 0.3, 0.0], [2, 0, 0.3, 1.0]]


def walker(joints=None, muscles=None, **extra):
    data = {"joints": TRIANGLE if joints is None else joints, "muscles": SPRINGS if muscles is None else muscles}
    data.update(extra)
    return data


def nested(depth: int, leaf=0):
    """A list nested `depth` deep, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def deep_dict(depth: int):
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


HOSTILE = [
    # not a walker at all
    (None, "walker must be a dict"),
    ([TRIANGLE, SPRINGS], "walker must be a dict"),
    ("make_walker", "walker must be a dict"),
    (3.5, "walker must be a dict"),
    (nested(100_000), "walker must be a dict"),
    (deep_dict(100_000), "unexpected key 'x'"),
    ({"muscles": SPRINGS}, "joints must be a list"),
    ({"joints": TRIANGLE}, "muscles must be a list"),
    (walker(colour="red"), "unexpected key 'colour'"),
    ({**walker(), **{f"k{i}": i for i in range(1000)}}, "unexpected key 'k0'"),
    ({1: 2, "joints": TRIANGLE}, "unexpected key 1"),
    # counts
    (walker(joints=[[0.0, 0.0]] * 10**6), "1000000 joints; allowed 2 to 64"),
    (walker(joints=[[0.0, 0.0]]), "1 joints; allowed 2"),
    (walker(joints=[]), "0 joints"),
    (walker(muscles=[[0, 1, 0.0, 0.0]] * 10**6), f"1000000 muscles; allowed 1 to {MAX_MUSCLES}"),
    (walker(muscles=[]), "0 muscles"),
    (walker(joints="0,0;6,0;3,4"), "joints must be a list"),
    (walker(joints={"0": [0, 0]}), "joints must be a list"),
    # joints
    (walker(joints=[[0.0, 0.0], [math.nan, 0.0], [3.0, 4.0]]), "joint 1 x is not finite"),
    (walker(joints=[[0.0, 0.0], [6.0, math.inf], [3.0, 4.0]]), "joint 1 y is not finite"),
    (walker(joints=[[-math.inf, 0.0], [6.0, 0.0], [3.0, 4.0]]), "joint 0 x is not finite"),
    (walker(joints=[[0.0, 0.0], [10**400, 0.0], [3.0, 4.0]]), "joint 1 x is not finite (a huge int)"),
    (walker(joints=[[0.0, 0.0], [1e300, 0.0], [3.0, 4.0]]), "joint 1 x = 1e+300 is outside"),
    (walker(joints=[[0.0, 0.0], [6.0, -COORDINATE_LIMIT - 1], [3.0, 4.0]]), "joint 1 y = -101 is outside"),
    (walker(joints=[[0.0, 0.0], [True, 0.0], [3.0, 4.0]]), "joint 1 x must be a number, got True"),
    (walker(joints=[[0.0, 0.0], ["6", 0.0], [3.0, 4.0]]), "joint 1 x must be a number, got '6'"),
    (walker(joints=[[0.0, 0.0], [None, 0.0], [3.0, 4.0]]), "joint 1 x must be a number, got None"),
    (walker(joints=[[0.0, 0.0], [[6.0], 0.0], [3.0, 4.0]]), "joint 1 x must be a number, got a list"),
    (walker(joints=[[0.0, 0.0], [6.0, 0.0, 1.0], [3.0, 4.0]]), "joint 1 must be [x, y], got a list of length 3"),
    (walker(joints=[[0.0, 0.0], {"x": 6, "y": 0}, [3.0, 4.0]]), "joint 1 must be [x, y], got a dict"),
    (walker(joints=[nested(100_000), [6.0, 0.0], [3.0, 4.0]]), "joint 0 must be [x, y], got a list of length 1"),
    (walker(joints=[[0.0, 0.0], [0.5, 0.0], [3.0, 4.0]]), "joints 0 and 1 are closer than 1"),
    (walker(joints=[[0.0, 0.0], [6.0, 0.0], [0.0, 0.0]]), "joints 0 and 2 are closer"),
    (walker(joints=[["x" * 10**6, 0.0], [6.0, 0.0], [3.0, 4.0]]), "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'"),
    # muscles
    (walker(muscles=[[0, 0, 0.0, 0.0]]), "muscle 0 joins joint 0 to itself"),
    (walker(muscles=[[0, 3, 0.0, 0.0]]), "joint index 3 is out of range (0 to 2)"),
    (walker(muscles=[[-1, 2, 0.0, 0.0]]), "joint index -1 is out of range"),
    (walker(muscles=[[0, 10**30, 0.0, 0.0]]), "joint index a huge int is out of range"),
    (walker(muscles=[[0, 1.0, 0.0, 0.0]]), "joint index must be an int, got 1.0"),
    (walker(muscles=[[False, 1, 0.0, 0.0]]), "joint index must be an int, got False"),
    (walker(muscles=[[0, "1", 0.0, 0.0]]), "joint index must be an int, got '1'"),
    (walker(muscles=[[0, 1]]), "muscle 0 must be [j0, j1, amplitude, phase], got a list of length 2"),
    (walker(muscles=[{"j0": 0, "j1": 1}]), "muscle 0 must be [j0, j1, amplitude, phase], got a dict"),
    (walker(muscles=[nested(100_000)]), "muscle 0 must be [j0, j1, amplitude, phase]"),
    (walker(muscles=[[0, 1, -0.1, 0.0]]), "muscle 0 amplitude -0.1 is outside [0, 1]"),
    (walker(muscles=[[0, 1, 1.5, 0.0]]), "muscle 0 amplitude 1.5 is outside [0, 1]"),
    (walker(muscles=[[0, 1, math.nan, 0.0]]), "muscle 0 amplitude is not finite"),
    (walker(muscles=[[0, 1, 0.5, math.inf]]), "muscle 0 phase is not finite"),
    (walker(muscles=[[0, 1, 0.5, "0"]]), "muscle 0 phase must be a number"),
    (walker(muscles=[[0, 1, 0.5, nested(100_000)]]), "muscle 0 phase must be a number, got a list"),
    # the counts of dropped degenerate elements
    (walker(dropped="many"), "dropped must be a dict of counts, got 'many'"),
    (walker(dropped=nested(100_000)), "dropped must be a dict of counts, got a list of length 1"),
    (walker(dropped={"self_muscles": 1, "bogus": 2}), "dropped has unexpected key 'bogus'"),
    (walker(dropped={"self_muscles": -1}), "dropped self_muscles must be a count, got -1"),
    (walker(dropped={"merged_joints": True}), "dropped merged_joints must be a count, got True"),
    (walker(dropped={"merged_joints": 2.0}), "dropped merged_joints must be a count, got 2.0"),
    (walker(dropped={"merged_joints": 10**30}), "dropped merged_joints must be a count, got a huge int"),
    (walker(dropped=deep_dict(100_000)), "dropped has unexpected key 'x'"),
]


@pytest.mark.parametrize("data, reason", HOSTILE, ids=[f"case{k}" for k in range(len(HOSTILE))])
def test_hostile_data_is_rejected_with_a_reason(data, reason):
    score = Sodarace(duration=0.5).score(data)
    assert not score.valid
    assert reason in score.invalid_reason
    assert len(score.invalid_reason) < 200


def test_nan_and_infinity_from_json_are_rejected():
    text = '{"joints": [[0, 0], [NaN, 0], [3, 4]], "muscles": [[0, 1, 0, Infinity]]}'
    score = Sodarace(duration=0.5).score(json.loads(text))
    assert score.invalid_reason == "invalid walker: joint 1 x is not finite (nan)"


def test_a_catapult_is_caught_as_a_blow_up():
    """A 100 dm muscle that fully contracts flings a joint faster than the speed limit."""
    score = Sodarace().score({"joints": [[0.0, 0.0], [0.0, 100.0]], "muscles": [[0, 1, 1.0, 0.0]]})
    assert not score.valid
    assert "simulation blew up" in score.invalid_reason


def test_the_largest_walker_is_scored_in_bounded_time():
    """64 joints and the most muscles at full swing: a verdict, valid or not, no crash."""
    joints = [[2.0 * (k % 8), 2.0 * (k // 8)] for k in range(MAX_JOINTS)]
    pairs = sorted(
        ((a, b) for a in range(MAX_JOINTS) for b in range(a + 1, MAX_JOINTS)),
        key=lambda p: (math.dist(joints[p[0]], joints[p[1]]), p),
    )[:MAX_MUSCLES]
    muscles = [[a, b, 1.0, 0.1 * k] for k, (a, b) in enumerate(pairs)]
    score = Sodarace().score(walker(joints=joints, muscles=muscles))
    assert score.valid or "blew up" in score.invalid_reason
    if score.valid:
        assert score.extras["muscles"] == MAX_MUSCLES


def test_limits_are_inclusive():
    joints = [[-COORDINATE_LIMIT + 3.0 * k, 0.0] for k in range(MAX_JOINTS - 1)] + [[0.0, COORDINATE_LIMIT]]
    muscles = [[k, k + 1, 1.0 if k % 2 else 0.0, 0.0] for k in range(MAX_JOINTS - 1)]
    score = Sodarace(duration=0.5).score(walker(joints=joints, muscles=muscles))
    assert score.valid, score.invalid_reason


def test_dropped_counts_land_in_the_extras():
    score = Sodarace(duration=0.5).score(walker(dropped={"merged_joints": 0, "self_muscles": 3}))
    assert score.valid, score.invalid_reason
    assert score.extras["dropped_self_muscles"] == 3
    assert "dropped_merged_joints" not in score.extras  # zero counts stay out


def test_muscles_on_the_same_pair_act_in_parallel():
    once = walker(muscles=[[0, 1, 0.0, 0.0], [1, 2, 0.0, 0.0], [2, 0, 0.0, 0.0]])
    twice = walker(muscles=[[0, 1, 0.0, 0.0], [1, 0, 0.3, 0.0], [1, 2, 0.0, 0.0], [2, 0, 0.0, 0.0]])
    scores = [Sodarace(duration=0.5).score(data) for data in (once, twice)]
    assert all(score.valid for score in scores)
    assert scores[1].extras["muscles"] == 4
    assert scores[1].descriptor[2] > scores[0].descriptor[2]  # the extra muscle has mass
