"""Sodarace in the ELM paper's walker API: its units, its tolerated degenerate elements,
and programs written in its style (positional amplitude and phase, amplitudes far above
1, joints as points, query_cppn, numpy), scored end to end.

Sandbox-side files run in a child Python process (as they would in the sandbox), never
in the test process.
"""

from __future__ import annotations

import json
import math

import pytest

from environments.sodarace import Sodarace
from environments.sodarace.walker_creator import MAX_SWING, muscle_swing, walker_creator
from tests.conftest import run_elm
from tests.test_sodarace import build, run_harness

# A box on legs: amplitudes of the paper's sizes (30, 12, 0.5), one call with an extra
# argument (ignored), a joint added twice and a muscle from a joint to itself.
LEGGED_BOX = """\
from walker_creator import walker_creator


def make_box(wc, left, bottom, size):
    return [wc.add_joint(left, bottom), wc.add_joint(left + size, bottom),
            wc.add_joint(left + size, bottom + size), wc.add_joint(left, bottom + size)]


def make_walker():
    wc = walker_creator()
    box = make_box(wc, 0, 4, 8)
    feet = [wc.add_joint(-2, 0), wc.add_joint(10, 0)]
    again = wc.add_joint(0, 4)          # the same point as box[0]: the same joint
    for k in range(4):
        wc.add_muscle(box[k], box[(k + 1) % 4])
    wc.add_muscle(box[0], box[2])
    wc.add_muscle(feet[0], again, 30, 0.0)
    wc.add_muscle(feet[0], box[3], 12.0, 0.25, 99.0)
    wc.add_muscle(feet[1], box[1], 30, 0.5)
    wc.add_muscle(feet[1], box[2], 0.5, 0.75)
    wc.add_muscle(box[0], again, 5.0, 0.0)  # from a joint to itself: dropped
    return wc.get_walker()
"""

# A grid built by the library's query_cppn, with numpy in the pattern functions and more
# muscles than a hand-written walker has.
NUMPY_GRID = """\
import numpy as np

from walker_creator import query_cppn, walker_creator


def make_walker():
    wc = walker_creator()

    def connect(x1, y1, x2, y2):
        return np.hypot(x2 - x1, y2 - y1) < 4.5

    def amp(x1, y1, x2, y2):
        return np.abs(x2 - x1) + np.abs(y2 - y1)

    def phase(x1, y1, x2, y2):
        return np.float64(x1) / 4.0

    joints = query_cppn(wc, 6, 5, 2.0, connect, amp, phase)
    assert len(joints) == 30
    return wc.get_walker()
"""

# The program keeps its own copy of query_cppn with a loop that pairs some points with
# themselves, as mutated programs do: those muscles are dropped and counted.
OWN_QUERY = """\
from walker_creator import walker_creator


def query_cppn(wc, xgrid, ygrid, scale, connect_func, amp_func, phase_func):
    joints = {}
    for x in range(xgrid):
        for y in range(ygrid):
            joints[(x, y)] = wc.add_joint(x * scale, y * scale)
    for x1 in range(xgrid):
        for y1 in range(ygrid):
            for x2 in range(x1, xgrid):
                for y2 in range(y1, ygrid):
                    if connect_func(x1, y1, x2, y2):
                        wc.add_muscle(joints[(x1, y1)], joints[(x2, y2)],
                                      amp_func(x1, y1, x2, y2), phase_func(x1, y1, x2, y2))
    return joints


def make_walker():
    wc = walker_creator()
    query_cppn(wc, 4, 2, 2.5,
               lambda x1, y1, x2, y2: (x2 - x1) ** 2 + (y2 - y1) ** 2 <= 2,
               lambda x1, y1, x2, y2: -1.0 if x1 % 2 else 2.0,
               lambda x1, y1, x2, y2: 0.5 * y1)
    return wc.get_walker()
"""


@pytest.fixture(scope="module")
def environment() -> Sodarace:
    return Sodarace()


# --- units -----------------------------------------------------------------------------


def test_amplitude_zero_is_a_passive_spring():
    assert muscle_swing(0, 0.3)[0] == 0.0
    assert muscle_swing(0.0, 0)[0] == 0.0


def test_amplitude_maps_to_a_bounded_swing_that_grows_with_it():
    swings = [muscle_swing(a, 0)[0] for a in (0.125, 0.5, 1, 2, 5, 10, 30, 1e300)]
    assert all(low < high for low, high in zip(swings, swings[1:]))
    assert muscle_swing(1, 0)[0] == pytest.approx(MAX_SWING / 2)
    assert 0 < swings[0] and swings[-1] == MAX_SWING


