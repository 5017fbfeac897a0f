"""The local backend: the runner in local processes. Same statuses as the Docker backend,
without the container (no Docker needed)."""

from __future__ import annotations

import os
import textwrap

import pytest

from elm.config import SandboxConfig
from elm.sandbox import Job, SandboxUnavailable, open_sandbox
from elm.sandbox.local import LocalSandbox
from tests.conftest import runners_replaced


def candidate(source: str, timeout_s: float = 20.0, memory_mb: int = 256, **extra_files: str) -> Job:
    files = {"candidate.py": textwrap.dedent(source), **extra_files}
    return Job(files, "candidate.py", timeout_s=timeout_s, memory_mb=memory_mb)


# Candidates shared with the Docker tests: name -> (source, expected status).
ORDINARY = """
    def main():
        print("working")
        return {"fitness": 1.5, "descriptor": [0.25, 0.75]}
"""
INFINITE_LOOP = """
    def main():
        while True:
            pass
"""
MEMORY_HOG = """
    def main():
        hoard = []
        while True:
            hoard.append(bytearray(16 * 1024 * 1024))
"""
OS_EXIT = """
    import os
    def main():
        print("leaving early")
        os._exit(7)
"""
SIGKILL_SELF = """
    import os, signal
    def main():
        os.kill(os.getpid(), signal.SIGKILL)
"""
SEGFAULT = """
    import ctypes
    def main():
        return ctypes.string_at(0)
"""
HUGE_OUTPUT = """
    import sys
    def main():
        line = "x" * 1023 + "\\n"
        for _ in range(50 * 1024):
            sys.stdout.write(line)
        return "done"
"""
LEFTOVER_DAEMON = """
    import os, time
    def main():
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(3600)
            os._exit(0)
        return "left a sleeper behind"
"""
COUNT_OTHER_PROCESSES = """
    import os
    def main():
        me, parent = os.getpid(), os.getppid()
        mine = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in (me, parent):
                try:
                    with open(f"/proc/{entry}/stat") as stat:
                        if int(stat.read().rsplit(")", 1)[1].split()[1]) == parent:
                            mine.append(int(entry))
                except OSError:
                    pass
        return mine
"""


@pytest.fixture(scope="module")
def sandbox():
    box = open_sandbox(SandboxConfig(backend="local", pool_size=2, output_limit_bytes=4096))
    yield box
    box.close()


def test_results_come_back_in_job_order_with_their_output(sandbox):
    jobs = [candidate(f"def main():\n    print('job {n}')\n    return {n}\n") for n in range(7)]
    outcomes = sandbox.run_many(jobs)
    assert [o.status for o in outcomes] == ["ok"] * 7
    assert [o.result for o in outcomes] == list(range(7))
    assert [o.stdout for o in outcomes] == [f"job {n}\n" for n in range(7)]


def test_ordinary_candidate_result_and_seconds(sandbox):
    outcome = sandbox.run_many([candidate(ORDINARY)])[0]
    assert outcome.status == "ok", outcome.error
    assert outcome.result == {"fitness": 1.5, "descriptor": [0.25, 0.75]}
    assert 0 < outcome.seconds < 2


def test_harness_and_candidate_files_import_each_other(sandbox):
    harness = "import program\n\ndef main():\n    return program.solve(3)\n"
    job = Job({"elm_harness.py": harness, "program.py": "def solve(n):\n    return n * n\n"}, "elm_harness.py")
    assert sandbox.run_many([job])[0].result == 9


def test_the_runners_own_modules_hide_no_module_of_a_candidate(sandbox):
    own = "import server, runner\n\ndef main():\n    return [server.NAME, runner.NAME]\n"
    files = {"server.py": "NAME = 'my server'\n", "runner.py": "NAME = 'my runner'\n"}
    uses_theirs = "def main():\n    import startup\n"
    mine, theirs = sandbox.run_many([Job({"candidate.py": own, **files}, "candidate.py"),
                                     Job({"candidate.py": uses_theirs}, "candidate.py")])
    assert mine.result == ["my server", "my runner"], mine.error
    assert theirs.status == "error" and "No module named 'startup'" in theirs.error


