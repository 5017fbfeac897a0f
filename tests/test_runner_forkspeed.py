"""The runner's CPython fork-speed tricks (sandbox/runner/forkspeed.py) on their own, and
the runner with them switched off (--no-fork-tricks): the same answers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.runner_package import FOLDER

# Runs in a fresh interpreter: the tricks change the process's memory allocator.
SCRIPT_HEAD = f"""
import os, random, re, sys
sys.path.insert(0, {str(FOLDER.parent.parent)!r})
from tests.runner_package import runner_module
forkspeed = runner_module("forkspeed")
forkspeed.enabled = sys.argv[1] == "on"
"""


def run_script(body: str, enabled: bool) -> dict:
    script = SCRIPT_HEAD + textwrap.dedent(body)
    finished = subprocess.run([sys.executable, "-c", script, "on" if enabled else "off"],
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout)


FORK = """
random.seed(5)
fork = forkspeed.plain_fork()
read, write = os.pipe()
pid = fork()
if pid == 0:
    os.write(write, repr(random.random()).encode())
    os._exit(7)
os.close(write)
child_draw = float(os.read(read, 100))
_, status = os.waitpid(pid, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "same_draw": child_draw == random.random()}))
"""


@pytest.mark.parametrize("enabled", [True, False], ids=["tricks", "no tricks"])
def test_a_fork_gives_the_child_its_parents_random_state(enabled):
    outcome = run_script("import json\n" + FORK, enabled)
    assert outcome == {"exit": 7, "same_draw": True}


HEAP = """
import json
def heap_bytes():
    with open("/proc/self/maps") as maps:
        return sum(int(high, 16) - int(low, 16) for low, high in
                   (line.split()[0].split("-") for line in maps if line.rstrip().endswith("[heap]")))
before = heap_bytes()
default = forkspeed.take_arenas_from_the_c_heap()
objects = [str(number) for number in range(400_000)]  # about 20 MB of small objects
grown = heap_bytes() - before
forkspeed.restore_arena_allocator(default)
print(json.dumps({"taken": default is not None, "grown_mb": grown / 2**20}))
"""


def test_arenas_come_from_the_c_heap_only_with_the_tricks():
    on, off = run_script(HEAP, True), run_script(HEAP, False)
    assert on["taken"] and on["grown_mb"] > 15, on
    assert not off["taken"] and off["grown_mb"] < 5, off


JOB = {"id": 1, "token": "t", "entry": "a.py", "timeout_s": 20, "memory_mb": 256,
       "output_limit_bytes": 1000, "file_limit_bytes": 100000,
       "files": {"a.py": "import random\nimport numpy\ndef main():\n"
                         "    return [random.random(), float(numpy.random.random()), list({'a', 'b', 'c', 'd'})]\n"}}


def test_the_runner_answers_the_same_with_the_tricks_switched_off(tmp_path):
    answers = []
    for flags in ([], ["--no-fork-tricks"]):
        finished = subprocess.run(
            [sys.executable, "-I", str(FOLDER), "--scratch", str(tmp_path / f"scratch{len(flags)}"), *flags],
            input=(json.dumps(JOB) + "\n") * 2, capture_output=True, text=True, timeout=120)
        ready, *replies = [json.loads(line) for line in finished.stdout.splitlines()]
        assert ready["ready"] and [reply["status"] for reply in replies] == ["ok", "ok"], finished.stderr
        answers.append([reply["result_json"] for reply in replies])
    assert answers[0] == answers[1] and answers[0][0] == answers[0][1]
