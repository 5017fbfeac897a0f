"""`elm sandbox run`, `elm sandbox build` and `elm bench sandbox`, as a user calls them."""

from __future__ import annotations

import http.server
import json
import socketserver
import subprocess
import sys
import threading
from types import SimpleNamespace
from typing import ClassVar

import docker
import pytest

from elm.sandbox.image import default_image
from tests.conftest import REPO, TOY_CONFIG, cli_env, run_elm

HELLO = "def main():\n    print('hello from the sandbox')\n    return {'answer': 42}\n"


@pytest.fixture
def program(tmp_path):
    def write(source: str, name: str = "program.py") -> str:
        path = tmp_path / name
        path.write_text(source)
        return str(path)

    return write


def test_run_prints_one_json_outcome(program):
    done = run_elm("sandbox", "run", program(HELLO), "--backend", "local")
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "ok" and outcome["result"] == {"answer": 42}
    assert outcome["stdout"] == "hello from the sandbox\n" and outcome["seconds"] > 0


def test_run_prints_one_json_line_per_file_in_order(program):
    files = [program(f"def main():\n    return {n}\n", f"p{n}.py") for n in range(3)]
    done = run_elm("sandbox", "run", *files, "--backend", "local", "--pool-size", "1")
    assert done.returncode == 0, done.stderr
    outcomes = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(o["file"], o["status"], o["result"]) for o in outcomes] == [(f, "ok", n) for n, f in enumerate(files)]


def test_run_exits_1_when_any_file_is_not_ok(program):
    files = [program("def main():\n    return 1\n", "good.py"), program("def main():\n    raise ValueError\n", "bad.py")]
    done = run_elm("sandbox", "run", *files, "--backend", "local")
    assert done.returncode == 1
    assert [json.loads(line)["status"] for line in done.stdout.splitlines()] == ["ok", "error"]


def test_run_reports_a_failing_candidate_with_exit_code_1(program):
    done = run_elm("sandbox", "run", program("def main():\n    raise RuntimeError('nope')\n"), "--backend", "local")
    assert done.returncode == 1
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "error" and "RuntimeError: nope" in outcome["error"]


def test_run_applies_timeout_and_memory_options(program):
    loop = run_elm("sandbox", "run", program("def main():\n    while True:\n        pass\n"),
                   "--backend", "local", "--timeout", "0.5")
    assert json.loads(loop.stdout)["status"] == "timeout"
    hog = run_elm("sandbox", "run", program("def main():\n    return len(bytearray(200 * 2**20))\n"),
                  "--backend", "local", "--memory", "64")
    assert json.loads(hog.stdout)["status"] == "memory"
    fits = run_elm("sandbox", "run", program("def main():\n    return len(bytearray(20 * 2**20))\n"),
                   "--backend", "local", "--memory", "64")
    assert json.loads(fits.stdout)["result"] == 20 * 2**20


def test_run_takes_the_sandbox_section_of_a_config(program, tmp_path):
    config = tmp_path / "local.yaml"
    config.write_text(TOY_CONFIG.format(iterations=1, backend="local"))
    done = run_elm("sandbox", "run", program(HELLO), "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"answer": 42}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["no/such/file.py"], "cannot read no/such/file.py"),
        (["{program}", "--timeout", "0"], "--timeout must be positive"),
        (["{program}", "--memory", "-5"], "--memory must be positive"),
        (["{program}", "--pool-size", "0"], "--pool-size must be positive"),
        (["{program}", "no/such/second.py"], "cannot read no/such/second.py"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(program, arguments, message):
    path = program(HELLO)
    done = run_elm("sandbox", "run", *[a.format(program=path) for a in arguments], "--backend", "local")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("elm: error: ")
    assert message in done.stderr and "Traceback" not in done.stderr


class _FakeDaemon(http.server.BaseHTTPRequestHandler):
    """Just enough of the Docker API for a sandbox to ask which runtimes there are."""

    runtimes: ClassVar[dict[str, dict]] = {}

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rsplit("/", 1)[-1]
        answers = {"_ping": "OK", "version": json.dumps({"ApiVersion": "1.41", "Version": "20.10"}),
                   "info": json.dumps({"Runtimes": self.runtimes})}
        body = answers.get(path, "{}").encode()
        self.send_response(200 if path in answers else 404)
        self.send_header("Content-Type", "text/plain" if path == "_ping" else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "local"

    def log_message(self, *arguments) -> None:
        pass


@pytest.fixture
def fake_daemon(tmp_path):
    """A unix-socket Docker daemon (local, as far as the client can tell) that lists the runtimes set on it."""
    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    handler = type("Handler", (_FakeDaemon,), {"runtimes": {"runc": {"path": "runc"}}})
    server = Server(str(tmp_path / "docker.sock"), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"unix://{tmp_path / 'docker.sock'}", handler=handler)
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(
    "runtimes, arguments, message",
    [
        ({"runc": {}}, [], "the Docker daemon has no container runtime 'runsc' (it has runc): install and "
                           "register gVisor with `bash scripts/setup.sh --gvisor`"),
        ({"runc": {}, "runsc": {}}, ["--pool-size", "1024"], "under runtime runsc, 1024 containers may hold up to "
                                                             "8454144 host tasks"),
    ],
    ids=["runsc not installed", "too many host tasks"],
)
def test_a_runtime_the_host_cannot_serve_is_one_line_and_exit_2(program, fake_daemon, runtimes, arguments, message):
    fake_daemon.handler.runtimes = runtimes
    env = {**cli_env(), "DOCKER_HOST": fake_daemon.url}
    done = subprocess.run([sys.executable, "-m", "elm.cli", "sandbox", "run", program(HELLO), "--runtime", "runsc",
                           *arguments], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr


def test_unreachable_docker_says_how_to_start_it(program):
    env = {**cli_env(), "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    done = subprocess.run([sys.executable, "-m", "elm.cli", "sandbox", "run", program(HELLO)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "cannot reach the Docker daemon" in done.stderr
    assert "scripts/install_docker.sh" in done.stderr and "sandbox.backend=local" in done.stderr


@pytest.mark.docker
def test_run_in_docker(program):
    done = run_elm("sandbox", "run", program(HELLO))
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "ok" and outcome["stdout"] == "hello from the sandbox\n"


@pytest.mark.docker
def test_build_says_the_image_is_up_to_date():
    done = run_elm("sandbox", "build")
    assert done.returncode == 0, done.stderr
    assert "base image elm-sandbox-base:bookworm: present, reused" in done.stdout
    assert f"image {default_image()}: up to date" in done.stdout


@pytest.mark.docker
@pytest.mark.slow
def test_bench_reports_three_rates_and_two_ratios():
    done = run_elm("bench", "sandbox", "--json", "--candidates", "20", "--fresh", "2", "--subprocesses", "4",
                   "--rounds", "1")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    for key in ("pool_per_s", "fresh_container_per_s", "subprocess_per_s"):
        assert figures[key] > 0
    assert figures["pool_vs_fresh_container"] == pytest.approx(
        figures["pool_per_s"] / figures["fresh_container_per_s"], rel=0.05)
    client = docker.from_env()
    try:  # the fresh containers, one per candidate, are gone with their candidates
        assert client.containers.list(all=True, filters={"label": "org.elm.sandbox=bench"}) == []
    finally:
        client.close()
