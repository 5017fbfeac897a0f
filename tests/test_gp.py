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
