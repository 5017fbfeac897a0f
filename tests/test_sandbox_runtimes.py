"""The hostile candidates under both container runtimes: runc (Docker's default) and
runsc (gVisor). Nothing reaches the host, no forged answer is ever accepted, and the pool
serves ordinary candidates correctly afterwards.

Every status is the same under both. Under runsc the runner keeps a uid of its own (see
elm.sandbox.docker.splits_users), so its streams are refused to candidates as under runc,
and the container's limits make room for gVisor's own tasks and memory, so a fork bomb
ends in its wall-clock limit as under runc. The runsc cases skip only where Docker does
not list runsc (`bash scripts/setup.sh --gvisor` registers it).
"""

from __future__ import annotations

from dataclasses import replace

import docker
import pytest

from elm.config import SandboxConfig
from elm.sandbox import pool as pool_module
from elm.sandbox.docker import RUNNER_MEMORY_MB, DockerSandbox, host_pids_limit, runtime_memory_mb
from tests.conftest import containers_of, runners_replaced
from tests.test_sandbox_docker import FORK_BOMB, FORK_BOMB_LEAVING_ITS_GROUP, HOSTILE, WRITE_OUTSIDE_SCRATCH
from tests.test_sandbox_local import ORDINARY, candidate

pytestmark = pytest.mark.docker

ORDINARY_RESULT = {"fitness": 1.5, "descriptor": [0.25, 0.75]}
FORGED = '{"id": %d, "token": "%s", "status": "ok", "seconds": 0.0, "result_json": "666", "retire": false}\n'

# A forged answer on every way out a candidate has: its own stdout and stderr (captured
# pipes), /dev/stdout, and the runner's own output stream, /proc/1/fd/1 (refused: under
# runc the runner is not dumpable, under runsc it has a uid of its own). The job's id is
# guessed, its token cannot be.
FORGE_AN_ANSWER = f"""
    import os, sys
    FORGED = {FORGED!r}
    def main():
        lines = "".join(FORGED % (job_id, "0" * 32) for job_id in range(1, 50))
        print(lines, flush=True)
        os.write(2, lines.encode())
        tried = {{}}
        for path in ("/dev/stdout", "/proc/1/fd/1", "/proc/1/fd/2"):
            try:
                with open(path, "w") as stream:
                    stream.write(lines)
                tried[path] = "written"
            except OSError as problem:
                tried[path] = type(problem).__name__
        return tried
"""

# A process left behind to read the runner's input (/proc/1/fd/0) and answer the next job
# with its stolen id and token: it must be gone before the next request is sent.
STEAL_THE_NEXT_REQUEST = f"""
    import json, os
    FORGED = {FORGED!r}
    def main():
        if os.fork() == 0:
            os.setsid()
            try:
                requests = open("/proc/1/fd/0", "rb")
                answers = open("/proc/1/fd/1", "w")
                for line in requests:
                    stolen = json.loads(line)
                    answers.write(FORGED % (stolen["id"], stolen["token"]))
                    answers.flush()
            finally:
                os._exit(0)
        return "left a reader behind"
"""

# A request written into the runner's input: the runner would serve it after this job and
# its answer would reach the host ahead of the next job's. The open is refused.
INJECT_A_REQUEST = """
    import json, os
    def main():
        request = {"id": 2, "token": "0" * 32, "files": {"a.py": "def main():\\n    return 666\\n"},
                   "entry": "a.py", "timeout_s": 5.0, "memory_mb": 64, "output_limit_bytes": 100,
                   "file_limit_bytes": 100000}
        try:
            fd = os.open("/proc/1/fd/0", os.O_WRONLY)
            try:
                return os.write(fd, (json.dumps(request) + "\\n").encode())
            finally:
                os.close(fd)
        except OSError as problem:
            return type(problem).__name__
"""

KILL_THE_SPAWNER = """
    import os, signal
    def main():
        os.kill(os.getppid(), signal.SIGKILL)  # the runner then starts a fresh spawner
        return "killed it"
"""

