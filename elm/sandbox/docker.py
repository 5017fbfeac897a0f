"""The Docker backend: a warm pool of locked-down containers, each running runner.py.

Every container runs `sandbox/runner.py` as PID 1 with no network, a read-only root, a
small tmpfs at /scratch (the only writable place), memory with swap equal to memory, a
CPU quota, a pids limit, every capability dropped, no-new-privileges and a non-root
user. The host talks to the runner over the container's attached stdin/stdout (one JSON
line each way per job); stderr is kept as a short tail for diagnosing a dead container.

Containers are labelled with their owner (host and process), so what a crashed run left
behind is removed the next time a sandbox opens, and nothing else is ever touched.
"""

from __future__ import annotations

import os
import select
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import docker
from docker.types import LogConfig

from elm.sandbox import SandboxUnavailable
from elm.sandbox.image import check_image
from elm.sandbox.pool import (
    BackendLost,
    PooledSandbox,
    RunnerDeath,
    RunnerLost,
    RunnerPool,
    RunnerWedged,
)
from elm.sandbox.protocol import ProtocolError, check_ready

if TYPE_CHECKING:
    from elm.config import SandboxConfig

SANDBOX_LABEL = "org.elm.sandbox"
OWNER_LABEL = "org.elm.sandbox.owner"
SANDBOX_USER = "10001:10001"
RUNNER_MEMORY_MB = 128  # the runner's interpreter and numpy, beside the candidate's budget
DEFAULT_RECONNECT_S = 30.0
READY_TIMEOUT_S = 60.0
API_TIMEOUT_S = 60
LAUNCH_TRIES = 3
STDERR_TAIL_BYTES = 4096
HOW_TO_START = (
    "start it with `sudo scripts/install_docker.sh` (or `sudo systemctl start docker`), "
    "or choose the local backend explicitly with sandbox.backend=local (no container isolation)"
)


class DockerSandbox(PooledSandbox):
    """`Sandbox` over a warm pool of containers (`reuse_containers=False`: one per job)."""

    def __init__(
        self,
        config: "SandboxConfig",
        reconnect_s: float = DEFAULT_RECONNECT_S,
        reuse_containers: bool = True,
    ) -> None:
        client = connect()
        try:
            check_image(client, config.image)
        except SandboxUnavailable:
            client.close()
            raise
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._launcher = _ContainerLauncher(client, config, self.owner)
        self._launcher.remove_abandoned()
        self._pool = RunnerPool(self._launcher, config, reconnect_s, reuse_runners=reuse_containers)
        if reuse_containers:
            self._pool.warm_up()

    def container_ids(self) -> list[str]:
        """Ids of the pool's started containers, in slot order."""
        return [channel.container_id for channel in self._pool.channels()]  # type: ignore[attr-defined]



def connect() -> Any:
    """A Docker client that has answered a ping; SandboxUnavailable says how to start one."""
    try:
        client = docker.from_env(timeout=API_TIMEOUT_S)
        client.ping()
    except (docker.errors.DockerException, OSError) as problem:
        raise SandboxUnavailable(f"cannot reach the Docker daemon ({_first_line(problem)}): {HOW_TO_START}") from None
    return client


