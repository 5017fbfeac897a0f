"""The diff model behind a server that speaks the OpenAI protocol (`mutation.backend: openai`).

vLLM, SGLang, Ollama, llama.cpp, TGI and hosted APIs all answer `/v1/completions` and
`/v1/chat/completions`. With `mutation.api: completions` the prompt is the diff model's own
`<NME>…<DFF>` record; with `chat` it is a pair of messages for an instruct model
(`elm.mutation.chat`). Requests that share a prompt (the children of one parent) go out as
one request with `n`, so the server prefills the prompt once; a server that answers with
fewer choices is asked again for the rest. Every answer goes through the same `apply_diff`
and validity funnel as the local model's.

Deadlines: each request is cancelled at `mutation.request_timeout_s`, whatever the server
does (sends nothing, trickles bytes). A timeout, a refused connection, 429 or 5xx is
retried after a growing pause, up to `mutation.max_retries` times (each retry is an event);
any other 4xx is not. A child whose request never succeeded has stage "requested", status
`mutation_failed` and the last reason. An answer that is not the protocol's JSON is not
retried either: its children stay at "requested" with the reason; an answer holding no diff
is "generated" and fails at parsing, like the local model's.

The key: `mutation.api_key_env` names the environment variable read each time a request
is sent; the key itself is in no config, store row, event or error text (any echo of it in a
server's error is masked).

Accounting: the request's `usage` is split over its children, so the totals are the
server's (`extras["tokens"] = {"prompt": p, "completion": c}`); `timings["request_s"]` is
the request's latency and `generate_s` its share of it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from elm.errors import UserError
from elm.mutation import Child, MutationRequest
from elm.mutation.chat import chat_messages, diff_from_answer
from elm.mutation.diff import extract_diff
from elm.mutation.diff_mutator import child_from_diff
from elm.mutation.prompt import diff_prompt
from elm.records import Stage

if TYPE_CHECKING:
    from elm.config import MutationConfig

# Pauses between attempts: 0.5 s, 1 s, 2 s ... at most this long (or what Retry-After asks, within it).
_BACKOFF_S = 0.5
_BACKOFF_CAP_S = 8.0
_STOP = ["<|endoftext|>", "<NME>"]
_NO_KEY = "no-key"  # what is sent when mutation.api_key_env names no variable
_REASON_LIMIT = 300

Event = tuple[str, dict[str, Any]]


class MalformedAnswer(Exception):
    """The server answered, but not with the protocol's completion object."""


@dataclass
class _Answer:
    """The texts of one successful request, and what it cost."""

    texts: list[str]
    prompt_tokens: int | None
    completion_tokens: int | None
    seconds: float


@dataclass
class _Failure:
    reason: str
    seconds: float


@dataclass
class _Group:
    """Requests with one prompt: one API request with n = their number."""

    requests: list[MutationRequest]
    children: list[Child] = field(default_factory=list)