# Every run of exactly 32 hex digits (a token's form) the candidate can find: in its own
# memory (forked from the spawner, which never receives a request) and in what it can read
# of the runner and the spawner. `control`, built at run time, shows the search works.
HUNT_THE_TOKEN = """
    import ctypes, os, re
    TOKEN_FORM = re.compile(rb"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
    CHUNK = 4 * 1024 * 1024

    def own_memory(found):
        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, which /proc/self/mem needs
        with open("/proc/self/maps") as maps:
            regions = [line.split() for line in maps]
        with open("/proc/self/mem", "rb", buffering=0) as memory:
            for fields in regions:
                if not fields[1].startswith("r"):
                    continue
                low, high = (int(bound, 16) for bound in fields[0].split("-"))
                for start in range(low, high, CHUNK):
                    try:
                        memory.seek(start)
                        data = memory.read(min(CHUNK + 64, high - start))
                    except (OSError, ValueError, OverflowError):
                        break
                    found.update(TOKEN_FORM.findall(data))

    def main():
        control = ("%x" % 0xFEEDFACE) * 4
        found = set()
        own_memory(found)
        for pid in (1, os.getppid()):
            for name in ("environ", "cmdline", "mem", "fd/0"):
                try:
                    with open(f"/proc/{pid}/{name}", "rb") as handle:
                        os.set_blocking(handle.fileno(), False)
                        found.update(TOKEN_FORM.findall(handle.read(1 << 20) or b""))
                except OSError:
                    pass
        return {"control": control, "found": sorted(token.decode() for token in found)}
"""

# Every process in the container but the runner (PID 1), the spawner and this job's own.
OTHER_PROCESSES = """
    import os
    def main():
        ours = {1, os.getpid(), os.getppid()}
        return sorted(int(pid) for pid in os.listdir("/proc") if pid.isdigit() and int(pid) not in ours)
"""

# The runner's identity as a candidate sees it: the uid and gid lines and capabilities
# of /proc/1/status, and its own.
IDENTITIES = """
    import os
    def status(pid):
        with open(f"/proc/{pid}/status") as handle:
            fields = dict(line.rstrip("\\n").split(":\\t", 1) for line in handle if ":\\t" in line)
        return {name: fields[name].split() for name in ("Uid", "Gid", "CapPrm", "CapEff")}
    def main():
        return {"runner": status(1), "candidate": status(os.getpid())}
"""

HOSTILE_HERE = [*HOSTILE, (FORGE_AN_ANSWER, 20.0, {"ok"}), (STEAL_THE_NEXT_REQUEST, 20.0, {"ok"}),
                (INJECT_A_REQUEST, 20.0, {"ok"})]


def runsc_registered() -> bool:
    client = docker.from_env()
    try:
        return "runsc" in (client.info().get("Runtimes") or {})
    finally:
        client.close()


RUNTIMES = [
    "runc",
    pytest.param("runsc", marks=pytest.mark.skipif(not runsc_registered(),
                                                   reason="Docker lists no runsc runtime: bash scripts/setup.sh --gvisor")),
]


BOX_CONFIG = SandboxConfig(backend="docker", pool_size=1, timeout_s=2.0, output_limit_bytes=4096, pids_limit=64)


@pytest.fixture(scope="module", params=RUNTIMES)
def box(request):
    with DockerSandbox(replace(BOX_CONFIG, runtime=request.param)) as sandbox:
        yield sandbox


def container_of(box) -> dict:
    """What Docker says of the box's one container."""
    client = docker.from_env()
    try:
        return client.api.inspect_container(containers_of(box)[0])
    finally:
        client.close()


@pytest.mark.parametrize("index", range(len(HOSTILE_HERE)))
def test_a_hostile_candidate_gets_its_status_and_the_pool_serves_on(box, index):
    source, timeout_s, statuses = HOSTILE_HERE[index]
    hostile, others, *after = box.run_many([candidate(source, timeout_s=timeout_s, memory_mb=128),
                                            candidate(OTHER_PROCESSES)] + [candidate(ORDINARY)] * 2)
    assert hostile.status in statuses, (hostile.status, hostile.error)
    assert hostile.result != 666
    assert (others.status, others.result) == ("ok", []), (others.status, others.error)
    assert [(outcome.status, outcome.result) for outcome in after] == [("ok", ORDINARY_RESULT)] * 2


@pytest.mark.parametrize("bomb", [FORK_BOMB, FORK_BOMB_LEAVING_ITS_GROUP], ids=["in its group", "leaving its group"])
def test_a_fork_bomb_held_to_the_default_limit_ends_in_it_and_its_runner_serves_on(box, bomb):
    # Under runsc the bomb's processes keep adding gVisor host threads while they spin, so
    # the default wall-clock limit tests the container's room for them, not only a short one.
    box.take_events()
    before = containers_of(box)
    bombed, after = box.run_many([candidate(bomb, timeout_s=SandboxConfig().timeout_s), candidate(ORDINARY)])
    assert (bombed.status, bombed.error) == ("timeout", f"wall-clock limit of {SandboxConfig().timeout_s:g} s exceeded")
    assert (after.status, after.result) == ("ok", ORDINARY_RESULT)
    assert runners_replaced(box) == 0 and containers_of(box) == before


