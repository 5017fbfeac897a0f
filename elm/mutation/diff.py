"""Unified diffs as the diff model writes them: cut out, parse, and apply to a source.

`apply_diff` tries strict application first: every hunk exactly where its header says,
with header counts matching its body. If that fails it applies tolerantly: each hunk's
pre-image (its context and deleted lines) is searched for in the source regardless of
line numbers, comparing lines without trailing whitespace; a pre-image that is absent, or
found in more than one place, is refused. A `DiffError` says at which funnel stage the
diff failed ("parse": no usable hunk could be read; "apply": hunks were read but could
not be applied) and why.

What parsing accepts beyond the textbook format, because models emit it: no `---`/`+++`
file header, junk before the first and after the last hunk, a header without readable
line numbers, a missing final newline in the diff text, blank lines standing for empty
context lines, and a `<NME>` record tag or end-of-text token that starts the next record.
Line endings: a source that uses CRLF throughout is patched as LF and given back as CRLF,
whatever the diff uses; a source with mixed endings is patched byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

EOS_TOKENS = ("<|endoftext|>",)
RECORD_TAGS = ("<NME>", "<BEF>", "<MSG>", "<DFF>")
DIFF_TAG = "<DFF>"

_HUNK_HEADER = re.compile(r"[ \t]*@@(?P<ranges>.*?)@@")
_RANGES = re.compile(r"-(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))?")
_BODY_OPS = " -+"
_NO_NEWLINE_MARKER = "\\"


class DiffError(ValueError):
    """A diff that could not be used: `stage` is "parse" or "apply", `reason` says why."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(stage, reason)  # both in args, so the error pickles (Ray workers)
        self.stage = stage
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.stage}: {self.reason}"


@dataclass(frozen=True)
class Hunk:
    """One `@@ -a,b +c,d @@` block. Header numbers are None where the header had none.

    `lines` are (op, text) pairs, op one of " ", "-", "+"; text keeps its newline unless a
    "\\ No newline at end of file" marker followed it.
    """

    old_start: int | None
    old_count: int | None
    new_start: int | None
    new_count: int | None
    lines: tuple[tuple[str, str], ...]

    @property
    def before(self) -> list[str]:
        """The pre-image: context and deleted lines."""
        return [text for op, text in self.lines if op != "+"]

    @property
    def after(self) -> list[str]:
        """The post-image: context and added lines."""
        return [text for op, text in self.lines if op != "-"]

    @property
    def changes_something(self) -> bool:
        return any(op != " " for op, _ in self.lines)


def extract_diff(generated_text: str, eos_tokens: Iterable[str] = EOS_TOKENS) -> str:
    """The diff in a model's output, up to the first end-of-text token or record tag
    (the start of a new record). Output that begins with a whole record (`<NME>`, as
    when the prompt is included) or with `<DFF>` is read from after its `<DFF>`."""
    text = generated_text
    if text.lstrip().startswith(("<NME>", DIFF_TAG)):
        start = text.find(DIFF_TAG)
        text = text[start + len(DIFF_TAG):] if start >= 0 else ""
    stops = [text.find(marker) for marker in (*eos_tokens, *RECORD_TAGS)]
    cut = min((position for position in stops if position >= 0), default=len(text))
    return text[:cut]


def parse_diff(text: str) -> list[Hunk]:
    """The hunks of the first file in `text` that change something.

    Raises DiffError(stage="parse") when there is none.
    """
    text = extract_diff(text)
    if text and not text.endswith("\n"):
        text += "\n"  # generation stopped mid-line: the last line is still a whole line
    lines = _split_lines(text)
    hunks: list[Hunk] = []
    headers_seen = 0
    index = 0
    while index < len(lines):
        header = _read_header(lines[index])
        if header is not None:
            headers_seen += 1
            body, index = _read_body(lines, index + 1, header)
            hunks.append(Hunk(*header, lines=tuple(body)))
        elif _is_file_header(lines, index):
            if hunks:
                break  # a second file's diff: not the file we were asked to change
            index += 2
        else:
            index += 1  # preamble (diff --git, index ...) or junk between hunks
    usable = [hunk for hunk in hunks if hunk.changes_something]
    if not usable:
        reason = "no hunk header (@@ -a,b +c,d @@)" if not headers_seen else "no hunk changes anything"
        raise DiffError("parse", reason)
    return usable


