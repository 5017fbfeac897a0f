"""The GP baseline: random edits of the parent's syntax tree (the ELM paper's non-LLM
comparison), and the null mutator used to measure the framework's own overhead.

Parsing and unparsing untrusted source is safe on the host: nothing is executed.
"""

from __future__ import annotations

import ast
import difflib
import time
from collections.abc import Callable, Sequence
from typing import Any

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
    commit message and its diff is recorded, so lineages read like the model's."""

    name = "gp"

    def __init__(self, max_edits: int = 3) -> None:
        self.max_edits = max_edits

    def propose(self, requests: Sequence[MutationRequest]) -> list[Child]:
        return [self._mutate(request) for request in requests]

    def _mutate(self, request: MutationRequest) -> Child:
        started = time.perf_counter()
        rng = np.random.default_rng(request.seed)
        try:
            tree = ast.parse(request.source)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
            return Child(request.parent_id, None, self.name, stage=Stage.GENERATED,
                         error=f"parent does not parse: {type(error).__name__}")
        edits = [_edit(tree, rng) for _ in range(int(rng.integers(1, self.max_edits + 1)))]
        try:
            source = ast.unparse(ast.fix_missing_locations(tree)) + "\n"
        except (RecursionError, ValueError) as error:
            return Child(request.parent_id, None, self.name, stage=Stage.GENERATED,
                         error=f"cannot unparse the edited tree: {type(error).__name__}")
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


def _edit(tree: ast.Module, rng: np.random.Generator) -> str:
    """One random edit in place; returns what it did ('' when nothing applied)."""
    for _ in range(_ATTEMPTS):
        edit = _EDITS[int(rng.integers(len(_EDITS)))]
        done = edit(tree, rng)
        if done:
            return done
    return ""


def _perturb_constant(tree: ast.Module, rng: np.random.Generator) -> str:
    constants = [n for n in ast.walk(tree) if isinstance(n, ast.Constant)
                 and type(n.value) in (int, float)]
    if not constants:
        return ""
    node = constants[int(rng.integers(len(constants)))]
    old = node.value
    assert isinstance(old, (int, float))  # only numeric constants were collected
    if isinstance(old, int):
        node.value = old + int(rng.choice([-2, -1, 1, 2]))
    else:
        scale = abs(old) if old != 0 else 1.0
        node.value = float(round(old + rng.normal(0.0, 0.2) * scale, 6))
    return f"changed constant {old!r} to {node.value!r}"


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


def _duplicate_statement(tree: ast.Module, rng: np.random.Generator) -> str:
    bodies = _inner_bodies(tree)
    if not bodies:
        return ""
    body = bodies[int(rng.integers(len(bodies)))]
    index = int(rng.integers(len(body)))
    if isinstance(body[index], ast.Return):
        return ""
    body.insert(index + 1, _copy(body[index]))
    return f"duplicated line {body[index].lineno}"


def _delete_statement(tree: ast.Module, rng: np.random.Generator) -> str:
    bodies = [b for b in _inner_bodies(tree) if len(b) > 1]
    if not bodies:
        return ""
    body = bodies[int(rng.integers(len(bodies)))]
    index = int(rng.integers(len(body)))
    if isinstance(body[index], ast.Return):
        return ""
    removed = body.pop(index)
    return f"deleted line {getattr(removed, 'lineno', '?')}"


def _swap_statements(tree: ast.Module, rng: np.random.Generator) -> str:
    bodies = [b for b in _inner_bodies(tree) if len(b) > 2]
    if not bodies:
        return ""
    body = bodies[int(rng.integers(len(bodies)))]
    i, j = sorted(int(k) for k in rng.choice(len(body) - 1, size=2, replace=False))
    body[i], body[j] = body[j], body[i]
    return f"swapped lines {getattr(body[j], 'lineno', '?')} and {getattr(body[i], 'lineno', '?')}"


def _change_operator(tree: ast.Module, rng: np.random.Generator) -> str:
    slots: list[tuple[Any, Any, Any]] = []  # (owner, attribute or index, operator)
    for node in ast.walk(tree):
        if isinstance(node, (ast.BinOp, ast.BoolOp)):
            slots.append((node, "op", node.op))
        elif isinstance(node, ast.Compare):
            slots.extend((node.ops, i, op) for i, op in enumerate(node.ops))
    slots = [s for s in slots if _group_of(s[2])]
    if not slots:
        return ""
    owner, key, op = slots[int(rng.integers(len(slots)))]
    choices = [c for c in _group_of(op) if not isinstance(op, c)]
    new = choices[int(rng.integers(len(choices)))]()
    if isinstance(owner, list):
        owner[key] = new
    else:
        setattr(owner, key, new)
    return f"changed {type(op).__name__} to {type(new).__name__}"


def _group_of(op: ast.AST) -> tuple[type, ...]:
    return next((group for group in _OPERATOR_GROUPS if isinstance(op, group)), ())


def _copy(node: ast.stmt) -> ast.stmt:
    return ast.parse(ast.unparse(node)).body[0]


_EDITS: tuple[Callable[[ast.Module, np.random.Generator], str], ...] = (
    _perturb_constant,
    _perturb_constant,
    _duplicate_statement,
    _delete_statement,
    _swap_statements,
    _change_operator,
)
