"""The GP baseline: random edits of the parent's syntax tree (the ELM paper's non-LLM
comparison), and the null mutator used to measure the framework's own overhead.

Parsing untrusted source is safe on the host: nothing is executed.
"""

from __future__ import annotations

import ast
import difflib
import re
import time
from collections.abc import Callable, Sequence

import numpy as np

from elm.mutation import InProcessMutator, MutationRequest
from elm.records import Child, Stage

_OPERATOR_GROUPS: tuple[tuple[type, ...], ...] = (
    (ast.Add, ast.Sub, ast.Mult, ast.Div),
    (ast.Lt, ast.LtE, ast.Gt, ast.GtE),
    (ast.Eq, ast.NotEq),
    (ast.And, ast.Or),
)
_ATTEMPTS = 8


class GPMutator(InProcessMutator):
    """Applies 1..max_edits random tree edits; each child's edits are named in its
    commit message and its diff is recorded, so lineages read like the model's.

    An edit is chosen on the syntax tree but made in the parent's text: the lines it does
    not touch keep their layout and comments, so a child's diff holds only its edits."""

    name = "gp"

    def __init__(self, max_edits: int = 3) -> None:
        self.max_edits = max_edits

    def propose(self, requests: Sequence[MutationRequest]) -> list[Child]:
        return [self._mutate(request) for request in requests]

    def _mutate(self, request: MutationRequest) -> Child:
        started = time.perf_counter()
        rng = np.random.default_rng(request.seed)
        try:
            ast.parse(request.source)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
            return Child(request.parent_id, None, self.name, stage=Stage.GENERATED,
                         error=f"parent does not parse: {type(error).__name__}")
        source, edits = request.source, []
        for _ in range(int(rng.integers(1, self.max_edits + 1))):
            source, done = _edit(source, rng)
            edits.append(done)
        diff = "".join(difflib.unified_diff(
            request.source.splitlines(keepends=True), source.splitlines(keepends=True),
            fromfile=f"a/{request.file_name}", tofile=f"b/{request.file_name}"))
        return Child(
            parent_id=request.parent_id,
            source=source,
            operator=self.name,
            commit_message="; ".join(e for e in edits if e) or "no applicable edit",
            diff=diff,
            stage=Stage.APPLIED,
            timings={"mutate_s": time.perf_counter() - started},
        )


class NullMutator(InProcessMutator):
    """Returns each parent unchanged: for measuring the loop without a mutation cost."""

    name = "null"

    def propose(self, requests: Sequence[MutationRequest]) -> list[Child]:
        return [Child(r.parent_id, r.source, self.name, commit_message=r.commit_message,
                      diff="", stage=Stage.APPLIED) for r in requests]


class _Text:
    """A program's text as UTF-8 bytes (the unit of the syntax tree's column offsets),
    with the edits made as splices of byte ranges."""

    def __init__(self, source: str) -> None:
        self.data = source.encode()
        self.line_starts = [0]
        for line in self.data.splitlines(keepends=True):
            self.line_starts.append(self.line_starts[-1] + len(line))

    def offset(self, line: int, column: int) -> int:
        return self.line_starts[line - 1] + column

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def lines_of(self, node: ast.stmt) -> tuple[int, int] | None:
        """The byte range of the whole lines a statement fills, or None when it shares a
        line with other code (`a = 1; b = 2`) or carries decorators."""
        if getattr(node, "decorator_list", None) or node.end_lineno is None:
            return None
        first = self.line_starts[node.lineno - 1]
        after = self.line_starts[min(node.end_lineno, len(self.line_starts) - 1)]
        before, rest = self.data[first:self.start(node)], self.data[self.end(node):after]
        if before.strip() or not (rest.strip() == b"" or rest.strip().startswith(b"#")):
            return None
        return first, after

    def splice(self, replacements: list[tuple[int, int, bytes]]) -> str:
        data = self.data
        for low, high, new in sorted(replacements, reverse=True):
            data = data[:low] + new + data[high:]
        return data.decode()


_Edit = Callable[[str, ast.Module, np.random.Generator], tuple[str, str] | None]


def _edit(source: str, rng: np.random.Generator) -> tuple[str, str]:
    """One random edit; returns the edited text and what it did ('' when nothing applied)."""
    tree = ast.parse(source)
    for _ in range(_ATTEMPTS):
        edit = _EDITS[int(rng.integers(len(_EDITS)))]
        done = edit(source, tree, rng)
        if done is not None and _parses(done[0]):
            return done
    return source, ""


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _perturb_constant(source: str, tree: ast.Module, rng: np.random.Generator) -> tuple[str, str] | None:
    constants = [n for n in ast.walk(tree) if isinstance(n, ast.Constant)
                 and type(n.value) in (int, float)]
    if not constants:
        return None
    node = constants[int(rng.integers(len(constants)))]
    old = node.value
    assert isinstance(old, (int, float))  # only numeric constants were collected
    if isinstance(old, int):
        new: int | float = old + int(rng.choice([-2, -1, 1, 2]))
    else:
        scale = abs(old) if old != 0 else 1.0
        new = float(round(old + rng.normal(0.0, 0.2) * scale, 6))
    written = repr(new) if new >= 0 else f"({new!r})"
    text = _Text(source)
    return text.splice([(text.start(node), text.end(node), written.encode())]), \
        f"changed constant {old!r} to {new!r}"


