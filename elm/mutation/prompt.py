"""The diff model's prompt and the commit messages that steer it.

The prompt is the model's training format, byte for byte:
`<NME> {file_name}\\n<BEF> {source}\\n<MSG> {commit_message}\\n<DFF>`; the model
continues it with a unified diff. Commit messages come from the environment as weighted
choices; a config's `mutation.commit_messages` replaces them with equally weighted ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import TYPE_CHECKING

import numpy as np

from elm.config import ConfigError
from elm.environment import CommitMessage, EnvironmentLoadError

if TYPE_CHECKING:
    from elm.config import ElmConfig
    from elm.environment import Environment


def diff_prompt(file_name: str, source: str, commit_message: str) -> str:
    """The prompt asking for a diff of `source` that does what `commit_message` says."""
    return f"<NME> {file_name}\n<BEF> {source}\n<MSG> {commit_message}\n<DFF>"


def parse_diff_prompt(prompt: str) -> tuple[str, str, str]:
    """(file name, source, commit message) of a prompt `diff_prompt` wrote."""
    head, separator, rest = prompt.partition("\n<BEF> ")
    source, middle, tail = rest.rpartition("\n<MSG> ")
    if not (head.startswith("<NME> ") and separator and middle and tail.endswith("\n<DFF>")):
        raise ValueError("not a diff-model prompt")
    return head[len("<NME> "):], source, tail[:-len("\n<DFF>")]


def choose_commit_messages(
    messages: Sequence[CommitMessage], count: int, rng: np.random.Generator
) -> list[str]:
    """`count` message texts drawn with replacement, in proportion to their weights."""
    if count < 0:
        raise ValueError(f"count must be >= 0; got {count}")
    problem = _weights_problem(messages)
    if problem:
        raise ValueError(problem)
    weights = np.array([message.weight for message in messages], dtype=float)
    picks = rng.choice(len(messages), size=count, p=weights / weights.sum())
    return [messages[index].text for index in picks]


def commit_messages_for(config: ElmConfig, environment: Environment) -> tuple[CommitMessage, ...]:
    """The config's messages (equal weights) if it names any, else the environment's."""
    override = config.mutation.commit_messages
    if override is not None:
        if not override:
            raise ConfigError("mutation.commit_messages is empty: list at least one message or leave it out")
        blank = [index for index, text in enumerate(override) if not str(text).strip()]
        if blank:
            raise ConfigError(f"mutation.commit_messages[{blank[0]}] is blank")
        return tuple(CommitMessage(str(text), 1.0) for text in override)
    messages = tuple(environment.commit_messages)
    problem = _weights_problem(messages)
    if problem:
        raise EnvironmentLoadError(f"environment {environment.name!r}: {problem}")
    return messages


def _weights_problem(messages: Sequence[CommitMessage]) -> str | None:
    """Why these messages cannot be drawn from, or None."""
    if not messages:
        return "no commit messages to choose from"
    for message in messages:
        if not isinstance(message, CommitMessage):
            return f"commit message {message!r} is not a CommitMessage(text, weight)"
        if not isinstance(message.text, str) or not message.text.strip():
            return f"commit message {message.text!r} is blank"
        if not isinstance(message.weight, Real) or not math.isfinite(message.weight) or message.weight < 0:
            return f"commit message {message.text!r} has weight {message.weight!r}; weights are finite and >= 0"
    if sum(message.weight for message in messages) <= 0:
        return "all commit message weights are zero"
    return None