def test_phase_is_in_periods_and_a_negative_amplitude_is_half_a_period_later():
    assert muscle_swing(1, 0.25)[1] == pytest.approx(math.pi / 2)
    assert muscle_swing(1, 3.0)[1] == pytest.approx(0.0)  # whole periods are one phase
    swing, radians = muscle_swing(-1, 0.25)
    assert swing == muscle_swing(1, 0)[0]
    assert math.sin(radians) == pytest.approx(math.sin(math.pi / 2 + math.pi))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_amplitude_and_phase_must_be_finite(value):
    with pytest.raises(ValueError, match="finite"):
        muscle_swing(value, 0)
    with pytest.raises(ValueError, match="finite"):
        muscle_swing(1, value)


# --- the API ----------------------------------------------------------------------------


def test_positional_arguments_as_in_the_paper_and_extra_ones_ignored():
    wc = walker_creator()
    a, b = wc.add_joint(0, 0), wc.add_joint(6, 0)
    wc.add_muscle(a, b, 3.0, 0.5, "ignored", 7)
    assert wc.get_walker()["muscles"] == [[0, 1, pytest.approx(0.375), pytest.approx(math.pi)]]


def test_handles_are_points_found_by_their_coordinates():
    wc = walker_creator()
    wc.add_joint(0, 0)
    wc.add_joint(5, 0)
    wc.add_muscle((0, 0), [5.0, 0.0])
    wc.add_muscle(1, 0)  # a joint's index works too
    assert [m[:2] for m in wc.get_walker()["muscles"]] == [[0, 1], [1, 0]]


def test_coinciding_joints_merge_and_self_muscles_are_dropped_and_counted():
    wc = walker_creator()
    a = wc.add_joint(0, 0)
    b = wc.add_joint(4, 0)
    assert wc.add_joint(0, 0) == a  # the same point
    assert wc.add_joint(4.3, 0.2) == b  # closer than the minimum spacing
    wc.add_muscle(a, b)
    assert wc.add_muscle(a, a, 2.0, 0.0) is None
    assert wc.add_muscle(b, (4, 0)) is None  # a zero-length muscle
    walker = wc.get_walker()
    assert walker["joints"] == [[0.0, 0.0], [4.0, 0.0]]
    assert len(walker["muscles"]) == 1
    assert walker["dropped"] == {"merged_joints": 2, "self_muscles": 2}


def test_bad_arguments_still_fail_with_a_reason():
    wc = walker_creator()
    a, b = wc.add_joint(0, 0), wc.add_joint(5, 0)
    with pytest.raises(ValueError, match="amplitude must be finite"):
        wc.add_muscle(a, b, math.nan)
    with pytest.raises(TypeError, match="amplitude must be a number"):
        wc.add_muscle(a, b, True)
    with pytest.raises((TypeError, ValueError)):
        wc.add_muscle(a, b, "strong")
    assert wc.get_walker()["muscles"] == []


# --- programs in the paper's style, end to end ----------------------------------------------


@pytest.mark.parametrize(
    "source, joints, muscles, dropped",
    [
        (LEGGED_BOX, 6, 9, {"dropped_merged_joints": 1, "dropped_self_muscles": 1}),
        (NUMPY_GRID, 30, None, {}),
        (OWN_QUERY, 8, 13, {"dropped_self_muscles": 8}),
    ],
    ids=["legged-box", "numpy-grid", "own-query"],
)
def test_paper_style_programs_are_scored(environment, tmp_path, source, joints, muscles, dropped):
    result = build(environment, source, tmp_path)
    score = environment.score(result)
    assert score.valid, score.invalid_reason
    assert math.isfinite(score.fitness)
    assert score.extras["joints"] == joints
    if muscles is not None:
        assert score.extras["muscles"] == muscles
    assert {k: v for k, v in score.extras.items() if k.startswith("dropped_")} == dropped


def test_numpy_grid_has_more_muscles_than_the_old_limit(environment, tmp_path):
    result = build(environment, NUMPY_GRID, tmp_path)
    assert len(result["muscles"]) > 256
    assert all(type(value) is float for muscle in result["muscles"] for value in muscle[2:])


def test_a_program_with_too_many_joints_is_refused_with_a_reason(environment, tmp_path):
    source = NUMPY_GRID.replace("query_cppn(wc, 6, 5,", "query_cppn(wc, 9, 8,").replace("== 30", "== 72")
    done = run_harness(environment, source, tmp_path)
    assert done.returncode != 0
    assert "a walker has at most 64 joints" in done.stderr


@pytest.mark.slow
def test_elm_eval_scores_a_paper_style_program(tmp_path):
    """The command a researcher runs on a program, with the local sandbox."""
    program = tmp_path / "legged_box.py"
    program.write_text(LEGGED_BOX)
    config = tmp_path / "sodarace.yaml"
    config.write_text(
        "environment:\n  name: sodarace\n"
        "sandbox:\n  backend: local\n  pool_size: 1\n  timeout_s: 10\n"
    )
    done = run_elm("eval", str(config), str(program), "--json", check=True)
    report = json.loads(done.stdout)
    assert report["status"] == "ok"
    assert math.isfinite(report["fitness"])
    assert len(report["niche_coordinates"]) == 3
