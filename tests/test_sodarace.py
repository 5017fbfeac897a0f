"""Sodarace: seeds, the sandbox-side API and harness, scoring, determinism, pictures, bench.

Sandbox-side files run in a child Python process (as they would in the sandbox), never
in the test process.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from elm.environment import EnvironmentLoadError, load_environment, seed_programs
from environments.sodarace import Sodarace
from environments.sodarace.physics import simulate
from environments.sodarace.render import STRIP_PANELS
from environments.sodarace.walker import Muscle, Walker, parse_walker
from environments.sodarace.walker_creator import MAX_JOINTS, walker_creator

SEED_NAMES = ("square", "radial", "cppn-fixed", "cppn-mutable")  # the paper's, the default
EXTRA_SEED_NAMES = ("pulse-square", "wave-wheel", "lattice-fixed", "lattice-mutable")
ALL_SEED_NAMES = SEED_NAMES + EXTRA_SEED_NAMES
WALKING_SEED_NAMES = ("square", "pulse-square", "wave-wheel")
ROOT = Path(__file__).resolve().parents[1]


def run_harness(environment: Sodarace, source: str, folder: Path) -> subprocess.CompletedProcess:
    """Write the sandbox files and a candidate into `folder`; run the harness in a child."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {**environment.sandbox_files(), environment.file_name: source}.items():
        (folder / name).write_text(text)
    module = Path(environment.harness).stem
    code = f"import json, {module}; print(json.dumps({module}.main()))"
    return subprocess.run(
        [sys.executable, "-E", "-s", "-c", code], cwd=folder, capture_output=True, text=True, timeout=60
    )


def build(environment: Sodarace, source: str, folder: Path):
    done = run_harness(environment, source, folder)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def niche(environment: Sodarace, descriptor) -> tuple[int, ...]:
    index = []
    for value, dimension in zip(descriptor, environment.descriptor_space.dimensions):
        fraction = (value - dimension.low) / (dimension.high - dimension.low)
        index.append(min(dimension.bins - 1, max(0, math.floor(fraction * dimension.bins))))
    return tuple(index)


@pytest.fixture(scope="module")
def environment() -> Sodarace:
    return Sodarace()


@pytest.fixture(scope="module")
def seed_results(environment, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("sodarace-seeds")
    programs = Sodarace(seeds=list(ALL_SEED_NAMES)).seeds()
    return {p.name: build(environment, p.source, folder / p.name) for p in programs}


# --- the environment's contract -------------------------------------------------------


def test_loader_finds_sodarace_and_passes_seed_names():
    environment = load_environment("sodarace", {"seeds": ["Square", "cppn_mutable"], "duration": 4})
    assert isinstance(environment, Sodarace)
    assert [p.name for p in environment.seeds()] == ["square", "cppn-mutable"]
    assert environment.physics.duration_s == 4.0


def test_the_papers_seeds_by_default(environment):
    programs = environment.seeds()
    assert [p.name for p in programs] == list(SEED_NAMES)
    assert all(p.file_name == "walker.py" and "def make_walker" in p.source for p in programs)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"seeds": ["square", "triangle"]}, "unknown sodarace seed 'triangle'"),
        ({"seeds": "square"}, "must be a list"),
        ({"seeds": []}, "is empty"),
        ({"duration": 0}, "duration must be in"),
        ({"duration": float("nan")}, "duration must be in"),
        ({"duration": "long"}, "number of seconds"),
        ({"gravity": 1.0}, "gravity"),
    ],
)
def test_bad_options_are_user_errors(options, message):
    with pytest.raises(EnvironmentLoadError, match=message):
        Sodarace(**options)


def test_commit_messages_are_the_papers():
    messages = {m.text: m.weight for m in Sodarace.commit_messages}
    assert messages == {
        "Changed make_walker function.": 0.4,
        "Changed parameters in make_walker function.": 0.3,
        "Small change to make_walker function.": 0.3,
    }


def test_map_is_paper_sized():
    space = Sodarace.descriptor_space
    assert space.names == ("height", "width", "mass")
    assert math.prod(space.bins) == 1728


# --- seeds -----------------------------------------------------------------------------


