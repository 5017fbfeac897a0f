"""Circle packing: the host's checker (containment, overlaps, hostile data), the descriptors,
the option n reaching the sandbox side, and the picture."""

from __future__ import annotations

import math

import pytest

from elm.environment import EnvironmentLoadError, load_environment
from environments.circle_packing.packing import TOLERANCE
from tests.test_env_builtins import run_harness


def _four_quarters(**changes) -> dict:
    """Four circles of radius 0.25 filling the unit square: a perfect packing for n=4."""
    result = {"centers": [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]], "radii": [0.25] * 4}
    result.update(changes)
    return result


@pytest.fixture(scope="module")
def four():
    return load_environment("circle_packing", {"n": 4})


def test_a_perfect_packing_scores_the_sum_of_its_radii(four):
    score = four.score(_four_quarters())
    assert score.valid
    assert score.fitness == pytest.approx(1.0)
    assert score.descriptor == pytest.approx((0.0, 1.0))  # equal radii, all touching a wall


def test_overlap_within_the_tolerance_is_accepted_beyond_it_refused(four):
    slightly = _four_quarters(radii=[0.25 + TOLERANCE / 4] * 4)
    assert four.score(slightly).valid
    clearly = _four_quarters(centers=[[0.25, 0.25], [0.70, 0.25], [0.25, 0.75], [0.75, 0.75]],
                             radii=[0.25, 0.25, 0.25, 0.25])
    score = four.score(clearly)
    assert not score.valid
    assert score.invalid_reason.startswith("circles 0 and 1 overlap by 0.05")


def test_overlapping_circles_are_named():
    two = load_environment("circle_packing", {"n": 2})
    score = two.score({"centers": [[0.3, 0.5], [0.5, 0.5]], "radii": [0.15, 0.15]})
    assert score.invalid_reason == "circles 0 and 1 overlap by 0.1"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"centers": [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.80, 0.75]]}, "circle 3 sticks out"),
        ({"radii": [0.25, 0.25, -0.1, 0.25]}, "circle 2 has a negative radius"),
        ({"radii": [0.25] * 5}, "list of 4 numbers"),
        ({"centers": [[0.25, 0.25, 0.1]] * 4}, "centre 0 is not an [x, y] pair"),
        ({"radii": [0.25, True, 0.25, 0.25]}, "radius 1 is not a number"),
        ({"radii": [0.25, "0.25", 0.25, 0.25]}, "radius 1 is not a number"),
        ({"radii": [0.25, 10**400, 0.25, 0.25]}, "radius 1 is too large"),
        ({"radii": [0.25, math.inf, 0.25, 0.25]}, "radius 1 is not finite"),
        ({"centers": [[0.25, math.nan]] * 4}, "centre 0 is not finite"),
        ({"centers": [[0.25, 0.25]] * 10**6}, "list of 4 [x, y] pairs"),
        ({"centers": {"0": [0.25, 0.25]}}, "list of 4 [x, y] pairs"),
    ],
)
def test_broken_packings_are_refused_with_the_reason(four, change, reason):
    score = four.score(_four_quarters(**change))
    assert not score.valid
    assert reason in score.invalid_reason


def test_grid_seed_has_equal_radii_along_three_walls(tmp_path):
    environment = load_environment("circle_packing")
    grid = load_environment("circle_packing", {"seeds": ["grid"]}).seeds()[0]
    score = environment.score(run_harness(environment, grid.source, tmp_path))
    assert score.fitness == pytest.approx(26 / 12)  # 6 x 5 grid, radius 1/12
    radius_spread, wall_contact = score.descriptor
    assert radius_spread == pytest.approx(0.0, abs=1e-9)
    assert wall_contact == pytest.approx(13 / 26)


def test_option_n_reaches_the_candidate(tmp_path):
    environment = load_environment("circle_packing", {"n": 5, "seeds": ["rings"]})
    result = run_harness(environment, environment.seeds()[0].source, tmp_path)
    assert len(result["centers"]) == len(result["radii"]) == 5
    assert environment.score(result).valid


def test_the_harness_refuses_a_wrong_shape(tmp_path):
    environment = load_environment("circle_packing", {"n": 3})
    source = "def pack(n):\n    return [[0.5, 0.5]], [0.1]\n"
    with pytest.raises(RuntimeError, match=r"centres have shape \(1, 2\), expected \(3, 2\)"):
        run_harness(environment, source, tmp_path)


@pytest.mark.parametrize("n", [0, -3, 2.5, "26", True, 10**6])
def test_bad_n_is_refused(n):
    with pytest.raises(EnvironmentLoadError, match="option n"):
        load_environment("circle_packing", {"n": n})


def test_render_draws_a_valid_packing_and_skips_garbage(four, tmp_path):
    written = four.render(_four_quarters(), str(tmp_path / "packing"))
    assert written == str(tmp_path / "packing.png")
    assert (tmp_path / "packing.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert four.render({"centers": "nope"}, str(tmp_path / "garbage")) is None
    assert not (tmp_path / "garbage.png").exists()
