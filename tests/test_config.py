from pathlib import Path

import pytest

from elm.config import ConfigError, load_config
from tests.conftest import TOY_CONFIG


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
    with pytest.raises(ConfigError, match="environment.name"):
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
