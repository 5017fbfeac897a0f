"""The diff prompt's exact bytes and the weighted choice of commit messages."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from elm.config import ConfigError, build_config
from elm.environment import CommitMessage, Environment, EnvironmentLoadError
from elm.mutation.prompt import choose_commit_messages, commit_messages_for, diff_prompt


def test_prompt_is_the_training_format_byte_for_byte():
    source = "def main():\n    return {'a': 1}\n"
    prompt = diff_prompt("walker.py", source, "Made the walker faster.")
    assert prompt == (
        "<NME> walker.py\n"
        "<BEF> def main():\n    return {'a': 1}\n"
        "\n<MSG> Made the walker faster.\n<DFF>"
    )


def test_prompt_keeps_source_and_message_as_given():
    prompt = diff_prompt("p.py", "x = '{file_name}'", "Two\nlines")
    assert prompt == "<NME> p.py\n<BEF> x = '{file_name}'\n<MSG> Two\nlines\n<DFF>"


MESSAGES = (
    CommitMessage("Changed the legs.", 1.0),
    CommitMessage("Added a muscle.", 3.0),
    CommitMessage("Never chosen.", 0.0),
)


def test_messages_are_drawn_in_proportion_to_their_weights():
    picks = choose_commit_messages(MESSAGES, 20000, np.random.default_rng(7))
    counts = Counter(picks)
    assert len(picks) == 20000
    assert counts["Never chosen."] == 0
    assert counts["Added a muscle."] / len(picks) == pytest.approx(0.75, abs=0.015)


def test_choice_depends_only_on_the_generator_state():
    first = choose_commit_messages(MESSAGES, 50, np.random.default_rng(3))
    again = choose_commit_messages(MESSAGES, 50, np.random.default_rng(3))
    other = choose_commit_messages(MESSAGES, 50, np.random.default_rng(4))
    assert first == again
    assert first != other
    assert choose_commit_messages(MESSAGES, 0, np.random.default_rng(3)) == []


@pytest.mark.parametrize(
    "messages",
    [
        (),
        (CommitMessage("Zero.", 0.0),),
        (CommitMessage("Negative.", -1.0), CommitMessage("Fine.", 1.0)),
        (CommitMessage("Not a number.", float("nan")),),
        (CommitMessage("   ", 1.0),),
        ("a plain string",),
    ],
)
def test_unusable_messages_are_refused(messages):
    with pytest.raises(ValueError):
        choose_commit_messages(messages, 1, np.random.default_rng(0))


def test_negative_count_is_refused():
    with pytest.raises(ValueError):
        choose_commit_messages(MESSAGES, -1, np.random.default_rng(0))


class _Walkers(Environment):
    name = "walkers"
    commit_messages = MESSAGES


class _Broken(Environment):
    name = "broken"
    commit_messages = (CommitMessage("Only zero.", 0.0),)


def _config(**mutation):
    return build_config({"environment": {"name": "walkers"}, "mutation": mutation})


def test_environment_messages_are_used_by_default():
    assert commit_messages_for(_config(), _Walkers()) == MESSAGES


def test_config_messages_replace_the_environment_with_equal_weights():
    config = _config(commit_messages=["Fix the gait.", "Shorten the legs."])
    messages = commit_messages_for(config, _Walkers())
    assert messages == (CommitMessage("Fix the gait.", 1.0), CommitMessage("Shorten the legs.", 1.0))
    picks = Counter(choose_commit_messages(messages, 4000, np.random.default_rng(1)))
    assert picks["Fix the gait."] / 4000 == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("override", [[], ["Fine.", "  "]])
def test_unusable_config_messages_are_a_config_error(override):
    with pytest.raises(ConfigError, match="mutation.commit_messages"):
        commit_messages_for(_config(commit_messages=override), _Walkers())


def test_unusable_environment_messages_name_the_environment():
    with pytest.raises(EnvironmentLoadError, match="broken"):
        commit_messages_for(_config(), _Broken())
