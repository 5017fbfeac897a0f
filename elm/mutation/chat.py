"""Instruct models: the chat messages that ask for a diff, and the diff read from the answer.

The system message asks for one unified diff of the file; the user message gives the file
name, the file and the commit message. An answer is read as a unified diff from its first
fenced block that holds one (```diff, ```patch or any fence with a hunk header), else from
the bare text. SEARCH/REPLACE blocks, which many coding models write instead, are
converted to a diff with one hunk per block and no line numbers, so `apply_diff` places
each by its pre-image like any other hunk.
"""

from __future__ import annotations

import re

SYSTEM_MESSAGE = (
    "You edit one Python file. Answer with a unified diff of that file and nothing else: "
    "a ```diff fenced block holding hunks that start with @@ -a,b +c,d @@, context lines "
    "starting with a space, removed lines with -, added lines with +. Keep the program valid Python."
)

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_SEARCH_REPLACE = re.compile(
    r"^<{5,9} ?SEARCH[^\n]*\n(.*?)^={5,9}[ \t]*\n(.*?)^>{5,9} ?REPLACE[^\n]*$", re.DOTALL | re.MULTILINE
)
_DIFF_FENCES = ("diff", "patch", "udiff")


def chat_messages(file_name: str, source: str, commit_message: str) -> list[dict[str, str]]:
    """The system and user messages asking for a diff of `source` doing `commit_message`."""
    user = (
        f"File: {file_name}\n```python\n{source}{'' if source.endswith(chr(10)) else chr(10)}```\n\n"
        f"Change: {commit_message}\n\nAnswer with a unified diff of {file_name}."
    )
    return [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": user}]


def diff_from_answer(answer: str) -> str:
    """The unified diff in a chat answer (SEARCH/REPLACE blocks converted); the text as
    it is when it holds neither, so parsing says why it is no diff."""
    blocks = _SEARCH_REPLACE.findall(answer)
    if blocks:
        return "".join(_hunk(search, replace) for search, replace in blocks)
    fenced = _fenced_diff(answer)
    return fenced if fenced is not None else answer


def _fenced_diff(answer: str) -> str | None:
    fences = [(language.lower(), body) for language, body in _FENCE.findall(answer)]
    for language, body in fences:
        if language in _DIFF_FENCES:
            return body
    for _, body in fences:
        if "@@" in body:
            return body
    return None


def _hunk(search: str, replace: str) -> str:
    """One header-less hunk replacing the `search` lines with the `replace` lines."""
    removed = "".join(f"-{line}\n" for line in search.splitlines())
    added = "".join(f"+{line}\n" for line in replace.splitlines())
    return f"@@ @@\n{removed}{added}"
