"""Which commit message each parent is given: `mutation.message_selection`.

- `weighted`: drawn in proportion to the weights (the environment's, or equal weights for
  the config's `mutation.commit_messages`).
- `bandit`: Thompson sampling over Beta-Bernoulli arms, one arm per message. Every child
  drawn a message is one trial of it, a success when the child fills a new niche or
  improves an elite. The weights are the prior: each message starts as if it had been
  tried `PRIOR_TRIALS` times and had succeeded in proportion to its share of the weights
  (Beta(1 + 10 share, 1 + 10 (1 - share))), so the bandit begins close to the weighted
  draw and follows the evidence as it comes. A message of weight 0 is never drawn.

The choices of iteration n use the outcomes of iterations up to n - lag only, where lag is
the number of batches the loop keeps in flight: that is exactly what an uninterrupted run
has committed when it draws iteration n, and what a resumed run rebuilds from the store,
so with the same seed both draw the same messages. The loop's RNG for (seed, iteration)
makes the draws themselves repeatable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from elm.environment import CommitMessage
from elm.mutation import Child, MutationRequest
from elm.mutation.prompt import choose_commit_messages
from elm.store import MessageOutcome

SELECTIONS = ("weighted", "bandit")
PRIOR_TRIALS = 10.0
# Where a child's drawn message is kept (a mutator may rewrite `commit_message`, as GP does).
DRAWN_MESSAGE = "drawn_message"


class MessagePolicy(Protocol):
    def choose(self, count: int, rng: np.random.Generator, iteration: int) -> list[str]:
        """`count` message texts for the parents of `iteration`."""
        ...

    def record(self, outcomes: Iterable[MessageOutcome]) -> None:
        """Take in how the children of committed iterations fared."""
        ...


class WeightedMessages:
    """Draws in proportion to the weights; outcomes change nothing."""

    def __init__(self, messages: Sequence[CommitMessage]) -> None:
        self.messages = tuple(messages)

    def choose(self, count: int, rng: np.random.Generator, iteration: int) -> list[str]:
        return choose_commit_messages(self.messages, count, rng)

    def record(self, outcomes: Iterable[MessageOutcome]) -> None:
        pass


class MessageBandit:
    """Thompson sampling; the weights are the prior (see the module's notes)."""

    def __init__(self, messages: Sequence[CommitMessage], lag: int) -> None:
        choose_commit_messages(messages, 0, np.random.default_rng(0))  # refuses unusable weights
        self.arms = [m for m in messages if m.weight > 0]
        self.lag = max(int(lag), 1)
        weights = np.array([m.weight for m in self.arms], dtype=float)
        share = weights / weights.sum()
        self._alpha = 1.0 + PRIOR_TRIALS * share
        self._beta = 1.0 + PRIOR_TRIALS * (1.0 - share)
        self._index = {m.text: i for i, m in enumerate(self.arms)}
        self._waiting: dict[int, list[tuple[int, int, int]]] = defaultdict(list)

    def choose(self, count: int, rng: np.random.Generator, iteration: int) -> list[str]:
        self._take_in(up_to=iteration - self.lag)
        samples = rng.beta(self._alpha, self._beta, size=(count, len(self.arms)))
        return [self.arms[int(i)].text for i in samples.argmax(axis=1)]

    def record(self, outcomes: Iterable[MessageOutcome]) -> None:
        for outcome in outcomes:
            arm = self._index.get(outcome.message)
            if arm is not None:  # a message no longer configured teaches nothing
                self._waiting[outcome.iteration].append((arm, outcome.tries, outcome.placed))

    def posterior_means(self, after: int) -> dict[str, float]:
        """Each message's expected success rate once the outcomes up to `after` are in."""
        self._take_in(up_to=after)
        means = self._alpha / (self._alpha + self._beta)
        return {arm.text: float(mean) for arm, mean in zip(self.arms, means)}

    def _take_in(self, up_to: int) -> None:
        for iteration in sorted(i for i in self._waiting if i <= up_to):
            for arm, tries, placed in self._waiting.pop(iteration):
                self._alpha[arm] += placed
                self._beta[arm] += tries - placed


def make_message_policy(selection: str, messages: Sequence[CommitMessage], lag: int) -> MessagePolicy:
    if selection == "weighted":
        return WeightedMessages(messages)
    if selection == "bandit":
        return MessageBandit(messages, lag)
    raise ValueError(f"unknown mutation.message_selection {selection!r}")


def mark_drawn_messages(requests: Sequence[MutationRequest], children: Sequence[Child]) -> None:
    """Note on each child the message drawn for it, in `extras`. Children name their parent
    but may come back in another order, so each is matched to a request of its parent: the
    one with its commit message if it kept it (a model's child does), else the next one."""
    drawn: dict[int, list[str]] = defaultdict(list)
    for request in requests:
        drawn[request.parent_id].append(request.commit_message)
    for child in children:
        options = drawn.get(child.parent_id) if child.parent_id is not None else None
        if not options:
            continue
        message = child.commit_message if child.commit_message in options else options[0]
        options.remove(message)
        child.extras[DRAWN_MESSAGE] = message