def test_a_harness_shared_by_every_job_runs_each_jobs_own_program(sandbox):
    harness = "import program\nCALLS = []\n\ndef main():\n    CALLS.append(1)\n    return [program.solve(3), len(CALLS)]\n"
    programs = ["def solve(n):\n    return n * n\n", "def solve(n):\n    return n + n\n", "def solve(n):\n    return -n\n"]
    jobs = [Job({"elm_harness.py": harness, "program.py": program}, "elm_harness.py") for program in programs * 2]
    assert [outcome.result for outcome in sandbox.run_many(jobs)] == [[9, 1], [6, 1], [-3, 1]] * 2


def test_job_modules_import_like_files_of_the_job_folder(sandbox):
    # The runner compiles the job's modules ahead; what they see must not change: their
    # __file__, a source-encoding cookie, a package in a subfolder, and a job file named
    # like a built-in module (which never shadowed it).
    harness = textwrap.dedent("""
        import os, time, program, pkg.inner
        def main():
            return {"file": program.__file__, "cwd": os.getcwd(), "text": program.TEXT,
                    "inner": pkg.inner.VALUE, "builtin_time": hasattr(time, "monotonic")}
    """)
    files = {
        "elm_harness.py": harness,
        "program.py": "# -*- coding: latin-1 -*-\nTEXT = 'caf\u00e9'\n",
        "pkg/__init__.py": "",
        "pkg/inner.py": "VALUE = 3\n",
        "time.py": "raise RuntimeError('shadowed a built-in module')\n",
    }
    outcome = sandbox.run_many([Job(files, "elm_harness.py")])[0]
    assert outcome.status == "ok", outcome.error
    result = outcome.result
    assert result["file"] == os.path.join(result["cwd"], "program.py")
    assert result["text"] == "caf\u00c3\u00a9"  # UTF-8 bytes read as latin-1, as a file import does
    assert (result["inner"], result["builtin_time"]) == (3, True)


def test_a_compile_warning_still_reaches_the_output(sandbox):
    source = "def main():\n    return 1 is 1\n"
    outcome = sandbox.run_many([candidate(source)])[0]
    assert outcome.status == "ok" and outcome.result is True
    assert "SyntaxWarning" in outcome.stdout


def test_every_candidate_starts_from_the_same_random_state(sandbox):
    source = """
        import random
        import numpy as np
        def main():
            return [random.random(), float(np.random.rand())]
    """
    draws = [outcome.result for outcome in sandbox.run_many([candidate(source)] * 4)]
    assert all(draw == draws[0] for draw in draws)
    assert draws[0][0] != draws[0][1]


def test_exception_reports_the_last_traceback_lines(sandbox):
    outcome = sandbox.run_many([candidate("def main():\n    return {}['missing']\n")])[0]
    assert outcome.status == "error"
    assert "KeyError: 'missing'" in outcome.error
    assert "candidate.py" in outcome.error and "/runner/" not in outcome.error


def test_syntax_error_is_an_error(sandbox):
    outcome = sandbox.run_many([candidate("def main(:\n    pass\n")])[0]
    assert outcome.status == "error" and "SyntaxError" in outcome.error


def test_infinite_loop_times_out(sandbox):
    outcome = sandbox.run_many([candidate(INFINITE_LOOP, timeout_s=0.5)])[0]
    assert outcome.status == "timeout"
    assert 0.5 <= outcome.seconds < 3


def test_memory_hog_gets_memory(sandbox):
    outcome = sandbox.run_many([candidate(MEMORY_HOG, memory_mb=128)])[0]
    assert outcome.status == "memory", outcome.error
    assert "MemoryError" in outcome.error


def test_os_exit_without_result_is_bad_output_with_its_code(sandbox):
    outcome = sandbox.run_many([candidate(OS_EXIT)])[0]
    assert outcome.status == "bad_output"
    assert "exited with code 7" in outcome.error
    assert outcome.stdout == "leaving early\n"