def apply_diff(source: str, diff: str, *, tolerant: bool = True) -> str:
    """`source` with `diff` applied: strictly if possible, else (unless `tolerant` is
    False) by locating each hunk's pre-image. Raises DiffError."""
    crlf = _uses_crlf_throughout(source)
    if crlf:
        source = source.replace("\r\n", "\n")
    if crlf or "\r\n" not in source:
        diff = diff.replace("\r\n", "\n")
    hunks = parse_diff(diff)
    lines = _split_lines(source)
    try:
        result = _apply_strict(lines, hunks)
    except DiffError:
        if not tolerant:
            raise
        result = _apply_tolerant(lines, hunks)
    text = "".join(result)
    return text.replace("\n", "\r\n") if crlf else text


# -- parsing ---------------------------------------------------------------------------

_Header = tuple[int | None, int | None, int | None, int | None]


def _read_header(line: str) -> _Header | None:
    if "@@" not in line:
        return None
    match = _HUNK_HEADER.match(line)
    if match is None:
        return None
    ranges = _RANGES.fullmatch(match["ranges"].strip())
    if ranges is None:
        return (None, None, None, None)
    old_start, old_count, new_start, new_count = ranges.groups()
    return (
        int(old_start),
        1 if old_count is None else int(old_count),
        int(new_start),
        1 if new_count is None else int(new_count),
    )


def _read_body(lines: list[str], index: int, header: _Header) -> tuple[list[tuple[str, str]], int]:
    """Body lines from `index` on, until a header, a file header or junk; and where it stopped.

    Header counts do not end the body (models get them wrong); they only decide whether an
    ambiguous line (blank, or `---` followed by `+++`) still belongs to the hunk.
    """
    counted = header[1] is not None and header[3] is not None
    old_left, new_left = header[1] or 0, header[3] or 0
    body: list[tuple[str, str]] = []
    while index < len(lines):
        line = lines[index]
        counts_met = not counted or (old_left <= 0 and new_left <= 0)
        if _read_header(line) is not None or (counts_met and _is_file_header(lines, index)):
            break
        op = line[:1]
        if _is_blank(line):
            if not _blank_is_context(lines, index, counted and old_left > 0 and new_left > 0):
                break
            op, line = " ", " " + line
        elif op == _NO_NEWLINE_MARKER:
            if body and body[-1][1].endswith("\n"):
                body[-1] = (body[-1][0], body[-1][1][:-1])
            index += 1
            continue
        elif op not in _BODY_OPS:
            break
        body.append((op, line[1:]))
        if counted:
            old_left -= op != "+"
            new_left -= op != "-"
        index += 1
    return body, index


def _is_blank(line: str) -> bool:
    return line in ("\n", "\r\n")


def _blank_is_context(lines: list[str], index: int, header_expects_lines: bool) -> bool:
    """An empty line inside a hunk stands for an empty context line (its leading space
    stripped) when the header still expects lines or more body lines follow."""
    if header_expects_lines:
        return True
    following = index + 1
    while following < len(lines) and _is_blank(lines[following]):
        following += 1
    if following == len(lines):
        return False
    line = lines[following]
    return (
        line[:1] in _BODY_OPS + _NO_NEWLINE_MARKER
        and _read_header(line) is None
        and not _is_file_header(lines, following)
    )


def _is_file_header(lines: list[str], index: int) -> bool:
    return (
        lines[index].startswith("--- ")
        and index + 1 < len(lines)
        and lines[index + 1].startswith("+++ ")
    )


# -- application ------------------------------------------------------------------------


def _apply_strict(lines: list[str], hunks: Sequence[Hunk]) -> list[str]:
    result: list[str] = []
    position = 0
    for number, hunk in enumerate(hunks, 1):
        before, after = hunk.before, hunk.after
        if hunk.old_start is None:
            raise DiffError("apply", f"hunk {number}: header has no line numbers")
        if (hunk.old_count, hunk.new_count) != (len(before), len(after)):
            raise DiffError("apply", f"hunk {number}: body does not match the header's line counts")
        # A hunk that removes nothing is inserted after line old_start; others start on it.
        start = hunk.old_start - 1 if before else hunk.old_start
        if start < position or start > len(lines):
            raise DiffError("apply", f"hunk {number}: line {hunk.old_start} is out of order or range")
        if lines[start:start + len(before)] != before:
            raise DiffError("apply", f"hunk {number}: pre-image is not at line {hunk.old_start}")
        result.extend(lines[position:start])
        result.extend(after)
        position = start + len(before)
    result.extend(lines[position:])
    if any(not line.endswith("\n") for line in result[:-1]):
        raise DiffError("apply", "a line without newline would end up inside the file")
    return result


