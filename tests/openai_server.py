"""OpenAI-protocol servers on 127.0.0.1 for the served-model tests (and by hand).

`serve(answers)` runs a starlette app under uvicorn in a thread and yields its `/v1` URL;
`serve_hanging()` accepts connections and never answers. What the app answers:

- `DiffWriter`: reads the file out of the prompt (the `<BEF>` record, or the chat message's
  ```python block) and writes a valid diff that changes one number in it; chat answers
  come as a ```diff block, as bare text after a sentence, or as a SEARCH/REPLACE block.
- `TinyCodegen`: samples the completion from the tiny CodeGen (random weights).
- `Flaky(inner, failures, status=500)`: the first `failures` requests get that HTTP status,
  then `inner` answers.
- `Garbage()`: HTTP 200 with a body that is not a completion object.

Usage counts prompt and completion as GPT-2 pre-tokens (words, numbers, punctuation runs,
whitespace runs): a lower bound on the GPT-2 BPE tokens CodeGen's tokenizer would count.

By hand: `python -m tests.openai_server --port 8765 [--fail-first 2]` serves DiffWriter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

_PRE_TOKEN = re.compile(r"'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+")
_NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\w.])")
_BEF = re.compile(r"<BEF> (.*)\n<MSG> ", re.DOTALL)
_CHAT_FILE = re.compile(r"File: (\S+)\n```python\n(.*?)```\n", re.DOTALL)


def count_tokens(text: str) -> int:
    return len(_PRE_TOKEN.findall(text))


class Answers:
    """What the app answers; `seen` records every request body and its Authorization header,
    `most_at_once` the most requests it held at one time (each held `delay_s`)."""

    delay_s = 0.0

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.at_once = 0
        self.most_at_once = 0

    def completion(self, body: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def chat(self, body: dict[str, Any]) -> list[str]:
        raise NotImplementedError


class DiffWriter(Answers):
    """`max_choices` caps the choices of one answer, as servers that ignore `n` do."""

    def __init__(self, max_choices: int | None = None) -> None:
        super().__init__()
        self.max_choices = max_choices

    def choices(self, body: dict[str, Any]) -> int:
        wanted = body.get("n") or 1
        return min(wanted, self.max_choices) if self.max_choices else wanted

    def completion(self, body: dict[str, Any]) -> list[str]:
        found = _BEF.search(body["prompt"])
        source = found.group(1) if found else ""
        return [_diff(source, body, index) + "<|endoftext|>" for index in range(self.choices(body))]

    def chat(self, body: dict[str, Any]) -> list[str]:
        found = _CHAT_FILE.search(body["messages"][-1]["content"])
        name, source = found.groups() if found else ("program.py", "")
        answers = []
        for index in range(self.choices(body)):
            diff = _diff(source, body, index, name)
            style = index % 3
            if style == 0:
                answers.append(f"Here is the change.\n```diff\n{diff}```\n")
            elif style == 1:
                answers.append(f"The diff:\n\n{diff}")
            else:
                answers.append(_search_replace(diff))
        return answers


class TinyCodegen(Answers):
    def __init__(self, model_dir: str) -> None:
        super().__init__()
        from elm.mutation.model import DiffModel

        self.model = DiffModel.load(model_dir)

    def completion(self, body: dict[str, Any]) -> list[str]:
        seed = body.get("seed") or 0
        n = body.get("n") or 1
        [texts] = self.model.sample_with_seeds(
            [body["prompt"]], [[seed + index for index in range(n)]], temperature=body.get("temperature", 0.8),
            top_p=body.get("top_p", 0.95), max_new_tokens=body.get("max_tokens") or 16)
        return texts


class Flaky(Answers):
    def __init__(self, inner: Answers, failures: int, status: int = 500) -> None:
        super().__init__()
        self.inner = inner
        self.failures = failures
        self.status = status

    def fails(self, arrival: int) -> bool:
        """Whether the request that arrived `arrival`-th (from 1) is refused."""
        return arrival <= self.failures

    def completion(self, body: dict[str, Any]) -> list[str]:
        return self.inner.completion(body)

    def chat(self, body: dict[str, Any]) -> list[str]:
        return self.inner.chat(body)


class Garbage(Answers):
    pass


def make_app(answers: Answers):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def handle(request: Request, kind: str):
        body = await request.json()
        answers.seen.append({"kind": kind, "body": body, "authorization": request.headers.get("authorization")})
        arrival = len(answers.seen)  # counted now: requests in flight together must not share a number
        answers.at_once += 1
        answers.most_at_once = max(answers.most_at_once, answers.at_once)
        try:
            await asyncio.sleep(answers.delay_s)
            return answer(body, kind, arrival)
        finally:
            answers.at_once -= 1

    def answer(body: dict[str, Any], kind: str, arrival: int):
        if isinstance(answers, Garbage):
            if arrival % 2:
                return PlainTextResponse("<html>upstream is having a bad day</html>")
            return JSONResponse({"id": "x", "object": "text_completion", "note": "no choices here"})
        if isinstance(answers, Flaky) and answers.fails(arrival):
            error = {"message": f"refused with {answers.status}", "type": "server_error"}
            return JSONResponse({"error": error}, status_code=answers.status)
        texts = answers.chat(body) if kind == "chat" else answers.completion(body)
        prompt = body["prompt"] if kind == "completion" else "".join(m["content"] for m in body["messages"])
        return JSONResponse(_completion_object(kind, body, texts, prompt))

    async def completions(request: Request):
        return await handle(request, "completion")

    async def chat(request: Request):
        return await handle(request, "chat")

    async def models(request: Request):
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"]),
                             Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models)])


@contextlib.contextmanager
def serve(answers: Answers, port: int = 0) -> Iterator[str]:
    """The app on 127.0.0.1 in a thread; yields its base URL; stopped on exit."""
    import uvicorn

    config = uvicorn.Config(make_app(answers), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="openai-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def serve_hanging() -> Iterator[str]:
    """A server that accepts connections, reads what comes and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stopping = threading.Event()

    def accept_forever() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            accepted.append(connection)

    thread = threading.Thread(target=accept_forever, name="hanging-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stopping.set()
        thread.join(timeout=5)
        for connection in accepted:
            connection.close()
        listener.close()


def _completion_object(kind: str, body: dict[str, Any], texts: list[str], prompt: str) -> dict[str, Any]:
    if kind == "chat":
        choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                   for i, t in enumerate(texts)]
    else:
        choices = [{"index": i, "text": t, "finish_reason": "stop", "logprobs": None} for i, t in enumerate(texts)]
    prompt_tokens = count_tokens(prompt)
    completion_tokens = sum(count_tokens(t) for t in texts)
    return {"id": f"cmpl-{random.getrandbits(32):08x}", "object": "chat.completion" if kind == "chat"
            else "text_completion", "created": int(time.time()), "model": body.get("model"),
            "choices": choices, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                          "total_tokens": prompt_tokens + completion_tokens}}