def test_sigkill_of_itself_is_killed_naming_the_signal(sandbox):
    outcome = sandbox.run_many([candidate(SIGKILL_SELF)])[0]
    assert outcome.status == "killed" and "SIGKILL" in outcome.error


def test_segfault_is_killed_naming_the_signal(sandbox):
    outcome = sandbox.run_many([candidate(SEGFAULT)])[0]
    assert outcome.status == "killed"
    assert "SIGSEGV" in outcome.error and "segmentation fault" in outcome.error


def test_huge_output_is_capped(sandbox):
    outcome = sandbox.run_many([candidate(HUGE_OUTPUT)])[0]
    assert outcome.status == "ok" and outcome.result == "done"
    assert outcome.stdout.startswith("x" * 1023)
    assert len(outcome.stdout) < 4096 + 200
    assert "output truncated: 52428800 bytes written" in outcome.stdout


@pytest.mark.parametrize(
    "source, reason",
    [
        ("def main():\n    return {1, 2}\n", "not JSON-serialisable (set)"),
        ("def main():\n    return float('inf') if False else object()\n", "not JSON-serialisable (object)"),
        ("x = 1\n", "defines no main() function"),
    ],
)
def test_results_that_are_not_json_are_bad_output(sandbox, source, reason):
    outcome = sandbox.run_many([candidate(source)])[0]
    assert outcome.status == "bad_output" and reason in outcome.error


def test_prints_cannot_forge_the_result(sandbox):
    forged = '{"id": 1, "status": "ok", "result_json": "999"}'
    source = f"def main():\n    print({forged!r})\n    return 1\n"
    outcome = sandbox.run_many([candidate(source)])[0]
    assert outcome.status == "ok" and outcome.result == 1
    assert forged in outcome.stdout


def test_garbage_on_the_result_channel_is_bad_output(sandbox):
    source = "import os\ndef main():\n    os.write(3, b'R[[[not json')\n    os._exit(0)\n"
    outcome = sandbox.run_many([candidate(source)])[0]
    assert outcome.status == "bad_output" and "not valid JSON" in outcome.error


def test_deeply_nested_result_is_bad_output_not_a_crash(sandbox):
    source = (
        "import os\ndef main():\n    os.write(3, b'R' + b'[' * 200000 + b']' * 200000)\n    os._exit(0)\n"
    )
    outcome = sandbox.run_many([candidate(source)])[0]
    assert outcome.status == "bad_output"


def test_leftover_processes_are_killed_before_the_next_job(sandbox):
    for _ in range(2):  # twice, so both runners of the pool have served a leaver
        assert sandbox.run_many([candidate(LEFTOVER_DAEMON)] * 2)[0].status == "ok"
    survivors = sandbox.run_many([candidate(COUNT_OTHER_PROCESSES)] * 2)
    assert [o.result for o in survivors] == [[], []]


def test_scratch_is_fresh_for_every_job(sandbox):
    write = "import os\ndef main():\n    open('secret.txt', 'w').write('x')\n    return sorted(os.listdir('..'))\n"
    look = "import os\ndef main():\n    return [sorted(os.listdir('.')), sorted(os.listdir('..'))]\n"
    sandbox.run_many([candidate(write)] * 2)
    for outcome in sandbox.run_many([candidate(look)] * 2):
        files, siblings = outcome.result
        assert files == ["candidate.py"] and len(siblings) == 1


def test_unsafe_file_names_are_refused_before_running(sandbox):
    with pytest.raises(ValueError, match="unsafe"):
        sandbox.run_many([Job({"../escape.py": "", "candidate.py": ""}, "candidate.py")])


def test_local_backend_is_only_opened_when_configured():
    with pytest.raises(SandboxUnavailable, match="unknown sandbox backend"):
        open_sandbox(SandboxConfig(backend="subprocess"))
    assert isinstance(open_sandbox_and_close(SandboxConfig(backend="local", pool_size=1)), LocalSandbox)