@dataclass(frozen=True)
class _Placement:
    start: int
    end: int
    number: int
    hunk: Hunk


def _apply_tolerant(lines: list[str], hunks: Sequence[Hunk]) -> list[str]:
    keys = [line.rstrip() for line in lines]
    placements: list[_Placement] = []
    floor = 0
    for number, hunk in enumerate(hunks, 1):
        pattern = [line.rstrip() for line in hunk.before]
        start = _locate(keys, pattern, floor, number)
        placements.append(_Placement(start, start + len(pattern), number, hunk))
        floor = start + len(pattern)
    placements.sort(key=lambda placement: (placement.start, placement.end))
    for previous, current in zip(placements, placements[1:]):
        if current.start < previous.end or current.start == previous.start:
            raise DiffError("apply", f"hunks {previous.number} and {current.number} overlap")
    result: list[str] = []
    position = 0
    for placement in placements:
        result.extend(lines[position:placement.start])
        result.extend(_post_image(placement.hunk, lines[placement.start:placement.end]))
        position = placement.end
    result.extend(lines[position:])
    _settle_newlines(result, lines, placements[-1])
    return result


def _locate(keys: list[str], pattern: list[str], floor: int, number: int) -> int:
    """Where `pattern` occurs in `keys`: its only place, or failing that its only place at
    or after `floor` (the end of the previous hunk, since hunks come in file order)."""
    if not pattern:
        if not keys:
            return 0
        raise DiffError("apply", f"hunk {number}: no context or deleted lines to place it by")
    first, width = pattern[0], len(pattern)
    found = [
        start
        for start in range(len(keys) - width + 1)
        if keys[start] == first and keys[start:start + width] == pattern
    ]
    if len(found) == 1:
        return found[0]
    if not found:
        raise DiffError("apply", f"hunk {number}: pre-image not found in the source")
    later = [start for start in found if start >= floor]
    if len(later) == 1:
        return later[0]
    raise DiffError("apply", f"hunk {number}: pre-image is ambiguous ({len(found)} places)")


def _post_image(hunk: Hunk, region: list[str]) -> list[str]:
    """Added lines from the diff, context lines from the source itself (keeping its exact
    whitespace and line ending)."""
    image: list[str] = []
    offset = 0
    for op, text in hunk.lines:
        if op == " ":
            image.append(region[offset])
        elif op == "+":
            image.append(text)
        if op != "+":
            offset += 1
    return image


def _settle_newlines(result: list[str], lines: list[str], last: _Placement) -> None:
    """Every line but the last ends with a newline. The last does if the source's did,
    unless the hunk at the end of the file says it changes that (a "No newline" marker on
    one side only); a marker the model left out changes nothing."""
    for index in range(len(result) - 1):
        if not result[index].endswith("\n"):
            result[index] += "\n"
    if not result:
        return
    wants_newline = not lines or lines[-1].endswith("\n")
    if last.end == len(lines):
        before, after = last.hunk.before, last.hunk.after
        before_newline = not before or before[-1].endswith("\n")
        after_newline = not after or after[-1].endswith("\n")
        if before_newline != after_newline:
            wants_newline = after_newline
    if wants_newline and not result[-1].endswith("\n"):
        result[-1] += "\n"
    elif not wants_newline and result[-1].endswith("\n"):
        result[-1] = result[-1][:-1]


# -- text helpers ------------------------------------------------------------------------


def _split_lines(text: str) -> list[str]:
    """Lines split on "\\n" only (never on form feeds or lone "\\r"), each keeping it."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    return lines


def _uses_crlf_throughout(text: str) -> bool:
    return "\r\n" in text and text.count("\n") == text.count("\r\n")


# -- writing -----------------------------------------------------------------------------


def unified_diff(before: str, after: str, context: int = 3) -> str:
    """The hunks turning `before` into `after`, as the diff model writes them after `<DFF>`:
    no `---`/`+++` file header, a "\\ No newline at end of file" marker where a side's
    last line has none. Empty when the texts are equal."""
    import difflib

    lines = difflib.unified_diff(
        _split_lines(before), _split_lines(after), n=context, lineterm="\n")
    body: list[str] = []
    for line in lines:
        if line.startswith(("--- ", "+++ ")) and not body:
            continue  # the file header comes first: the model's diffs have none
        if not line.endswith("\n"):
            line += "\n" + _NO_NEWLINE_MARKER + " No newline at end of file\n"
        body.append(line)
    return "".join(body)