def _diff(source: str, body: dict[str, Any], index: int, name: str = "program.py") -> str:
    """A unified diff changing one decimal number of `source` (seeded by the request)."""
    rng = random.Random(f"{body.get('seed')}-{index}")
    numbers = list(_NUMBER.finditer(source))
    if not numbers:
        return "@@ -1,1 +1,1 @@\n-nothing to change\n+nothing to change either\n"
    match = rng.choice(numbers)
    value = float(match.group(1)) * rng.uniform(0.6, 1.6) + rng.uniform(-0.5, 0.5)
    changed = source[:match.start()] + f"{value:.2f}" + source[match.end():]
    lines = difflib.unified_diff(source.splitlines(keepends=True), changed.splitlines(keepends=True),
                                 f"a/{name}", f"b/{name}", n=2)
    return "".join(lines)


def _search_replace(diff: str) -> str:
    """The diff's hunk as a SEARCH/REPLACE block."""
    body = [line for line in diff.splitlines(keepends=True)[3:] if not line.startswith("@@")]
    search = "".join(line[1:] for line in body if line[:1] in " -")
    replace = "".join(line[1:] for line in body if line[:1] in " +")
    return f"program.py\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="an OpenAI-protocol server that writes valid diffs")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--fail-first", type=int, default=0, help="answer the first N requests with HTTP 500")
    parser.add_argument("--hang", action="store_true", help="accept connections and never answer")
    args = parser.parse_args()
    if args.hang:
        _hang_on(args.port)
        return
    answers: Answers = DiffWriter()
    if args.fail_first:
        answers = Flaky(answers, args.fail_first)
    with serve(answers, args.port) as url:
        print(f"serving on {url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            requests = answers.seen
            prompt = sum(count_tokens(r["body"].get("prompt") or "".join(m["content"] for m in r["body"]["messages"]))
                         for r in requests)
            print(f"{len(requests)} requests, {prompt} prompt tokens", flush=True)


def _hang_on(port: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    print(f"hanging on http://127.0.0.1:{port}/v1", flush=True)
    held = []
    try:
        while True:
            held.append(listener.accept()[0])
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
