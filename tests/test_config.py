import json
from pathlib import Path

import pytest

from elm.config import Allowed, ConfigError, load_config, schema_keys
from tests.conftest import TOY_CONFIG, run_elm


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides_are_typed(tmp_path):
    path = _write(tmp_path, TOY_CONFIG.format(iterations=3, backend="local"))
    config = load_config(path, ["run.iterations=50", "archive.bins=[8,8]", "sandbox.timeout_s=2.5"])
    assert config.run.iterations == 50
    assert config.archive.bins == [8, 8]
    assert config.sandbox.timeout_s == 2.5
    assert config.run.batch_size == 8
    assert config.sandbox.backend == "local"


@pytest.mark.parametrize(
    "override, message",
    [
        ("run.iterationz=3", "iterationz"),
        ("run.iterations=many", "iterations"),
        ("sandbox.backend=podman", "sandbox.backend"),
        ("sandbox.transport=pipe", "sandbox.transport"),
        ("mutation.operator=magic", "mutation.operator"),
        ("run.batch_size=0", "run.batch_size"),
        ("archive.bins=[0,3]", "archive.bins"),
        ("run.iterations", "key=value"),
    ],
)
def test_bad_values_are_one_line_errors(tmp_path, override, message):
    path = _write(tmp_path, TOY_CONFIG.format(iterations=3, backend="local"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, [override])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(_write(tmp_path, "run: [unclosed\n"))


def test_environment_name_is_required(tmp_path):
    with pytest.raises(ConfigError, match=r"environment\.name"):
        load_config(_write(tmp_path, "run:\n  iterations: 2\n"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("- run\n- environment\n", "the top level must be sections such as run: and environment:, not a list"),
        ("run: 5\nenvironment:\n  name: toy\n", "run is a section of keys (e.g. run.iterations), not a value"),
        ("environment: toy\n", "environment is a section of keys"),
    ],
)
def test_a_file_of_the_wrong_shape_is_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = _write(tmp_path, "run:\n  iterations: 3\n   batch_size: 2\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"cannot parse {path}: line 3, column 14: mapping values")
    with pytest.raises(ConfigError, match=r"cannot parse override 'archive.bins=\[8,8': line \d+, column \d+"):
        load_config(_write(tmp_path, TOY_CONFIG.format(iterations=3, backend="local")), ["archive.bins=[8,8"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("archive.bins=10", "override archive.bins=10: archive.bins is a list, e.g. [10, 10]"),
        ("environment.seeds=square", "environment.seeds is a list, e.g. [first, second]"),
        ("mutation.commit_messages=Fix", "mutation.commit_messages is a list"),
        ("environment.options=5", "environment.options is a mapping"),
        ("sandbox=docker", "sandbox is a section of keys (e.g. sandbox.backend), not a value"),
    ],
)
def test_a_value_of_the_wrong_shape_is_said_in_the_users_words(tmp_path, override, message):
    path = _write(tmp_path, TOY_CONFIG.format(iterations=3, backend="local"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, [override])
    assert message in str(caught.value) and "Node" not in str(caught.value)


def test_every_key_has_a_one_line_description():
    keys = schema_keys()
    assert len(keys) > 40
    undescribed = [info.key for info in keys if not info.about.strip() or "\n" in info.about]
    assert undescribed == [], "describe these keys with key(..., about=...) in elm/config.py"


def _bad_value(allowed: Allowed):
    if allowed.choices:
        return "no-such-choice"
    if allowed.above is not None:
        return allowed.above
    if allowed.at_least is not None:
        return allowed.at_least - 1
    return None


@pytest.mark.parametrize("info", [info for info in schema_keys() if _bad_value(info.allowed) is not None],
                         ids=lambda info: info.key)
def test_each_allowed_value_rule_refuses_with_its_key(tmp_path, info):
    path = _write(tmp_path, TOY_CONFIG.format(iterations=3, backend="local"))
    bad = _bad_value(info.allowed)
    if info.type_text.startswith("list"):
        bad = [bad]
    with pytest.raises(ConfigError) as caught:
        load_config(path, [f"{info.key}={json.dumps(bad)}"])
    assert str(caught.value).startswith(f"{info.key} must be ")


def test_archive_selection_choices_are_the_archive_strategies():
    from elm.archive import SELECTIONS

    choices = next(info.allowed.choices for info in schema_keys() if info.key == "archive.selection")
    assert set(choices) == set(SELECTIONS)


def test_config_show_lists_every_key_with_value_and_description():
    shown = run_elm("config", "show", "configs/quickstart.yaml", "run.iterations=7")
    assert shown.returncode == 0, shown.stderr
    lines = {line.split(" = ")[0]: line for line in shown.stdout.splitlines()}
    assert list(lines) == [info.key for info in schema_keys()]
    for info in schema_keys():
        assert f"# {info.about} [" in lines[info.key]
    assert lines["run.iterations"].startswith("run.iterations = 7 ")
    assert lines["archive.bins"].startswith("archive.bins = [12, 12, 12] ")
    assert "[text, docker | local]" in lines["sandbox.backend"]

    rows = json.loads(run_elm("config", "show", "--json", "run.seed=3", check=True).stdout)
    values = {row["key"]: row["value"] for row in rows}
    assert values["run.seed"] == 3 and values["environment.name"] == "???"


def test_config_show_refuses_bad_values_in_one_line():
    shown = run_elm("config", "show", "configs/quickstart.yaml", "sandbox.backend=podman")
    assert shown.returncode == 2
    assert shown.stderr == "elm: error: sandbox.backend must be one of docker, local; got 'podman'\n"
