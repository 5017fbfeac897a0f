"""The diff mutator: prompt the diff model with a parent and a commit message, apply its diff.

Requests with the same prompt (same file name, source and commit message) share one
prefill and are sampled together, each from its own seed; different prompts are batched
together too, similar lengths side by side. Every request gets a child that
says how far it got: "generated" (the diff did not parse), "parsed" (it did not apply),
"applied" (a new source). A prompt that does not fit the model's context is never sent:
its child has stage `skipped` (before the funnel: elm/records.py) and the token count in `error`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from elm.config import MutationConfig
from elm.errors import UserError
from elm.mutation import Child, InProcessMutator, MutationRequest
from elm.mutation.diff import DiffError, apply_diff, extract_diff
from elm.mutation.model import DiffModel
from elm.mutation.prompt import diff_prompt
from elm.records import Stage

# Where a DiffError leaves a child in the funnel.
_STAGE_REACHED = {"parse": Stage.GENERATED, "apply": Stage.PARSED}


@dataclass
class _PromptGroup:
    prompt: str
    token_count: int
    requests: list[MutationRequest] = field(default_factory=list)


class DiffMutator(InProcessMutator):
    """Mutates programs with a diff model held in this process."""

    name = "diff"

    def __init__(
        self, model: DiffModel, settings: MutationConfig, *, max_sequences_per_batch: int = 32
    ) -> None:
        if model.prompt_token_limit(settings.max_new_tokens) <= 0:
            raise UserError(
                f"mutation.max_new_tokens ({settings.max_new_tokens}) leaves no room for a prompt "
                f"in the context of {model.name} ({model.context_length} tokens)"
            )
        self.model = model
        self.settings = settings
        self.max_sequences_per_batch = max_sequences_per_batch

    @property
    def prompt_token_limit(self) -> int:
        """The longest prompt sent: the config's cap, within the model's context."""
        context_limit = self.model.prompt_token_limit(self.settings.max_new_tokens)
        return min(self.settings.max_prompt_tokens, context_limit)

    def propose(self, requests: Sequence[MutationRequest]) -> list[Child]:
        groups = self._group(requests)
        fitting = [group for group in groups if group.token_count <= self.prompt_token_limit]
        too_long = [group for group in groups if group.token_count > self.prompt_token_limit]
        children = [child for group in too_long for child in self._skipped(group)]
        for batch in self._batches(fitting):
            children.extend(self._mutate_batch(batch))
        return children

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]

    def _group(self, requests: Sequence[MutationRequest]) -> list[_PromptGroup]:
        groups: dict[str, _PromptGroup] = {}
        for request in requests:
            prompt = diff_prompt(request.file_name, request.source, request.commit_message)
            if prompt not in groups:
                groups[prompt] = _PromptGroup(prompt, len(self.model.encode(prompt)))
            groups[prompt].requests.append(request)
        return list(groups.values())

    def _batches(self, groups: list[_PromptGroup]) -> list[list[_PromptGroup]]:
        """Similar lengths together (less padding), at most max_sequences_per_batch samples
        per batch unless one prompt alone asks for more."""
        batches: list[list[_PromptGroup]] = []
        current: list[_PromptGroup] = []
        sequences = 0
        for group in sorted(groups, key=lambda g: g.token_count):
            if current and sequences + len(group.requests) > self.max_sequences_per_batch:
                batches.append(current)
                current, sequences = [], 0
            current.append(group)
            sequences += len(group.requests)
        if current:
            batches.append(current)
        return batches

    def _mutate_batch(self, batch: list[_PromptGroup]) -> list[Child]:
        started = time.perf_counter()
        texts = self.model.sample_with_seeds(
            [group.prompt for group in batch],
            [[request.seed for request in group.requests] for group in batch],
            temperature=self.settings.temperature,
            top_p=self.settings.top_p,
            max_new_tokens=self.settings.max_new_tokens,
        )
        generate_s = (time.perf_counter() - started) / sum(len(group.requests) for group in batch)
        return [
            self._child(request, text, generate_s)
            for group, group_texts in zip(batch, texts)
            for request, text in zip(group.requests, group_texts)
        ]

    def _child(self, request: MutationRequest, generated: str, generate_s: float) -> Child:
        return child_from_diff(request, extract_diff(generated), self.name, {"generate_s": generate_s})

    def _skipped(self, group: _PromptGroup) -> list[Child]:
        return [
            Child(
                parent_id=request.parent_id,
                source=None,
                operator=self.name,
                commit_message=request.commit_message,
                stage=Stage.SKIPPED,
                error=f"prompt too long ({group.token_count} tokens > {self.prompt_token_limit})",
            )
            for request in group.requests
        ]


def child_from_diff(request: MutationRequest, diff: str, operator: str, timings: dict[str, float]) -> Child:
    """The child of applying a model's `diff` to the request's parent, at the funnel stage
    it reached: "generated" (the diff did not parse), "parsed" (it did not apply) or
    "applied" (a new source)."""
    started = time.perf_counter()
    child = Child(
        parent_id=request.parent_id,
        source=None,
        operator=operator,
        commit_message=request.commit_message,
        diff=diff,
        timings=dict(timings),
    )
    try:
        child.source = apply_diff(request.source, diff)
        child.stage = Stage.APPLIED
    except DiffError as error:
        child.stage = _STAGE_REACHED[error.stage]
        child.error = str(error)
    child.timings["apply_s"] = time.perf_counter() - started
    return child
