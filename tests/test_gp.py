import ast

from elm.mutation import MutationRequest
from elm.mutation.gp import GPMutator
from tests.toy_environment import SEED


def _requests(count: int):
    return [MutationRequest(parent_id=1, file_name="point.py", source=SEED,
                            commit_message="Move the point.", seed=s) for s in range(count)]


def test_children_parse_and_differ_from_the_parent():
    children = GPMutator(max_edits=3).propose(_requests(40))
    assert len(children) == 40
    for child in children:
        ast.parse(child.source)
        assert child.stage == "applied" and child.operator == "gp" and child.parent_id == 1
    changed = [c for c in children if ast.dump(ast.parse(c.source)) != ast.dump(ast.parse(SEED))]
    assert len(changed) >= 30
    assert all(c.diff.startswith("--- a/point.py") for c in changed)
    assert all(c.commit_message for c in children)


def test_same_seed_same_child():
    first = GPMutator().propose(_requests(10))
    again = GPMutator().propose(_requests(10))
    assert [c.source for c in first] == [c.source for c in again]


def test_unparsable_parent_is_counted_not_raised():
    request = MutationRequest(1, "point.py", "def broken(:\n", "x", 0)
    (child,) = GPMutator().propose([request])
    assert child.source is None and child.stage == "generated" and "parse" in child.error


LAID_OUT = '''\
import math


def spiral(turns):
    """Points on a spiral."""
    points = []  # filled below

    # one point per step, a quarter turn apart
    for step in range(turns * 4):
        angle = step * math.pi / 2
        radius = 1.0 + 0.5 * step
        points.append((radius * math.cos(angle), radius * math.sin(angle)))
    return points
'''


def _changed_lines(diff: str) -> tuple[list[str], list[str]]:
    lines = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    return [line[1:] for line in lines if line.startswith("-")], [line[1:] for line in lines if line.startswith("+")]


def test_an_edit_changes_only_the_lines_it_edits():
    requests = [MutationRequest(1, "spiral.py", LAID_OUT, "x", seed) for seed in range(60)]
    children = GPMutator(max_edits=1).propose(requests)
    kinds = set()
    for child in children:
        removed, added = _changed_lines(child.diff)
        kind = child.commit_message.split(" ")[0] + (" constant" if "constant" in child.commit_message else "")
        kinds.add(kind)
        assert "# one point per step, a quarter turn apart" in child.source  # comments and blank lines stay
        assert '"""Points on a spiral."""' in child.source and "\n\n\ndef spiral" in child.source
        if kind in ("changed constant", "changed"):  # a constant or an operator: one line rewritten
            assert len(removed) == len(added) == 1
        elif kind == "deleted":
            assert len(removed) >= 1 and added == [] and all(line in LAID_OUT for line in removed)
        elif kind == "duplicated":
            assert removed == [] and len(added) >= 1 and all(line in LAID_OUT for line in added)
        elif kind == "swapped":
            assert sorted(removed) == sorted(added)
    assert {"changed constant", "changed", "deleted", "duplicated", "swapped"} <= kinds


def test_operator_and_negative_constant_edits_keep_the_meaning_readable():
    source = "def f(a, b):\n    c = 0\n    if (a)and(b):\n        return a-b\n    return a or c\n"
    children = GPMutator(max_edits=3).propose([MutationRequest(1, "f.py", source, "x", s) for s in range(60)])
    for child in children:
        ast.parse(child.source)
    sources = "".join(child.source for child in children)
    assert "(a) or (b)" in sources and "a and c" in sources and "a+b" in sources and "c = (-" in sources