def _bodies(tree: ast.Module) -> list[list[ast.stmt]]:
    bodies = []
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                bodies.append(body)
    return bodies


def _inner_bodies(tree: ast.Module) -> list[list[ast.stmt]]:
    """Statement lists below module level: editing imports or whole definitions rarely helps."""
    return [b for b in _bodies(tree) if b is not tree.body]


def _duplicate_statement(source: str, tree: ast.Module, rng: np.random.Generator) -> tuple[str, str] | None:
    bodies = _inner_bodies(tree)
    if not bodies:
        return None
    body = bodies[int(rng.integers(len(bodies)))]
    statement = body[int(rng.integers(len(body)))]
    text = _Text(source)
    lines = text.lines_of(statement)
    if isinstance(statement, ast.Return) or lines is None:
        return None
    low, high = lines
    copy = text.data[low:high] if text.data[low:high].endswith(b"\n") else b"\n" + text.data[low:high]
    return text.splice([(high, high, copy)]), f"duplicated line {statement.lineno}"


def _delete_statement(source: str, tree: ast.Module, rng: np.random.Generator) -> tuple[str, str] | None:
    bodies = [b for b in _inner_bodies(tree) if len(b) > 1]
    if not bodies:
        return None
    body = bodies[int(rng.integers(len(bodies)))]
    statement = body[int(rng.integers(len(body)))]
    text = _Text(source)
    lines = text.lines_of(statement)
    if isinstance(statement, ast.Return) or lines is None:
        return None
    return text.splice([(*lines, b"")]), f"deleted line {statement.lineno}"


def _swap_statements(source: str, tree: ast.Module, rng: np.random.Generator) -> tuple[str, str] | None:
    bodies = [b for b in _inner_bodies(tree) if len(b) > 2]
    if not bodies:
        return None
    body = bodies[int(rng.integers(len(bodies)))]
    i, j = sorted(int(k) for k in rng.choice(len(body) - 1, size=2, replace=False))
    text = _Text(source)
    first, second = text.lines_of(body[i]), text.lines_of(body[j])
    if first is None or second is None:
        return None
    return (text.splice([(*first, text.data[slice(*second)]), (*second, text.data[slice(*first)])]),
            f"swapped lines {body[i].lineno} and {body[j].lineno}")


_SYMBOLS: dict[type, str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Lt: "<", ast.LtE: "<=",
    ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.And: "and", ast.Or: "or",
}


def _change_operator(source: str, tree: ast.Module, rng: np.random.Generator) -> tuple[str, str] | None:
    slots: list[tuple[ast.AST, list[tuple[ast.AST, ast.AST]]]] = []  # (operator, the operands it sits between)
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            slots.append((node.op, [(node.left, node.right)]))
        elif isinstance(node, ast.BoolOp):
            slots.append((node.op, list(zip(node.values, node.values[1:]))))
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            slots.extend((op, [(operands[i], operands[i + 1])]) for i, op in enumerate(node.ops))
    slots = [s for s in slots if _group_of(s[0])]
    if not slots:
        return None
    op, gaps = slots[int(rng.integers(len(slots)))]
    choices = [c for c in _group_of(op) if not isinstance(op, c)]
    new = choices[int(rng.integers(len(choices)))]
    text = _Text(source)
    replacements = [_operator_in_gap(text, text.end(left), text.start(right), type(op), new)
                    for left, right in gaps]
    if None in replacements:
        return None
    return (text.splice([r for r in replacements if r is not None]),
            f"changed {type(op).__name__} to {new.__name__}")


def _operator_in_gap(text: _Text, low: int, high: int, old: type, new: type) -> tuple[int, int, bytes] | None:
    """Where the operator between two operands is written: the gap holds only it,
    brackets, white space and line continuations (a gap with a comment is left alone)."""
    gap = text.data[low:high]
    symbol = _SYMBOLS[old].encode()
    found = re.fullmatch(rb"([\s()\\]*)" + re.escape(symbol) + rb"[\s()\\]*", gap)
    if found is None:
        return None
    start = low + len(found.group(1))
    written = _SYMBOLS[new].encode()
    end = start + len(symbol)
    if written.isalpha():  # `(a)and(b)` is legal text; `(a)or(b)` needs no more, `1or 2` does
        written = (b"" if text.data[start - 1:start].isspace() else b" ") + written + \
            (b"" if text.data[end:end + 1].isspace() else b" ")
    return start, end, written


def _group_of(op: ast.AST) -> tuple[type, ...]:
    return next((group for group in _OPERATOR_GROUPS if isinstance(op, group)), ())


_EDITS: tuple[_Edit, ...] = (
    _perturb_constant,
    _perturb_constant,
    _duplicate_statement,
    _delete_statement,
    _swap_statements,
    _change_operator,
)