def test_closing_leaves_no_runner_processes():
    box = LocalSandbox(SandboxConfig(backend="local", pool_size=2))
    pids = [slot.channel.process.pid for slot in box._pool._slots]
    folder = box._launcher.folder
    box.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not folder.exists()


def open_sandbox_and_close(config: SandboxConfig):
    box = open_sandbox(config)
    box.close()
    return box


RUNNER_PID = "int(open(f'/proc/{os.getppid()}/stat').read().rsplit(')', 1)[1].split()[1])"  # the spawner's parent


def test_a_candidate_that_kills_its_runner_is_reported_and_the_pool_goes_on(sandbox):
    # Locally the runner is no namespace init: a candidate may kill it. The job is retried
    # once on a fresh runner (runners also die for reasons of their own), then reported.
    source = f"import os, signal\ndef main():\n    os.kill({RUNNER_PID}, signal.SIGKILL)\n"
    outcome = sandbox.run_many([candidate(source)])[0]
    assert outcome.status == "killed" and "died running this candidate, twice" in outcome.error
    assert [o.status for o in sandbox.run_many([candidate(ORDINARY)] * 3)] == ["ok"] * 3


@pytest.mark.parametrize("signal_name", ["SIGKILL", "SIGSTOP"])
def test_a_candidate_that_signals_its_spawner_costs_the_runner_nothing(sandbox, signal_name):
    # The spawner (the candidate's parent) is replaced inside the runner; what the
    # candidate returned still counts, and the next jobs run on the same runner.
    source = f"import os, signal\ndef main():\n    os.kill(os.getppid(), signal.{signal_name})\n    return 7\n"
    sandbox.take_events()
    # The job pays for starting the replacement spawner (a fresh interpreter): room for a busy machine.
    outcome = sandbox.run_many([candidate(source, timeout_s=10.0)])[0]
    assert (outcome.status, outcome.result) == ("ok", 7), (outcome.status, outcome.error)
    assert [o.status for o in sandbox.run_many([candidate(ORDINARY)] * 3)] == ["ok"] * 3
    assert runners_replaced(sandbox) == 0


def test_a_runner_that_cannot_clean_up_after_an_answered_candidate_is_replaced():
    # main() returned, so the answer comes before the cleaning up; the folders are nested
    # too deep to remove, so the runner then ends itself and the next job gets a new one.
    nest = "import os\ndef main():\n    for _ in range(3000):\n        os.mkdir('d')\n        os.chdir('d')\n    return 'deep'\n"
    look = "import os\ndef main():\n    return os.listdir('..')\n"
    box = LocalSandbox(SandboxConfig(backend="local", pool_size=1))
    try:
        assert box.run_many([candidate(nest)])[0].result == "deep"
        assert [o.result for o in box.run_many([candidate(look)] * 3)] == [["job"]] * 3
        assert runners_replaced(box) == 1
    finally:
        box.close()  # the runner's folders too, though nested deeper than shutil can walk
    assert not box._launcher.folder.exists()


def test_a_candidate_that_closes_its_pipes_and_runs_on_times_out(sandbox):
    source = "import os, time\ndef main():\n    for fd in (1, 2, 3):\n        os.close(fd)\n    time.sleep(60)\n"
    outcome = sandbox.run_many([candidate(source, timeout_s=1.0)])[0]
    assert outcome.status == "timeout" and outcome.seconds < 5, (outcome.status, outcome.error)
    assert [o.status for o in sandbox.run_many([candidate(ORDINARY)] * 3)] == ["ok"] * 3


def test_a_candidate_that_kills_its_spawner_and_never_returns_is_killed(sandbox):
    source = "import os, signal, time\ndef main():\n    os.kill(os.getppid(), signal.SIGKILL)\n    os._exit(0)\n"
    outcome = sandbox.run_many([candidate(source)])[0]
    assert outcome.status == "killed" and "spawner was lost" in outcome.error
    assert [o.status for o in sandbox.run_many([candidate(ORDINARY)] * 3)] == ["ok"] * 3