class _ContainerLauncher:
    """Creates, attaches and starts locked-down runner containers."""

    def __init__(self, client: Any, config: "SandboxConfig", owner: str) -> None:
        self.client = client
        self.api = client.api
        self.config = config
        self.owner = owner

    def launch(self) -> "_ContainerChannel":
        failure = "no attempt"
        for _ in range(LAUNCH_TRIES):
            channel = self._start_container()
            try:
                check_ready(channel.receive_line(READY_TIMEOUT_S, 65536))
                return channel
            except ProtocolError as problem:
                channel.close()
                raise SandboxUnavailable(
                    f"{self.config.image} does not run a compatible runner ({problem}): "
                    "refresh it with `elm sandbox build`"
                ) from None
            except RunnerWedged:
                failure = f"no greeting within {READY_TIMEOUT_S:.0f} s"
                channel.close()
            except RunnerLost:
                try:
                    failure = channel.death().description  # BackendLost goes up from here
                finally:
                    channel.close()
        raise SandboxUnavailable(f"sandbox containers from {self.config.image} do not start their runner: {failure}")

    def reachable(self) -> bool:
        try:
            return bool(self.client.ping())
        except (docker.errors.DockerException, OSError):
            return False

    def unavailable_message(self, waited_s: float) -> str:
        lost = "cannot reach the Docker daemon"
        if waited_s:
            lost = f"lost the Docker daemon and it did not come back within {waited_s:.0f} s"
        return f"{lost}: {HOW_TO_START}; the run stopped cleanly and can be resumed"

    def after_reconnect(self) -> None:
        self._remove_where(lambda container: container.status != "running")

    def remove_abandoned(self) -> None:
        """Remove sandbox containers left by processes of this host that are gone."""
        host = socket.gethostname()

        def abandoned(container: Any) -> bool:
            owner_host, _, rest = container.labels.get(OWNER_LABEL, "").partition(":")
            pid = rest.partition(":")[0]
            return owner_host == host and pid.isdigit() and not _process_exists(int(pid))

        self._remove_where(abandoned, label=SANDBOX_LABEL)

    def close(self) -> None:
        self._remove_where(lambda container: True)
        try:
            self.client.close()
        except Exception:
            pass

    def _start_container(self) -> "_ContainerChannel":
        try:
            created = self.api.create_container(
                self.config.image,
                user=SANDBOX_USER,
                stdin_open=True,  # with detach=False: StdinOnce, so a vanished host ends the runner
                network_disabled=True,
                labels={SANDBOX_LABEL: "runner", OWNER_LABEL: self.owner},
                stop_timeout=1,
                host_config=self._host_config(),
            )
            container_id = created["Id"]
            attached = self.api.attach_socket(
                container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            self.api.start(container_id)
        except docker.errors.APIError as problem:
            if not self.reachable():
                raise BackendLost(str(problem)) from None
            raise SandboxUnavailable(f"cannot start a sandbox container: {_first_line(problem)}") from None
        except OSError as problem:
            raise BackendLost(str(problem)) from None
        return _ContainerChannel(self, container_id, attached)

    def _host_config(self) -> Any:
        config = self.config
        memory = f"{config.memory_mb + config.scratch_mb + RUNNER_MEMORY_MB}m"
        scratch = f"rw,nosuid,nodev,noexec,size={config.scratch_mb}m,uid=10001,gid=10001,mode=0700"
        return self.api.create_host_config(
            network_mode="none",
            read_only=True,
            tmpfs={"/scratch": scratch},
            ipc_mode="none",
            mem_limit=memory,
            memswap_limit=memory,
            nano_cpus=int(config.cpus * 1e9),
            pids_limit=config.pids_limit,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            log_config=LogConfig(type="none"),
        )

    def _owned(self) -> list[Any]:
        try:
            return self.client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={self.owner}"})
        except (docker.errors.DockerException, OSError):
            return []

    def _remove_where(self, wanted: Any, label: str | None = None) -> None:
        try:
            if label is None:
                containers = self._owned()
            else:
                containers = self.client.containers.list(all=True, filters={"label": label})
            for container in containers:
                if wanted(container):
                    _remove_quietly(self.api, container.id)
        except (docker.errors.DockerException, OSError):
            pass


class _ContainerChannel:
    """The attached stdin/stdout of one runner container (Docker's multiplexed stream)."""

    def __init__(self, launcher: _ContainerLauncher, container_id: str, attached: Any) -> None:
        self._launcher = launcher
        self.container_id = container_id
        self._attached = attached  # keeps the HTTP response (and so the socket) alive
        self._socket: socket.socket = getattr(attached, "_sock", attached)
        self._frames = bytearray()
        self._stdout = bytearray()
        self._stderr_tail = bytearray()

    def alive(self) -> bool:
        if self._stdout:
            return True  # unread output: not a clean state, but the runner is there
        readable, _, _ = select.select([self._socket], [], [], 0)
        if not readable:
            return True
        try:
            return bool(self._socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return True
        except OSError:
            return False

    def send(self, data: bytes, timeout: float) -> None:
        try:
            self._socket.settimeout(timeout)
            self._socket.sendall(data)
        except socket.timeout:
            raise RunnerWedged("sending the job timed out") from None
        except OSError as problem:
            raise RunnerLost(str(problem)) from None

    def receive_line(self, timeout: float, limit: int) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            end = self._stdout.find(b"\n")
            if end >= 0:
                line = bytes(self._stdout[:end])
                del self._stdout[: end + 1]
                return line
            if len(self._stdout) > limit:
                raise ProtocolError(f"answer longer than {limit} bytes")
            self._read_frames(deadline)

    def death(self) -> RunnerDeath:
        stderr = self._stderr_tail.decode("utf-8", "replace").strip().splitlines()[-3:]
        try:
            state = self._launcher.api.inspect_container(self.container_id)["State"]
        except docker.errors.NotFound:
            return RunnerDeath(f"container {self.container_id[:12]} disappeared")
        except docker.errors.APIError as problem:
            if not self._launcher.reachable():
                raise BackendLost(str(problem)) from None
            return RunnerDeath(f"container {self.container_id[:12]}: {_first_line(problem)}")
        except OSError as problem:
            raise BackendLost(str(problem)) from None
        if state.get("Running"):
            _remove_quietly(self._launcher.api, self.container_id)
            return RunnerDeath(f"container {self.container_id[:12]} closed its output while running")
        description = f"container {self.container_id[:12]} exited with code {state.get('ExitCode')}"
        if stderr:
            description += ": " + " | ".join(stderr)
        return RunnerDeath(description, out_of_memory=bool(state.get("OOMKilled")))

    def close(self) -> None:
        try:
            self._socket.shutdown(socket.SHUT_RDWR)  # close() alone waits for the HTTP layer's refs
            self._socket.close()
        except OSError:
            pass
        _remove_quietly(self._launcher.api, self.container_id)

    def _read_frames(self, deadline: float) -> None:
        """Read from the socket until at least one more frame is decoded."""
        while True:
            if self._decode_frames():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunnerWedged("no answer in time")
            try:
                self._socket.settimeout(remaining)
                chunk = self._socket.recv(262144)
            except socket.timeout:
                raise RunnerWedged("no answer in time") from None
            except OSError as problem:
                raise RunnerLost(str(problem)) from None
            if not chunk:
                raise RunnerLost("end of stream")
            self._frames += chunk

    def _decode_frames(self) -> bool:
        decoded = False
        while len(self._frames) >= 8:
            size = int.from_bytes(self._frames[4:8], "big")
            if len(self._frames) < 8 + size:
                break
            stream, payload = self._frames[0], bytes(self._frames[8 : 8 + size])
            del self._frames[: 8 + size]
            if stream == 2:
                self._stderr_tail = (self._stderr_tail + payload)[-STDERR_TAIL_BYTES:]
            else:
                self._stdout += payload
            decoded = True
        return decoded


def _remove_quietly(api: Any, container_id: str) -> None:
    try:
        api.remove_container(container_id, force=True)
    except (docker.errors.DockerException, OSError):
        pass


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _first_line(problem: BaseException) -> str:
    explanation = getattr(problem, "explanation", None)
    text = str(explanation or problem).strip()
    return text.splitlines()[0] if text else type(problem).__name__
