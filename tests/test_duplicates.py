"""No program is evaluated twice in a run: copies reuse the first verdict, across a resume too."""

import ast
import json
from collections import Counter

from elm.archive import Archive
from elm.config import build_config
from elm.duplicates import ProgramKeys, program_key
from elm.evaluator import Evaluator
from elm.loop import EvolutionLoop
from elm.mutation import Child, InProcessMutator
from elm.store import RunStore
from tests.conftest import run_elm
from tests.test_loop import HashSandbox
from tests.toy_environment import Toy

SHARED = "def point():\n    return [1.0, 2.0]\n"
SHARED_REFORMATTED = "def point():  # the same program, written differently\n\n    return [1.0,   2.0]\n"


class CopyingMutator(InProcessMutator):
    """Child k, in turn: its parent with a comment added (unchanged), one shared program
    written two ways (a duplicate after its first evaluation), a new program, a syntax error."""

    name = "copying"

    def __init__(self):
        self.made = 0

    def propose(self, requests):
        children = []
        for request in requests:
            kind, self.made = self.made % 4, self.made + 1
            source = [
                request.source + "\n# only a comment\n",
                SHARED if self.made % 8 < 4 else SHARED_REFORMATTED,
                f"def point():\n    return [{self.made % 7 - 3}.5, {self.made % 5 - 2}.25 + {self.made}e-9]\n",
                "def point(:\n",
            ][kind]
            children.append(Child(request.parent_id, source, self.name, commit_message=request.commit_message))
        return children


class CountingSandbox(HashSandbox):
    def __init__(self):
        self.sources = []

    def run_many(self, jobs):
        self.sources.extend(job.files["point.py"] for job in jobs)
        return super().run_many(jobs)


def _loop(run_dir, iterations, sandbox, store=None):
    config = build_config({
        "environment": {"name": "toy"},
        "run": {"iterations": iterations, "batch_size": 8, "seed": 5, "snapshot_every": 2},
        "sandbox": {"backend": "local"},
    })
    environment = Toy()
    archive = Archive(environment.descriptor_space, config.archive, qd_offset=environment.qd_offset)
    if store is None:
        run_dir.mkdir()
        store = RunStore.create(run_dir, {"archive": archive.layout()})
    evaluator = Evaluator(environment, sandbox, config.sandbox)
    return EvolutionLoop(config, environment, archive, CopyingMutator(), evaluator, store), store


def test_program_key_ignores_what_cannot_change_behaviour():
    assert program_key(SHARED) == program_key(SHARED_REFORMATTED)
    assert program_key(SHARED) != program_key(SHARED.replace("2.0", "2.5"))
    assert program_key("def point(:\n") is None and program_key(None) is None


# Sources whose top-level statements are hard to find without parsing: a string, brackets
# and a continuation over lines at column 0, decorators, clauses, semicolons, comments.
TRICKY = [
    'NOTE = """a note\nx = 1\n"""\ny = 2\n',
    "@decorate\ndef f():\n    pass\n",
    "if x:\n    pass\nelse:\n    y = 1\n",
    "try:\n    a()\nexcept E:\n    b()\nfinally:\n    c()\n",
    "x = (1,\n2)\nz = 3\n",
    "a = 1; b = 2\nc = 3",
    "x = 1 + \\\n2\n",
    "elsewhere = 1\nelse_ = 2\n",
    "# only a comment\n",
    "",
    "class A:\n    pass\n# a comment\n\nx = 1\n",
    "s = '''\n'''\n'''\n'''\n",
    "def f(:\n    pass\n",
    "    indented = 1\n",
    "x = 1\r\ny = 2\r\n",
]


def test_program_keys_match_the_syntax_tree_key_and_reuse_pieces():
    keys = ProgramKeys(max_pieces=8)
    for _ in range(2):  # the second time from remembered pieces
        for source in [*TRICKY, SHARED, SHARED_REFORMATTED]:
            assert keys.key(source) == program_key(source), source
    parent = "def helper(x):\n    return x * 2\n\n\ndef main():\n    return helper(1)\n"
    child = parent.replace("helper(1)", "helper(2)")
    assert keys.key(parent) == program_key(parent) and keys.key(child) == program_key(child)
    assert keys.key(parent) != keys.key(child)