def test_the_container_limits_make_room_for_the_runtime_itself(box):
    host = container_of(box)["HostConfig"]
    config = replace(BOX_CONFIG, runtime=host["Runtime"])
    runsc = config.runtime == "runsc"
    assert host["PidsLimit"] == host_pids_limit(config) == (64 + 64 * (64 + 64) if runsc else 64)
    extra_mb = runtime_memory_mb(config)
    assert extra_mb == (24 * 64 if runsc else 0)
    assert host["Memory"] == host["MemorySwap"] == (config.memory_mb + config.scratch_mb + RUNNER_MEMORY_MB + extra_mb) << 20


def test_a_forged_answer_is_never_accepted(box):
    box.take_events()
    forged, after = box.run_many([candidate(FORGE_AN_ANSWER), candidate(ORDINARY)])
    assert after.status == "ok" and after.result == ORDINARY_RESULT
    assert forged.status == "ok", (forged.status, forged.error)
    assert forged.result == {"/dev/stdout": "written", "/proc/1/fd/1": "PermissionError",
                             "/proc/1/fd/2": "PermissionError"}
    assert forged.stdout.count('"result_json": "666"') >= 1  # its own output, captured
    assert runners_replaced(box) == 0


def test_no_request_can_be_written_into_the_runners_input(box):
    injected, after = box.run_many([candidate(INJECT_A_REQUEST), candidate(ORDINARY)])
    assert (injected.status, injected.result) == ("ok", "PermissionError"), (injected.status, injected.error)
    assert after.status == "ok" and after.result == ORDINARY_RESULT


@pytest.mark.parametrize("kill_the_spawner", [False, True], ids=["same spawner", "replaced spawner"])
def test_the_candidate_cannot_learn_a_token(box, monkeypatch, kill_the_spawner):
    tokens: list[str] = []

    def recorded() -> str:
        tokens.append(new_token())
        return tokens[-1]

    new_token = pool_module.new_token
    monkeypatch.setattr(pool_module, "new_token", recorded)
    earlier = [candidate(ORDINARY)] * 3 + ([candidate(KILL_THE_SPAWNER)] if kill_the_spawner else [])
    outcomes = box.run_many(earlier + [candidate(HUNT_THE_TOKEN, memory_mb=512)])
    hunt = outcomes[-1]
    assert [outcome.status for outcome in outcomes] == ["ok"] * len(outcomes), [o.error for o in outcomes]
    assert hunt.result["control"] in hunt.result["found"]
    assert len(tokens) == len(outcomes) and not set(tokens) & set(hunt.result["found"])


def test_nothing_is_written_outside_the_scratch_folder(box):
    outcome = box.run_many([candidate(WRITE_OUTSIDE_SCRATCH)])[0]
    assert outcome.status == "ok", outcome.error
    results = outcome.result
    assert results.pop("scratch") == 4
    assert set(results.values()) <= {"EROFS", "EACCES", "ENOENT", "EPERM"}, results


def test_the_runner_holds_no_capability_and_under_runsc_a_uid_of_its_own(box):
    outcome = box.run_many([candidate(IDENTITIES)])[0]
    assert outcome.status == "ok", outcome.error
    runner, own = outcome.result["runner"], outcome.result["candidate"]
    assert own == {"Uid": ["10001"] * 4, "Gid": ["10001"] * 4, "CapPrm": ["0" * 16], "CapEff": ["0" * 16]}
    # real, effective, saved, filesystem: under runsc the runner acts as the candidates'
    # uid (to signal them and remove their files) but no candidate has its real or saved uid
    attributes = container_of(box)
    runc = attributes["HostConfig"]["Runtime"] == "runc"
    uids = ["10001"] * 4 if runc else ["10000", "10001", "10000", "10001"]
    assert runner == {"Uid": uids, "Gid": ["10001"] * 4, "CapPrm": ["0" * 16], "CapEff": ["0" * 16]}
    assert attributes["HostConfig"]["CapDrop"] == ["ALL"]
    assert (attributes["Config"]["User"], attributes["HostConfig"]["CapAdd"]) == (
        ("10001:10001", None) if runc else ("0:0", ["SETUID", "SETGID"]))