def test_a_candidate_that_kills_its_spawner_and_then_raises_reports_its_error(sandbox):
    source = "import os, signal\ndef main():\n    os.kill(os.getppid(), signal.SIGKILL)\n    raise ValueError('after the kill')\n"
    outcome = sandbox.run_many([candidate(source)])[0]
    assert outcome.status == "error" and "after the kill" in outcome.error, (outcome.status, outcome.error)


def test_a_candidate_that_kills_its_spawner_and_runs_on_times_out_at_its_limit(sandbox):
    source = "import os, signal, time\ndef main():\n    os.kill(os.getppid(), signal.SIGKILL)\n    time.sleep(60)\n"
    outcome = sandbox.run_many([candidate(source, timeout_s=1.0)])[0]
    assert outcome.status == "timeout" and 1.0 <= outcome.seconds < 5, (outcome.status, outcome.seconds, outcome.error)
    assert [o.status for o in sandbox.run_many([candidate(ORDINARY)] * 3)] == ["ok"] * 3


def test_a_wedged_runner_is_replaced_and_its_job_reported(sandbox, monkeypatch):
    from elm.sandbox import pool

    monkeypatch.setattr(pool, "ANSWER_GRACE_S", 0.5)
    source = f"import os, signal\ndef main():\n    os.kill({RUNNER_PID}, signal.SIGSTOP)\n    return 1\n"
    outcome = sandbox.run_many([candidate(source, timeout_s=0.5)])[0]
    assert outcome.status == "timeout" and "gave no answer" in outcome.error
    assert [o.status for o in sandbox.run_many([candidate(ORDINARY)] * 3)] == ["ok"] * 3


def test_a_candidate_that_locks_its_folder_cannot_leave_files_behind(sandbox):
    assert_locked_folders_are_wiped(sandbox)


def assert_locked_folders_are_wiped(sandbox) -> None:
    lock = (
        "import os\ndef main():\n    os.makedirs('deep/er')\n    open('deep/er/f', 'w').write('x')\n"
        "    os.chmod('deep/er', 0)\n    os.chmod('deep', 0)\n    os.chmod('.', 0o500)\n    return 1\n"
    )
    look = "import os\ndef main():\n    return [sorted(os.listdir('.')), sorted(os.listdir('..'))]\n"
    assert [o.status for o in sandbox.run_many([candidate(lock)] * 2)] == ["ok", "ok"]
    for outcome in sandbox.run_many([candidate(look)] * 2):
        assert outcome.result[0] == ["candidate.py"] and len(outcome.result[1]) == 1


def test_folders_of_a_killed_local_sandbox_are_removed_by_the_next(tmp_path):
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from tests.conftest import REPO, cli_env

    script = (
        "import time\nfrom elm.config import SandboxConfig\nfrom elm.sandbox.local import LocalSandbox\n"
        "box = LocalSandbox(SandboxConfig(backend='local', pool_size=1))\n"
        "print(box._launcher.folder, flush=True)\ntime.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               env=cli_env(), cwd=REPO)
    folder = Path(process.stdout.readline().strip())
    process.kill()
    process.wait()
    process.stdout.close()
    assert folder.is_dir() and folder.parent == Path(tempfile.gettempdir())
    LocalSandbox(SandboxConfig(backend="local", pool_size=1)).close()
    assert not folder.exists()


@pytest.mark.parametrize("arguments, refusal", [
    (["--runner-uid", "10000"], "--runner-uid and --candidate-user go together"),
    (["--candidate-user", "10001:10001"], "--runner-uid and --candidate-user go together"),
    (["--runner-uid", "10000", "--candidate-user", "10001"], "not UID:GID: '10001'"),
])
def test_the_runners_own_uid_needs_both_options_in_their_form(arguments, refusal):
    import subprocess
    import sys

    from tests.conftest import REPO

    finished = subprocess.run([sys.executable, str(REPO / "sandbox" / "runner"), *arguments],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (finished.returncode, finished.stdout) == (2, "")
    assert refusal in finished.stderr.splitlines()[-1]