def test_each_seed_is_valid_inside_the_map(environment, seed_results):
    for name in ALL_SEED_NAMES:
        score = environment.score(seed_results[name])
        assert score.valid, (name, score.invalid_reason)
        for value, (low, high) in zip(score.descriptor, environment.descriptor_space.ranges):
            assert low < value < high, (name, score.descriptor)


def test_walking_seeds_walk_forward(environment, seed_results):
    for name in WALKING_SEED_NAMES:
        assert environment.score(seed_results[name]).fitness > 5.0, name  # half a metre in 10 s at least


def test_paper_cppn_seeds_start_as_one_walker_in_its_own_niche(environment, seed_results):
    """CPPN-Fixed and CPPN-Mutable differ only in whether query_cppn is part of the program."""
    assert seed_results["cppn-fixed"] == seed_results["cppn-mutable"]
    niches = {niche(environment, environment.score(seed_results[name]).descriptor) for name in SEED_NAMES}
    assert len(niches) == 3


def test_extra_seeds_land_in_four_different_niches(environment, seed_results):
    niches = {niche(environment, environment.score(seed_results[name]).descriptor) for name in EXTRA_SEED_NAMES}
    assert len(niches) == 4


def test_muscles_do_the_walking(environment, seed_results):
    """With every amplitude set to zero, each walking seed moves less than it walks."""
    for name in WALKING_SEED_NAMES:
        result = seed_results[name]
        walker = parse_walker(result)
        still = Walker(walker.joints, tuple(Muscle(m.first, m.second, 0.0, m.phase) for m in walker.muscles))
        assert abs(simulate(still, environment.physics).distance) < environment.score(result).fitness, name


def test_same_walker_same_fitness_every_time(environment, seed_results):
    result = seed_results["cppn-fixed"]
    first = environment.score(result)
    assert environment.score(result) == first
    assert Sodarace().score(json.loads(json.dumps(result))) == first


