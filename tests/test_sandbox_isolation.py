"""Candidates that share one warm container cannot touch each other: after whatever one
job does, the next job's status and result are what they are in a fresh container.

Each test runs an attacking file and then a harmless one through one container
(pool_size 1), and compares the harmless one's outcome with its outcome in a container
of its own. These tests fail (never skip) when Docker or the image is missing.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from dataclasses import replace

import pytest

from elm.config import SandboxConfig, build_config
from elm.evaluator import Evaluator
from elm.experiment import open_environment
from elm.mutation import Child
from elm.sandbox import Job, Outcome, SandboxUnavailable
from elm.sandbox.docker import SANDBOX_HOSTNAME, DockerSandbox
from tests.conftest import containers_of, run_elm, runners_replaced
from tests.test_sandbox_local import ORDINARY, candidate
from tests.test_sandbox_runtimes import HOSTILE_HERE, RUNTIMES

pytestmark = pytest.mark.docker

CONFIG = SandboxConfig(backend="docker", pool_size=1, timeout_s=5.0, output_limit_bytes=4096, pids_limit=64)

SLEEPER = """
    import time
    def main():
        time.sleep(0.5)
        return "slept"
"""
NUMPY_100_MB = """
    import numpy as np
    def main():
        return float(np.ones(100 * 2**20 // 8).sum())
"""
# Answers `ok` at once, stops its spawner, then fills the scratch folder and spins.
EARLY_ANSWER_THEN_MESS = """
    import os, signal
    def main():
        os.write(3, b'R"done"')
        for fd in (1, 2, 3):
            os.close(fd)
        os.kill(os.getppid(), signal.SIGSTOP)
        os.mkdir("many")
        for n in range(50000):
            open(f"many/{n}", "w").close()
        while True:
            pass
"""
_SYSV = """
    import ctypes, struct
    libc = ctypes.CDLL(None, use_errno=True)
    KEY, IPC_CREAT, IPC_NOWAIT, GETVAL, SETVAL = 0x454C4D, 0o1000, 0o4000, 12, 16
"""
LEAVE_A_MESSAGE_AND_A_SEMAPHORE = _SYSV + """
    def main():
        queue = libc.msgget(KEY, IPC_CREAT | 0o600)
        message = struct.pack("l", 1) + b"left by an earlier job"
        sent = libc.msgsnd(queue, message, len(message) - 8, 0)
        semaphores = libc.semget(KEY, 1, IPC_CREAT | 0o600)
        set_value = libc.semctl(semaphores, 0, SETVAL, 42)
        return [sent, set_value]
"""
READ_MESSAGES_AND_SEMAPHORES = _SYSV + """
    def main():
        found = {}
        queue = libc.msgget(KEY, 0)
        if queue >= 0:
            buffer = ctypes.create_string_buffer(128)
            size = libc.msgrcv(queue, buffer, 120, 0, IPC_NOWAIT)
            found["message"] = buffer.raw[8:8 + size].decode() if size >= 0 else None
        semaphores = libc.semget(KEY, 1, 0)
        if semaphores >= 0:
            found["semaphore"] = libc.semctl(semaphores, 0, GETVAL)
        return found
"""
PARK_MEMORY_IN_MESSAGE_QUEUES = _SYSV + """
    def main():
        message = struct.pack("l", 1) + b"x" * 8000  # MSGMAX: 8192 bytes a message, 16384 a queue
        parked = 0
        while parked < 360 * 2**20:
            queue = libc.msgget(0, IPC_CREAT | 0o600)  # IPC_PRIVATE: a new queue each time
            if queue < 0 or any(libc.msgsnd(queue, message, 8000, IPC_NOWAIT) != 0 for _ in range(2)):
                break
            parked += 16000
        return parked // 2**20
"""
RUNNER_RSS_KB = """
    def main():
        for line in open("/proc/1/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
"""
SECRET_TEXT = "elm-secret-5b7e1f0c93d2a4"
RETURN_A_SECRET = f"""
    SECRET = "{SECRET_TEXT}"
    def main():
        return SECRET
"""
KILL_THE_SPAWNER = """
    import os, signal
    def main():
        os.kill(os.getppid(), signal.SIGKILL)
        return "killed it"
"""
# Counts copies of the secret in its own writable memory. The needle is written byte by
# byte into a mapping of its own from the secret reversed, so no other copy of it is made.
FIND_THE_SECRET_IN_MY_MEMORY = f"""
    import ctypes, mmap
    REVERSED = "{SECRET_TEXT[::-1]}"
    def main():
        size = len(REVERSED)
        needle = mmap.mmap(-1, mmap.PAGESIZE)
        for index in range(size):
            needle[index] = ord(REVERSED[size - 1 - index])
        pattern = memoryview(needle)[:size]
        chunk = mmap.mmap(-1, 1 << 20)
        chunk_address = ctypes.addressof(ctypes.c_char.from_buffer(chunk))
        own = (ctypes.addressof(ctypes.c_char.from_buffer(needle)), chunk_address)
        regions = [line.split()[:2] for line in open("/proc/self/maps").read().splitlines()]
        found = 0
        for bounds, mode in regions:
            low, high = (int(bound, 16) for bound in bounds.split("-"))
            if mode != "rw-p" or any(low <= address < high for address in own):
                continue
            for start in range(low, high, (1 << 20) - size):
                length = min(1 << 20, high - start)
                ctypes.memmove(chunk_address, start, length)
                at = chunk.find(pattern, 0, length)
                while at >= 0:
                    found += 1
                    at = chunk.find(pattern, at + 1, length)
        return found
"""
EMPTY_OBJECTS = """
    def main():
        return [{}] * 400_000
"""
SLOW_TO_COMPILE = "def main():\n    return 1\n" + "".join(
    f"def f{n}(a, b):\n    return [a + b * {n} for _ in range(3) if a]\n" for n in range(3000)
)
WHAT_THE_CONTAINER_SHOWS = """
    import os
    def main():
        return {"mountinfo": open("/proc/self/mountinfo").read(), "cgroup": open("/proc/self/cgroup").read(),
                "hostname": os.uname().nodename}
"""
# What a job can observe of the container it runs in (the same in every fresh one). The
# System V IPC objects are counted by the kernel's *_INFO calls, as the runner counts them
# under gVisor (which has no /proc/sysvipc): pages of shared memory, message queues,
# semaphore sets.
PROBE = """
    import ctypes, os, random
    SHM_INFO, MSG_INFO, SEM_INFO = 14, 12, 19
    def ipc_counts():
        libc = ctypes.CDLL(None, use_errno=True)
        info = [(ctypes.c_ulong * 16)() for _ in range(3)]
        done = [libc.shmctl(0, SHM_INFO, info[0]), libc.msgctl(0, MSG_INFO, info[1]),
                libc.semctl(0, 0, SEM_INFO, info[2])]
        as_ints = [ctypes.cast(table, ctypes.POINTER(ctypes.c_int)) for table in info]
        counts = [info[0][1], as_ints[1][0], as_ints[2][7]]  # shm_tot, msgpool, semusz
        return [count if result >= 0 else "unknown" for count, result in zip(counts, done)]
    def main():
        me, parent = os.getpid(), os.getppid()
        others = [pid for pid in os.listdir("/proc") if pid.isdigit() and int(pid) not in (1, me, parent)]
        scratch = os.statvfs("/scratch")
        return {"files": sorted(os.listdir(".")), "folders": sorted(os.listdir("..")), "others": others,
                "ipc": ipc_counts(), "scratch_free_mb": scratch.f_bavail * scratch.f_frsize // 2**20,
                "set_order": list({"north", "west", "south", "east"}), "random": random.random()}
"""


@pytest.fixture(scope="module")
def box():
    try:
        sandbox = DockerSandbox(CONFIG)
    except SandboxUnavailable as problem:
        pytest.fail(f"Docker sandbox unavailable (run scripts/install_docker.sh and `elm sandbox build`): {problem}")
    yield sandbox
    sandbox.close()


_FRESH: dict[tuple[str, float, int], tuple[str, object]] = {}


def fresh(job: Job) -> tuple[str, object]:
    """The job's status and result in a container of its own."""
    key = (job.files[job.entry], job.timeout_s, job.memory_mb)
    if key not in _FRESH:
        with DockerSandbox(CONFIG) as sandbox:
            _FRESH[key] = seen(sandbox.run_many([job])[0])
    return _FRESH[key]


def seen(outcome: Outcome) -> tuple[str, object]:
    return outcome.status, outcome.result


def after(box: DockerSandbox, *attack: Job, harmless: Job) -> tuple[list[Outcome], Outcome]:
    """Run the attacking jobs, then the harmless one, through the one container."""
    box.take_events()
    *attacked, last = box.run_many([*attack, harmless])
    assert runners_replaced(box) == 0, "the container was replaced: not the same warm container"
    return attacked, last


def test_an_early_answer_pays_for_its_own_cleaning_up(box):
    (attack,), harmless = after(box, candidate(EARLY_ANSWER_THEN_MESS, timeout_s=4.0),
                                harmless=candidate(SLEEPER, timeout_s=1.5))
    # It ran on past its limit: its early answer does not make it ok.
    assert attack.status == "timeout", (attack.status, attack.error)
    assert seen(harmless) == fresh(candidate(SLEEPER, timeout_s=1.5)) == ("ok", "slept")


def test_message_queues_and_semaphores_do_not_carry_over(tmp_path):
    writer, reader = tmp_path / "writer.py", tmp_path / "reader.py"
    writer.write_text(textwrap.dedent(LEAVE_A_MESSAGE_AND_A_SEMAPHORE))
    reader.write_text(textwrap.dedent(READ_MESSAGES_AND_SEMAPHORES))
    both = run_elm("sandbox", "run", str(writer), str(reader), "--pool-size", "1")
    alone = run_elm("sandbox", "run", str(reader))
    assert both.returncode == 0 and alone.returncode == 0, (both.stderr, alone.stderr)
    written, read = [json.loads(line) for line in both.stdout.splitlines()]
    assert written["file"] == str(writer) and written["result"] == [0, 0]  # the attack itself worked
    assert read["file"] == str(reader) and read["result"] == json.loads(alone.stdout)["result"] == {}


def test_memory_parked_in_message_queues_is_given_back(box):
    (attack,), harmless = after(box, candidate(PARK_MEMORY_IN_MESSAGE_QUEUES, timeout_s=20.0),
                                harmless=candidate(NUMPY_100_MB))
    assert attack.status == "ok" and attack.result >= 100, (attack.status, attack.result, attack.error)
    assert seen(harmless) == fresh(candidate(NUMPY_100_MB)) == ("ok", float(100 * 2**20 // 8))


def test_the_compiled_code_the_runner_keeps_is_bounded(box):
    # Sources that compile to large code objects (folded string constants): about 0.9 MB
    # each (kept, up to the runner's bound) and about 10 MB each (never kept).
    def heavy(number: int, lines: int) -> Job:
        body = "".join(f"v{line} = '{number}-{line}' + 'x' * 4000\n" for line in range(lines))
        return candidate(body + "def main():\n    return len(v0)\n")

    before = box.run_many([candidate(RUNNER_RSS_KB)])[0].result
    attack, rss = after(box, *[heavy(n, 220) for n in range(16)], *[heavy(100 + n, 2400) for n in range(6)],
                        harmless=candidate(RUNNER_RSS_KB))
    assert [o.status for o in attack] == ["ok"] * 22
    assert rss.result - before < 24 * 1024, (before, rss.result)  # KiB
    harmless = box.run_many([candidate(NUMPY_100_MB)])[0]
    assert seen(harmless) == fresh(candidate(NUMPY_100_MB))


def test_compiling_a_candidate_counts_in_its_seconds(box):
    started = time.perf_counter()
    compile(SLOW_TO_COMPILE, "candidate.py", "exec")
    compile_s = time.perf_counter() - started  # here, on the same machine: about what the runner takes
    (attack,), harmless = after(box, candidate(SLOW_TO_COMPILE), harmless=candidate(ORDINARY))
    assert attack.status == "ok" and attack.seconds >= compile_s / 4, (attack.status, attack.seconds, compile_s)
    assert seen(harmless) == fresh(candidate(ORDINARY))


@pytest.mark.parametrize("kill_the_spawner", [False, True], ids=["same spawner", "replaced spawner"])
def test_no_job_finds_an_earlier_jobs_data_in_its_memory(box, kill_the_spawner):
    attack = [candidate(RETURN_A_SECRET)] + ([candidate(KILL_THE_SPAWNER)] if kill_the_spawner else [])
    attacked, harmless = after(box, *attack, harmless=candidate(FIND_THE_SECRET_IN_MY_MEMORY))
    assert [seen(o) for o in attacked][0] == ("ok", SECRET_TEXT)
    assert seen(harmless) == fresh(candidate(FIND_THE_SECRET_IN_MY_MEMORY)) == ("ok", 0)


def test_a_result_of_millions_of_values_is_bad_output(box):
    (attack,), harmless = after(box, candidate(EMPTY_OBJECTS), harmless=candidate(ORDINARY))
    assert attack.status == "bad_output" and "more than the limit of 100000" in attack.error, attack.error
    assert attack.result is None
    assert seen(harmless) == fresh(candidate(ORDINARY))


def test_the_container_shows_neither_its_id_nor_the_hosts_process(box):
    (shown,), harmless = after(box, candidate(WHAT_THE_CONTAINER_SHOWS), harmless=candidate(ORDINARY))
    (container_id,) = containers_of(box)
    shown = shown.result
    assert shown["hostname"] == SANDBOX_HOSTNAME and container_id not in shown["cgroup"]
    # Docker's own bind mounts of /etc/hostname (and /etc/hosts, /etc/resolv.conf where it
    # makes them) still name the container's folder: Docker offers no way around them.
    naming_the_id = [line.split()[4] for line in shown["mountinfo"].splitlines() if container_id in line]
    assert set(naming_the_id) <= {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}, naming_the_id
    socket_mount = [line for line in shown["mountinfo"].splitlines() if "/run/elm/runner.sock" in line]
    assert len(socket_mount) == 1 and f"-{os.getpid()}-" not in socket_mount[0]
    assert seen(harmless) == fresh(candidate(ORDINARY))


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_after_every_hostile_candidate_the_next_job_sees_a_fresh_container(runtime):
    config = replace(CONFIG, runtime=runtime)
    probe = candidate(PROBE)
    with DockerSandbox(config) as sandbox:
        expected = seen(sandbox.run_many([probe])[0])
    assert expected[0] == "ok" and expected[1]["ipc"] == [0, 0, 0], expected
    with DockerSandbox(config) as box:
        for source, timeout_s, statuses in HOSTILE_HERE:
            box.take_events()
            hostile, after_it = box.run_many([candidate(source, timeout_s=timeout_s, memory_mb=128), probe])
            assert hostile.status in statuses, (source, hostile.status, hostile.error)
            assert seen(after_it) == expected, (source, runners_replaced(box))


SET_ORDER_WALKER = """
from walker_creator import walker_creator


def make_walker():
    wc = walker_creator()
    rim = {"north": wc.add_joint(5.0, 10.0), "west": wc.add_joint(0.0, 5.0),
           "south": wc.add_joint(5.0, 0.0), "east": wc.add_joint(10.0, 5.0)}
    center = wc.add_joint(5.0, 5.0)
    for a, b in (("north", "west"), ("west", "south"), ("south", "east"), ("east", "north")):
        wc.add_muscle(rim[a], rim[b])
    # the phases go to the spokes in the iteration order of a set of strings
    for turn, name in enumerate({"north", "west", "south", "east"}):
        wc.add_muscle(rim[name], center, amplitude=0.8, phase=1.9 * turn)
    return wc.get_walker()
"""


def test_a_walker_that_iterates_a_set_of_strings_scores_the_same_in_every_container():
    config = build_config({"environment": {"name": "sodarace"},
                           "sandbox": {"backend": "docker", "pool_size": 1, "timeout_s": 10.0}})
    environment = open_environment(config)
    scores = []
    for _ in range(2):  # two containers, one after the other
        with DockerSandbox(config.sandbox) as sandbox:
            evaluator = Evaluator(environment, sandbox, config.sandbox)
            (record,) = evaluator.evaluate([Child(parent_id=None, source=SET_ORDER_WALKER, operator="manual")],
                                           [0], iteration=0)
            assert record.status == "ok", record.error
            scores.append((record.fitness, record.descriptor))
    assert scores[0] == scores[1]