def test_no_duplicate_reaches_the_sandbox(tmp_path):
    sandbox = CountingSandbox()
    loop, store = _loop(tmp_path / "run", 6, sandbox)
    loop.run()
    records = list(store.candidates())
    stages = Counter(r.stage for r in records)
    assert stages["unchanged"] > 0 and stages["duplicate"] > 0
    evaluated = [r for r in records if r.stage not in ("unchanged", "duplicate")]
    compiled = [r for r in evaluated if r.status != "syntax_error"]
    # Every program sent to the sandbox once: the job count is the non-duplicate children's.
    assert len(sandbox.sources) == len(compiled)
    assert len({ast.dump(ast.parse(s)) for s in sandbox.sources}) == len(sandbox.sources)
    syntax_errors = sum(r.status == "syntax_error" for r in records)
    assert syntax_errors > 0
    assert len(sandbox.sources) + stages["unchanged"] + stages["duplicate"] + syntax_errors == len(records)
    by_id = {r.id: r for r in records}
    for record in records:
        if record.stage in ("unchanged", "duplicate"):
            first = by_id[record.extras["same_as"]]
            assert first.id < record.id and program_key(first.source) == program_key(record.source)
            assert record.status == record.stage and record.extras["same_as_status"] == first.status
            assert (record.fitness, record.placement) == (first.fitness if first.status == "ok" else None, None)
            assert (record.stage == "unchanged") == (program_key(by_id[record.parent_id].source)
                                                     == program_key(record.source))
    funnel = Counter()
    for metrics in store.metrics():
        funnel.update(metrics.funnel)
    assert funnel["duplicate"] == stages["duplicate"] and funnel["unchanged"] == stages["unchanged"]
    assert funnel["compiled"] == len(compiled)
    store.close()

    result = run_elm("inspect", str(tmp_path / "run"), "--json", check=True)
    summary = json.loads(result.stdout)
    assert summary["funnel"]["duplicate"] == stages["duplicate"] > 0
    assert summary["reused_shares"]["duplicate"] == stages["duplicate"] / summary["funnel"]["generated"]
    text = run_elm("inspect", str(tmp_path / "run"), check=True).stdout
    assert "duplicate" in text and "unchanged" in text
    # Why candidates failed: reused verdicts are counted apart, never as failures.
    failures = json.loads(run_elm("inspect", str(tmp_path / "run"), "--failures", "--json", check=True).stdout)
    assert failures["reused"] == stages["unchanged"] + stages["duplicate"]
    assert failures["failed"] == sum(r.status not in ("ok", "unchanged", "duplicate") for r in records)
    assert not {row["status"] for row in failures["statuses"]} & {"unchanged", "duplicate"}


def test_a_resumed_run_remembers_what_was_evaluated(tmp_path):
    whole_sandbox, part_sandbox, resumed_sandbox = CountingSandbox(), CountingSandbox(), CountingSandbox()
    whole, whole_store = _loop(tmp_path / "whole", 6, whole_sandbox)
    whole.run()
    part, part_store = _loop(tmp_path / "part", 3, part_sandbox)
    part.run()
    resumed, _ = _loop(tmp_path / "part", 6, resumed_sandbox, store=part_store)
    resumed.mutator.made = part.mutator.made
    resumed.run()
    assert part_sandbox.sources + resumed_sandbox.sources == whole_sandbox.sources
    assert ([(r.stage, r.extras.get("same_as")) for r in part_store.candidates()]
            == [(r.stage, r.extras.get("same_as")) for r in whole_store.candidates()])
    # The stored verdicts, by key, decoded as looked up: each is its first evaluation.
    verdicts = whole_store.program_verdicts()
    evaluated = [r for r in whole_store.candidates() if r.stage not in ("unchanged", "duplicate")
                 and program_key(r.source) is not None]
    assert len(verdicts) == len({program_key(r.source) for r in evaluated}) > 0
    for record in evaluated:
        verdict = verdicts[program_key(record.source)]
        assert verdict.candidate_id <= record.id
        if verdict.candidate_id == record.id:
            assert (verdict.status, verdict.fitness, verdict.descriptor) == \
                (record.status, record.fitness, record.descriptor)
    whole_store.close()
    part_store.close()