def test_same_fitness_in_a_fresh_process(environment, seed_results, tmp_path):
    path = tmp_path / "walker.json"
    path.write_text(json.dumps(seed_results["radial"]))
    code = (
        "import json, sys; from environments.sodarace import Sodarace; "
        "print(repr(Sodarace().score(json.loads(open(sys.argv[1]).read())).fitness))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == environment.score(seed_results["radial"]).fitness


def test_score_extras_count_the_walker(environment, seed_results):
    extras = environment.score(seed_results["square"]).extras
    assert dict(extras) == {"joints": 5, "muscles": 8, "active_muscles": 3}


def test_shorter_duration_is_used(seed_results):
    short, full = Sodarace(duration=1.0), Sodarace()
    assert short.score(seed_results["radial"]).fitness != full.score(seed_results["radial"]).fitness


# --- sandbox side: the API and the harness ----------------------------------------------


def test_api_builds_plain_data():
    wc = walker_creator()
    a, b, c = wc.add_joint(0, 0), wc.add_joint(4, 0), wc.add_joint(2, 3)
    wc.add_muscle(a, b)
    wc.add_muscle(b, c, 1.0, 0.25)
    assert (a, b, c) == ((0.0, 0.0), (4.0, 0.0), (2.0, 3.0))  # the joint itself, as in the paper
    assert wc.get_walker() == {
        "joints": [[0.0, 0.0], [4.0, 0.0], [2.0, 3.0]],
        "muscles": [[0, 1, 0.0, 0.0], [1, 2, 0.25, math.pi / 2]],
        "dropped": {"merged_joints": 0, "self_muscles": 0},
    }


def test_api_rejects_bad_handles_and_too_many_joints():
    wc = walker_creator()
    first = wc.add_joint(0, 0)
    with pytest.raises(ValueError, match="no joint 7"):
        wc.add_muscle(first, 7)
    with pytest.raises(ValueError, match=r"no joint at \(3.0, 3.0\)"):
        wc.add_muscle(first, (3, 3))
    with pytest.raises(TypeError, match="handle"):
        wc.add_muscle(first, True)
    with pytest.raises(TypeError, match="handle"):
        wc.add_muscle(first, "top")
    with pytest.raises(ValueError, match="finite"):
        wc.add_joint(math.nan, 0)
    for k in range(1, MAX_JOINTS):
        wc.add_joint(k * 2, 0)
    with pytest.raises(ValueError, match=f"at most {MAX_JOINTS} joints"):
        wc.add_joint(0, 50)


def test_harness_runs_a_candidate_in_a_child_process(environment, tmp_path):
    source = (
        "from walker_creator import walker_creator\n\n"
        "def make_walker():\n"
        "    wc = walker_creator()\n"
        "    a, b = wc.add_joint(0, 0), wc.add_joint(5, 0)\n"
        "    wc.add_muscle(a, b, amplitude=0.2)\n"
        "    return wc.get_walker()\n"
    )
    result = build(environment, source, tmp_path)
    assert result == {
        "joints": [[0.0, 0.0], [5.0, 0.0]],
        "muscles": [[0, 1, pytest.approx(0.5 * 0.2 / 1.2), 0.0]],
        "dropped": {"merged_joints": 0, "self_muscles": 0},
    }
    assert environment.score(result).valid


@pytest.mark.parametrize(
    "source, error",
    [
        ("def build():\n    return {}\n", "defines no make_walker()"),
        (
            "from walker_creator import walker_creator\n\ndef make_walker():\n"
            "    wc = walker_creator()\n    wc.add_muscle(0, 1)\n",
            "no joint 0",
        ),
    ],
)
def test_harness_errors_name_the_problem(environment, tmp_path, source, error):
    done = run_harness(environment, source, tmp_path)
    assert done.returncode != 0
    assert error in done.stderr


# --- pictures ------------------------------------------------------------------------------


def test_render_writes_an_animation_and_a_strip(environment, seed_results, tmp_path):
    written = environment.render(seed_results["radial"], str(tmp_path / "pictures" / "radial"))
    assert written == str(tmp_path / "pictures" / "radial.gif")
    with Image.open(written) as gif:
        assert gif.n_frames > 50
        width, height = gif.size
    with Image.open(tmp_path / "pictures" / "radial.png") as strip:
        assert strip.size[0] > STRIP_PANELS * width and strip.size[1] == height


def test_render_of_an_invalid_walker_writes_nothing(environment, tmp_path):
    assert environment.render({"joints": "junk"}, str(tmp_path / "bad")) is None
    catapult = {"joints": [[0.0, 0.0], [0.0, 100.0]], "muscles": [[0, 1, 1.0, 0.0]]}
    assert environment.render(catapult, str(tmp_path / "blown-up")) is None
    assert list(tmp_path.iterdir()) == []


# --- bench -----------------------------------------------------------------------------------


def test_bench_reports_cost_per_walker_and_scaling():
    from elm.bench import sodarace as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    result = bench.run(parser.parse_args(["--repeat", "1", "--duration", "0.25"]))
    assert result["ms_per_walker"] > 0
    assert set(result["seeds"]) == set(SEED_NAMES)
    assert all(seed["fitness"] is not None for seed in result["seeds"].values())
    assert all(row["completed"] and row["ms"] > 0 for row in result["scaling"])
    assert {"base", "per_joint", "per_muscle", "per_active_muscle"} == set(result["cost_model_ms"])
    assert "ms per walker" in bench.describe(result)
    json.dumps(result)


def test_loop_seed_selection_agrees_with_the_options():
    environment = Sodarace(seeds=["CPPN_Fixed", "radial"])
    chosen = seed_programs(environment)
    assert [p.name for p in chosen] == ["cppn-fixed", "radial"]
    assert Sodarace().seed_names is None


@pytest.mark.parametrize("name", ["sodarace.yaml", "sodarace_diff.yaml", "sodarace_paper.yaml", "quickstart.yaml"])
def test_configs_load_a_paper_sized_sodarace(name):
    from elm.config import load_config

    config = load_config(ROOT / "configs" / name)
    options = {**config.environment.options, "seeds": config.environment.seeds}
    environment = load_environment(config.environment.name, options)
    assert isinstance(environment, Sodarace)
    assert tuple(config.archive.bins) == environment.descriptor_space.bins
    assert len(environment.seeds()) == 4
