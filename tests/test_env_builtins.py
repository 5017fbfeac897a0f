"""The contract shared by the built-in environments circle_packing, image and bin_packing:
seeds run valid through their harness (in a child Python, never in the test process),
options and seed names are checked, scoring answers hostile results with a reason."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from elm.environment import Environment, EnvironmentLoadError, load_environment

BUILTINS = ("circle_packing", "image", "bin_packing")

# What a candidate that replaced the harness could hand back; none of it is a result.
HOSTILE_RESULTS = [
    None,
    True,
    3.5,
    math.nan,
    "result",
    [],
    {},
    [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]],
    [0.0] * 100_000,
    {"centers": None, "radii": None, "rgb": None, "size": None, "assignments": None},
    {"centers": [[math.nan, math.inf]] * 26, "radii": [math.nan] * 26},
    {"assignments": [[10**400] * 500] * 5},
]

_CHILD = (
    "import json, sys\n"
    "sys.path.insert(0, '.')\n"
    "import {module} as harness\n"
    "print(json.dumps(harness.main()))\n"
)


def run_harness(environment: Environment, source: str, folder: Path, timeout: float = 60) -> Any:
    """Run the environment's harness next to `source` in a child Python, in a scratch
    folder, as the sandbox runner does; return its JSON result or raise with its error."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {**environment.sandbox_files(), environment.file_name: source}.items():
        (folder / name).write_text(text)
    module = environment.harness.removesuffix(".py")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD.format(module=module)],
        cwd=folder, capture_output=True, text=True, timeout=timeout,
    )
    if child.returncode != 0:
        raise RuntimeError(child.stderr.strip().splitlines()[-1] if child.stderr.strip() else "no error text")
    return json.loads(child.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=BUILTINS)
def environment(request) -> Environment:
    return load_environment(request.param)


def test_every_builtin_is_found_by_name():
    from elm.environment import available_environments

    assert set(BUILTINS) <= set(available_environments())


def test_every_seed_runs_and_scores_valid(environment, tmp_path):
    seeds = environment.seeds()
    assert len(seeds) >= 2
    for seed in seeds:
        assert seed.file_name == environment.file_name
        score = environment.score(run_harness(environment, seed.source, tmp_path / seed.name))
        assert score.valid, f"{environment.name} seed {seed.name}: {score.invalid_reason}"
        assert len(score.descriptor) == len(environment.descriptor_space)
        for value, dimension in zip(score.descriptor, environment.descriptor_space.dimensions):
            assert dimension.low <= value <= dimension.high, (seed.name, dimension.name, value)
        assert score.fitness >= environment.qd_offset


@pytest.mark.parametrize("result", HOSTILE_RESULTS, ids=range(len(HOSTILE_RESULTS)))
def test_hostile_results_are_invalid_with_a_reason(environment, result):
    score = environment.score(result)
    assert not score.valid
    assert isinstance(score.invalid_reason, str) and len(score.invalid_reason) > 5


def test_a_candidate_that_raises_fails_in_the_harness_not_on_the_host(environment, tmp_path):
    source = f"def {environment.entry_point}(*args):\n    raise ValueError('broken on purpose')\n"
    with pytest.raises(RuntimeError, match="broken on purpose"):
        run_harness(environment, source, tmp_path)


def test_seeds_can_be_restricted_by_name(environment):
    first = environment.seeds()[0].name
    restricted = load_environment(environment.name, {"seeds": [first]})
    assert [p.name for p in restricted.seeds()] == [first]
    with pytest.raises(EnvironmentLoadError, match="no_such_seed"):
        load_environment(environment.name, {"seeds": ["no_such_seed"]}).seeds()


def test_unknown_options_are_refused(environment):
    with pytest.raises(EnvironmentLoadError, match="colour"):
        load_environment(environment.name, {"colour": "blue"})


def test_declarations_keep_the_contract(environment):
    space = environment.descriptor_space
    assert len(space) == 2
    assert all(d.low < d.high and d.bins > 1 for d in space.dimensions)
    assert environment.commit_messages and all(m.weight > 0 for m in environment.commit_messages)
    assert all(m.text.endswith(".") for m in environment.commit_messages)
    files = environment.sandbox_files()
    assert environment.harness in files and environment.file_name not in files
    for name, text in files.items():
        if name.endswith(".py"):
            compile(text, name, "exec")