class ServedMutator:
    """Mutates programs with a model behind an OpenAI-protocol server; see the module docstring."""

    name = "diff"
    max_in_flight: int | None = None  # requests wait on the server's slots; workers.in_flight bounds batches

    def __init__(self, settings: MutationConfig) -> None:
        from openai import AsyncOpenAI

        self.settings = settings
        if settings.api_key_env and settings.api_key_env not in os.environ:
            raise UserError(f"mutation.api_key_env names {settings.api_key_env}, which is not set in the "
                            "environment; export it (the key stays out of the config and the run folder)")
        self._events: list[Event] = []
        self._events_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="elm-served-model", daemon=True)
        self._thread.start()
        self._closed = False

        async def make_client() -> tuple[Any, asyncio.Semaphore]:
            client = AsyncOpenAI(base_url=settings.endpoint, api_key=_NO_KEY, max_retries=0,
                                 timeout=settings.request_timeout_s)
            return client, asyncio.Semaphore(settings.concurrency)

        self._client, self._slots = self._run(make_client()).result()

    @property
    def workers(self) -> int:
        """Requests the server may work on at once (for the loop's busy figures)."""
        return self.settings.concurrency

    # -- the Mutator protocol -------------------------------------------------------------

    def submit(self, requests: Sequence[MutationRequest]) -> concurrent.futures.Future:
        return self._run(self._batch(list(requests)))

    def collect(self, ticket: concurrent.futures.Future) -> list[Child]:
        started = time.perf_counter()
        children = ticket.result()  # every request inside has its deadline
        waited = time.perf_counter() - started
        for child in children:
            child.timings["collect_wait_s"] = waited
        return children

    def take_events(self) -> list[Event]:
        with self._events_lock:
            events, self._events = self._events, []
        return events

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._client.close()).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    # -- requests ---------------------------------------------------------------------------

    def _run(self, coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    async def _batch(self, requests: list[MutationRequest]) -> list[Child]:
        groups: dict[tuple[int, str, str, str], _Group] = {}
        for request in requests:
            key = (request.parent_id, request.file_name, request.source, request.commit_message)
            groups.setdefault(key, _Group([])).requests.append(request)
        await asyncio.gather(*(self._fill(group) for group in groups.values()))
        by_request = {id(request): child for group in groups.values()
                      for request, child in zip(group.requests, group.children)}
        return [by_request[id(request)] for request in requests]

    async def _fill(self, group: _Group) -> None:
        """Children for every request of the group, asking again while the server answers
        with fewer choices than asked for."""
        while len(group.children) < len(group.requests):
            waiting = group.requests[len(group.children):]
            outcome = await self._with_retries(waiting[0], len(waiting))
            if isinstance(outcome, _Failure):
                group.children.extend(self._failed(request, outcome) for request in waiting)
                return
            group.children.extend(self._children(waiting, outcome))

    async def _with_retries(self, request: MutationRequest, n: int) -> _Answer | _Failure:
        attempts = self.settings.max_retries + 1
        spent = 0.0
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            try:
                async with self._slots:
                    return await asyncio.wait_for(self._ask(request, n), self.settings.request_timeout_s)
            except Exception as error:  # classified below: every failure of a request is a reason
                spent += time.perf_counter() - started
                reason, retry, pause = self._classify(error)
            if not retry or attempts == 1:
                return _Failure(reason, spent)
            if attempt == attempts:
                return _Failure(f"{reason} ({attempts} attempts)", spent)
            pause = min(pause if pause is not None else _BACKOFF_S * 2 ** (attempt - 1), _BACKOFF_CAP_S)
            self._event("request_retry", {"parent": request.parent_id, "attempt": attempt + 1,
                                          "reason": reason, "pause_s": round(pause, 2)})
            await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def _ask(self, request: MutationRequest, n: int) -> _Answer:
        started = time.perf_counter()
        settings = self.settings
        common = dict(model=settings.model, n=n, temperature=settings.temperature, top_p=settings.top_p,
                      max_tokens=settings.max_new_tokens, seed=request.seed,
                      extra_headers=self._auth_header(), timeout=settings.request_timeout_s)
        if settings.api == "chat":
            messages = chat_messages(request.file_name, request.source, request.commit_message)
            response = await self._client.chat.completions.create(messages=messages, **common)
        else:
            prompt = diff_prompt(request.file_name, request.source, request.commit_message)
            response = await self._client.completions.create(prompt=prompt, stop=_STOP, **common)
        texts, prompt_tokens, completion_tokens = _read_answer(response, settings.api)
        return _Answer(texts[:n], prompt_tokens, completion_tokens, time.perf_counter() - started)

    def _auth_header(self) -> dict[str, str]:
        name = self.settings.api_key_env
        if not name:
            return {}
        key = os.environ.get(name)
        if not key:
            raise _KeyMissing(f"environment variable {name} (mutation.api_key_env) is not set")
        return {"Authorization": f"Bearer {key}"}

    def _classify(self, error: Exception) -> tuple[str, bool, float | None]:
        """(reason, whether to retry, the pause the server asked for)."""
        import openai

        timeout = self.settings.request_timeout_s
        if isinstance(error, (asyncio.TimeoutError, openai.APITimeoutError)):
            return f"request: timed out after {timeout:g} s", True, None
        if isinstance(error, openai.APIConnectionError):
            return f"request: connection failed: {self._masked(error)}", True, None
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            reason = f"request: HTTP {status}: {self._masked(error)}"
            return reason, status == 429 or status >= 500, _retry_after(error)
        if isinstance(error, MalformedAnswer):
            return f"request: malformed answer: {self._masked(error)}", False, None
        if isinstance(error, _KeyMissing):
            return f"request: {error}", False, None
        return f"request: {type(error).__name__}: {self._masked(error)}", False, None

    def _masked(self, error: Exception) -> str:
        """An error's text on one line, short, with the key (if a server echoed it) masked."""
        text = " ".join(str(error).split()) or type(error).__name__
        key = os.environ.get(self.settings.api_key_env) if self.settings.api_key_env else None
        if key:
            text = text.replace(key, "***")
        return text[:_REASON_LIMIT]

    # -- children ---------------------------------------------------------------------------

    def _children(self, requests: list[MutationRequest], answer: _Answer) -> list[Child]:
        count = len(answer.texts)
        prompt_shares = _shares(answer.prompt_tokens, count)
        completion_shares = _shares(answer.completion_tokens, count)
        children = []
        for index, (request, text) in enumerate(zip(requests, answer.texts)):
            diff = diff_from_answer(text) if self.settings.api == "chat" else extract_diff(text)
            timings = {"request_s": answer.seconds, "generate_s": answer.seconds / count}
            child = child_from_diff(request, diff, self.name, timings)
            if prompt_shares is not None and completion_shares is not None:
                child.extras["tokens"] = {"prompt": prompt_shares[index], "completion": completion_shares[index]}
            children.append(child)
        return children

    def _failed(self, request: MutationRequest, failure: _Failure) -> Child:
        return Child(parent_id=request.parent_id, source=None, operator=self.name,
                     commit_message=request.commit_message, stage=Stage.REQUESTED, error=failure.reason,
                     timings={"request_s": failure.seconds, "generate_s": 0.0})

    def _event(self, kind: str, detail: dict[str, Any]) -> None:
        with self._events_lock:
            self._events.append((kind, detail))


class _KeyMissing(Exception):
    pass


def _read_answer(response: Any, api: str) -> tuple[list[str], int | None, int | None]:
    """The choices' texts in index order and the usage; MalformedAnswer for anything else."""
    if isinstance(response, (str, bytes)):
        raise MalformedAnswer(f"not a JSON completion object: {str(response)[:80]!r}")
    if not isinstance(getattr(response, "choices", None), list):
        raise MalformedAnswer("the answer holds no list of choices")
    try:
        choices = sorted(response.choices, key=lambda choice: choice.index or 0)
        if api == "chat":
            texts = [choice.message.content or "" for choice in choices]
        else:
            texts = [choice.text or "" for choice in choices]
    except (AttributeError, TypeError) as error:
        raise MalformedAnswer(f"no readable choices ({error})") from None
    if not texts or not all(isinstance(text, str) for text in texts):
        raise MalformedAnswer("the answer holds no choices")
    usage = getattr(response, "usage", None)
    prompt_tokens = getattr(usage, "prompt_tokens", None)
    completion_tokens = getattr(usage, "completion_tokens", None)
    if not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int):
        prompt_tokens = completion_tokens = None
    return texts, prompt_tokens, completion_tokens


def _shares(total: int | None, count: int) -> list[int] | None:
    """`total` split into `count` whole shares that add up to it (the first ones larger)."""
    if total is None:
        return None
    base, extra = divmod(total, count)
    return [base + (index < extra) for index in range(count)]


def _retry_after(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
