"""The Docker backend: a warm pool of locked-down containers, each running the runner.

Every container runs `sandbox/runner/` as PID 1 with no network, a read-only root, a
small tmpfs at /scratch (the only writable place), memory with swap equal to memory, a
CPU quota, a pids limit, every capability dropped, no-new-privileges, a non-root user,
an IPC namespace and a cgroup namespace of its own and a neutral hostname.

The host and the runner speak one JSON line each way per job, over one of two transports
(`sandbox.transport`):

- `socket` (the default where the Docker daemon is local): the host listens on a unix
  socket in a private folder, bind-mounts it into the container, and the runner connects
  to it once at start. Jobs then travel straight between the two processes, not through
  the daemon. The host accepts exactly one connection, from the container's own PID 1
  (checked by the peer's credentials), then removes the socket, so no candidate can
  connect to it later.
- `attach` (the default for a remote daemon, where a host folder cannot be mounted):
  the container's attached stdin/stdout, relayed by the daemon.

Either way the container's stderr is attached and kept as a short tail for diagnosing a
dead container.

The container runtime (`sandbox.runtime`) is runc, Docker's default, or runsc: gVisor,
a kernel of its own between the candidate and the host's (`bash scripts/setup.sh
--gvisor` installs and registers it). gVisor refuses to mount the host's socket, so under
runsc `auto` means attach (said once, as a warning) and `socket` is refused. Its sentry
and its ptrace stubs are host tasks of the container, many per candidate process, and it
keeps a copy of memory per forked process far larger than runc's. So under runsc the
container's pids and memory limits make room for gVisor's own share (host_pids_limit,
runtime_memory_mb), a pool that could claim too much of the host's tasks is refused
(check_host_tasks), and the runner limits candidates to `sandbox.pids_limit` processes
itself (RLIMIT_NPROC, which gVisor enforces). gVisor mounts a writable tmpfs at /tmp
unless told otherwise: under runsc /tmp is an empty read-only tmpfs. gVisor lets a
process open /proc/<pid>/fd/* of every process of its own uid: under runsc the runner's
container starts as root with only CAP_SETUID and CAP_SETGID, and the runner takes a uid
of its own (splits_users).

Containers are labelled with their owner (host and process), so what a crashed run left
behind is removed the next time a sandbox opens, and nothing else is ever touched.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
from docker.types import LogConfig, Mount

from elm.sandbox import SandboxUnavailable
from elm.sandbox.image import check_image
from elm.sandbox.leftovers import owned_folder, process_exists, remove_abandoned_folders, remove_folder
from elm.sandbox.pool import (
    SEND_TIMEOUT_S,
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
RUNNER_UID = 10000  # under runsc: the runner's real and saved uid, which no candidate has
STARTING_USER = "0:0"  # under runsc the runner starts as root with only these two capabilities
STARTING_CAPABILITIES = ["SETUID", "SETGID"]  # and gives them up before it reads a request
SANDBOX_HOSTNAME = "sandbox"
RUNNER_MEMORY_MB = 128  # the runner's interpreter and numpy, beside the candidate's budget
DEFAULT_RECONNECT_S = 30.0
READY_TIMEOUT_S = 60.0
API_TIMEOUT_S = 60
LAUNCH_TRIES = 3
STDERR_TAIL_BYTES = 4096
STDERR_WAIT_S = 1.0  # for a dead runner's last words
RUNNER_SOCKET = "/run/elm/runner.sock"  # where the runner finds the host's socket
SOCKET_FOLDER_PREFIX = "elm-runner-socket-"  # then a random part; the owner's pid is in a file inside
LOCAL_DAEMON_URL = "http+docker://localhost"  # the docker SDK's name for a unix-socket daemon
GVISOR_SETUP = "install and register gVisor with `bash scripts/setup.sh --gvisor`"
RUNSC_BASE_PIDS = 64  # host tasks of an idle gVisor container (measured: 38)
RUNSC_SENTRY_THREADS = 64  # sentry threads beyond one per busy process (measured: 33 to 50)
RUNSC_MEMORY_PER_PROCESS_MB = 24  # gVisor's memory per forked Python process (measured: about 18)
HOST_TASK_SHARE = 0.5  # the most of the host's pid and thread limits a runsc pool may claim
_log = logging.getLogger(__name__)
_said: set[str] = set()  # notes given once per process
HOW_TO_START = (
    "start it with `sudo scripts/install_docker.sh` (or `sudo systemctl start docker`), "
    "or choose the local backend explicitly with sandbox.backend=local (no container isolation)"
)


class DockerSandbox(PooledSandbox):
    """`Sandbox` over a warm pool of containers."""

    def __init__(
        self,
        config: SandboxConfig,
        reconnect_s: float = DEFAULT_RECONNECT_S,
    ) -> None:
        client = connect()
        try:
            check_runtime(client, config.runtime)
            check_host_tasks(client, config)
            check_image(client, config.image)
        except SandboxUnavailable:
            client.close()
            raise
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._launcher = _ContainerLauncher(client, config, self.owner)
        self._launcher.remove_abandoned()
        self._pool = RunnerPool(self._launcher, config, reconnect_s)
        self._pool.warm_up()


def start_container(api: Any, config: SandboxConfig, labels: dict[str, str], streams: dict[str, int],
                    runs_the_runner: bool = False, **options: Any) -> tuple[str, Any]:
    """Create a locked-down sandbox container (`options` go to create_container), attach
    the given streams and start it: its id and the attached socket. `runs_the_runner`:
    the container's command is the image's runner (which may start as root, see
    splits_users); any other command runs as the sandbox user."""
    starts_as_root = runs_the_runner and splits_users(config)
    created = api.create_container(
        config.image,
        user=STARTING_USER if starts_as_root else SANDBOX_USER,
        network_disabled=True,
        labels=labels,
        hostname=SANDBOX_HOSTNAME,  # not the container's id
        stop_timeout=1,
        host_config=_locked_down(api, config, options.pop("mounts", None), starts_as_root),
        **options,
    )
    container_id = created["Id"]
    attached = api.attach_socket(container_id, params={**streams, "stream": 1})
    api.start(container_id)
    return container_id, attached


def _locked_down(api: Any, config: SandboxConfig, mounts: list[Any] | None, starts_as_root: bool) -> Any:
    """The host config of every sandbox container (see the module docstring)."""
    memory = f"{config.memory_mb + config.scratch_mb + RUNNER_MEMORY_MB + runtime_memory_mb(config)}m"
    scratch = f"rw,nosuid,nodev,noexec,size={config.scratch_mb}m,uid=10001,gid=10001,mode=0700"
    return api.create_host_config(
        network_mode="none",
        read_only=True,
        tmpfs=_tmpfs(config, scratch),
        ipc_mode="none",
        cgroupns="private",  # the container's cgroup paths read "/", not the container's id
        mem_limit=memory,
        memswap_limit=memory,
        nano_cpus=int(config.cpus * 1e9),
        pids_limit=host_pids_limit(config),
        cap_drop=["ALL"],
        cap_add=STARTING_CAPABILITIES if starts_as_root else None,
        security_opt=["no-new-privileges"],
        log_config=LogConfig(type="none"),
        mounts=mounts,
        runtime=config.runtime,
    )


def check_runtime(client: Any, runtime: str) -> None:
    """SandboxUnavailable unless the daemon knows the container runtime `runtime`."""
    try:
        known = client.info().get("Runtimes") or {}
    except (docker.errors.DockerException, OSError) as problem:
        raise SandboxUnavailable(f"cannot ask the Docker daemon for its runtimes: {_first_line(problem)}") from None
    if runtime not in known:
        how = GVISOR_SETUP if runtime == "runsc" else "register it in the Docker daemon's daemon.json"
        raise SandboxUnavailable(
            f"the Docker daemon has no container runtime {runtime!r} (it has {', '.join(sorted(known))}): {how}"
        )


def _tmpfs(config: SandboxConfig, scratch: str) -> dict[str, str]:
    """The scratch folder; under runsc also an empty read-only /tmp, since gVisor would
    otherwise mount a writable tmpfs there that outlives every job."""
    if config.runtime == "runsc":
        return {"/scratch": scratch, "/tmp": "ro,nosuid,nodev,noexec,size=4k"}
    return {"/scratch": scratch}


def host_pids_limit(config: SandboxConfig) -> int:
    """The container's pids limit: `sandbox.pids_limit`, or under runsc room for gVisor's
    own host tasks (the runner then holds candidates to `sandbox.pids_limit`). gVisor's
    ptrace platform gives each process inside a host stub thread for every sentry thread
    that has run it, and the sentry grows about one thread per busy process, so P busy
    processes come to about P * (P + RUNSC_SENTRY_THREADS) host tasks (fork bombs held
    for 45 to 60 s, measured: 785 for 16 processes, 2,467 for 32, 6,982 for 64)."""
    if config.runtime == "runsc":
        return RUNSC_BASE_PIDS + config.pids_limit * (config.pids_limit + RUNSC_SENTRY_THREADS)
    return config.pids_limit


def runtime_memory_mb(config: SandboxConfig) -> int:
    """Memory the runtime itself takes per container beyond runc's: under runsc, gVisor's
    copy of each forked process (it copies memory after a fork in 2 MiB pieces, about
    18 MB per Python process against 1 MB under runc) for `sandbox.pids_limit` processes.
    Each candidate process stays held to `memory_mb` by its own address-space limit."""
    return RUNSC_MEMORY_PER_PROCESS_MB * config.pids_limit if config.runtime == "runsc" else 0


def check_host_tasks(client: Any, config: SandboxConfig) -> None:
    """SandboxUnavailable if a runsc pool on the local Docker host could claim more than
    HOST_TASK_SHARE of the host's process ids or threads (host_pids_limit per container),
    which would let hostile candidates starve the host of tasks. Not checked for a remote
    daemon, whose limits this machine cannot read."""
    if config.runtime != "runsc" or client.api.base_url != LOCAL_DAEMON_URL:
        return
    claimed = config.pool_size * host_pids_limit(config)
    raising = {"pid_max": "bash scripts/setup.sh --gvisor raises it",
               "threads-max": "sysctl -w kernel.threads-max=N raises it"}
    for name, how in raising.items():
        try:
            host_limit = int(Path(f"/proc/sys/kernel/{name}").read_text())
        except (OSError, ValueError):
            continue
        if claimed > HOST_TASK_SHARE * host_limit:
            raise SandboxUnavailable(
                f"under runtime runsc, {config.pool_size} containers may hold up to {claimed} host tasks "
                f"(gVisor's ptrace platform: about pids_limit * (pids_limit + {RUNSC_SENTRY_THREADS}) each), "
                f"more than {HOST_TASK_SHARE:.0%} of this host's kernel.{name} {host_limit}: "
                f"lower sandbox.pids_limit or sandbox.pool_size ({how})"
            )


def splits_users(config: SandboxConfig) -> bool:
    """Whether the runner and its candidates run under different uids: under runsc, where
    gVisor (2022) lets a process open /proc/<pid>/fd/* of any process of its own uid, dumpable
    or not. The runner starts as root, keeps RUNNER_UID as its real and saved uid and acts
    as the sandbox user; candidates are the sandbox user alone, so the runner's protocol
    streams (owned by root, mode 0600) and signals are out of their reach."""
    return config.runtime == "runsc"


def runner_arguments(config: SandboxConfig) -> list[str]:
    """Arguments for the runner in the image (after its --scratch)."""
    arguments = ["--max-user-processes", str(config.pids_limit)] if config.runtime == "runsc" else []
    if splits_users(config):
        arguments += ["--runner-uid", str(RUNNER_UID), "--candidate-user", SANDBOX_USER]
    return arguments


def choose_transport(wanted: str, client: Any, runtime: str = "runc") -> str:
    """`socket` or `attach`: `auto` means socket where the daemon is local (a unix socket:
    it can bind-mount a folder of this machine) and attach where it is remote or the
    runtime is runsc (gVisor cannot mount a socket)."""
    if runtime == "runsc":
        if wanted == "socket":
            raise SandboxUnavailable(
                "sandbox.transport=socket cannot work under runtime runsc (gVisor refuses to mount "
                "the host's socket): use sandbox.transport=attach or auto"
            )
        if wanted == "auto" and "runsc attach" not in _said:
            _said.add("runsc attach")
            _log.warning("sandbox: runtime runsc cannot mount the host's socket; using the attach transport")
        return "attach"
    if wanted != "auto":
        return wanted
    return "socket" if client.api.base_url == LOCAL_DAEMON_URL else "attach"


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

    def __init__(self, client: Any, config: SandboxConfig, owner: str) -> None:
        self.client = client
        self.api = client.api
        self.config = config
        self.owner = owner
        self.transport = choose_transport(config.transport, client, config.runtime)

    def launch(self) -> _ContainerChannel:
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
            except BaseException:
                channel.close()
                raise
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
            return owner_host == host and pid.isdigit() and not process_exists(int(pid))

        self._remove_where(abandoned, label=SANDBOX_LABEL)
        remove_abandoned_folders(SOCKET_FOLDER_PREFIX)

    def close(self) -> None:
        self._remove_where(lambda container: True)
        try:
            self.client.close()
        except Exception:
            pass

    def _start_container(self) -> _ContainerChannel:
        if self.transport == "socket":
            return self._start_socket_container()
        container_id, attached = self._create_and_start(
            command=runner_arguments(self.config) or None,
            stdin_open=True,  # with detach=False: StdinOnce, so a vanished host ends the runner
            streams={"stdin": 1, "stdout": 1, "stderr": 1},
        )
        return _AttachedChannel(self, container_id, attached)

    def _start_socket_container(self) -> _ContainerChannel:
        listener = _RunnerSocket()
        try:
            container_id, attached = self._create_and_start(
                command=["--connect", RUNNER_SOCKET, *runner_arguments(self.config)],
                mounts=[Mount(RUNNER_SOCKET, listener.path, type="bind", read_only=True)],
                streams={"stderr": 1},
            )
        except BaseException:
            listener.close()
            raise
        return _SocketChannel(self, container_id, attached, listener)

    def _create_and_start(self, streams: dict[str, int], **options: Any) -> tuple[str, Any]:
        """Create, attach the given streams, start: the container's id and attached socket."""
        labels = {SANDBOX_LABEL: "runner", OWNER_LABEL: self.owner}
        try:
            return start_container(self.api, self.config, labels, streams, runs_the_runner=True, **options)
        except docker.errors.APIError as problem:
            if not self.reachable():
                raise BackendLost(str(problem)) from None
            raise SandboxUnavailable(f"cannot start a sandbox container: {_first_line(problem)}") from None
        except OSError as problem:
            raise BackendLost(str(problem)) from None

    def runner_pid(self, container_id: str) -> int:
        """The host pid of the container's PID 1 (0 once it has stopped)."""
        try:
            return int(self.api.inspect_container(container_id)["State"]["Pid"])
        except docker.errors.NotFound:
            return 0
        except (docker.errors.APIError, OSError) as problem:
            if not self.reachable():
                raise BackendLost(str(problem)) from None
            return 0

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
    """One runner container: lines to and from its runner, its stderr tail, its removal.
    The subclasses say where the runner's lines come from (`_read_more`)."""

    def __init__(self, launcher: _ContainerLauncher, container_id: str, attached: Any) -> None:
        self._launcher = launcher
        self.container_id = container_id
        self._attached = attached  # keeps the HTTP response (and so the socket) alive
        self._attached_socket: socket.socket = getattr(attached, "_sock", attached)
        self._frames = bytearray()  # Docker's multiplexed stream, not yet decoded
        self._stdout = bytearray()
        self._stderr_tail = bytearray()

    def _connection(self) -> socket.socket:
        """The socket that carries the protocol."""
        raise NotImplementedError

    def _read_more(self, deadline: float) -> None:
        """Add at least one more chunk of the runner's output to self._stdout."""
        raise NotImplementedError

    def alive(self) -> bool:
        if self._stdout:
            return True  # unread output: not a clean state, but the runner is there
        connection = self._connection()
        readable, _, _ = select.select([connection], [], [], 0)
        if not readable:
            return True
        try:
            return bool(connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return True
        except OSError:
            return False

    def send(self, data: bytes, timeout: float) -> None:
        try:
            connection = self._connection()
            connection.settimeout(timeout)
            connection.sendall(data)
        except TimeoutError:
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
            self._read_more(deadline)

    def death(self) -> RunnerDeath:
        self._collect_stderr()
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
        _close_socket(self._attached_socket)
        _remove_quietly(self._launcher.api, self.container_id)

    def _collect_stderr(self) -> None:
        """What the dead runner's stream still holds (its last words are on stderr)."""

    def _receive_frames(self, deadline: float) -> None:
        """Read the attached stream until at least one more frame is decoded."""
        while not self._decode_frames():
            self._frames += _receive(self._attached_socket, deadline)

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


class _AttachedChannel(_ContainerChannel):
    """The protocol over the container's attached stdin/stdout, relayed by the daemon."""

    def _connection(self) -> socket.socket:
        return self._attached_socket

    def _read_more(self, deadline: float) -> None:
        self._receive_frames(deadline)


class _SocketChannel(_ContainerChannel):
    """The protocol over a unix socket that the runner connected to (see the module
    docstring); the attached stream carries only the runner's stderr."""

    def __init__(self, launcher: _ContainerLauncher, container_id: str, attached: Any,
                 listener: _RunnerSocket) -> None:
        super().__init__(launcher, container_id, attached)
        self._listener: _RunnerSocket | None = listener
        self._socket: socket.socket | None = None

    def _connection(self) -> socket.socket:
        if self._socket is None:
            self._accept(time.monotonic() + SEND_TIMEOUT_S)
        return self._socket  # type: ignore[return-value]

    def _read_more(self, deadline: float) -> None:
        if self._socket is None:
            self._accept(deadline)
        self._stdout += _receive(self._socket, deadline)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._socket is not None:
            _close_socket(self._socket)
        if self._listener is not None:
            self._listener.close()
        super().close()

    def _collect_stderr(self) -> None:
        deadline = time.monotonic() + STDERR_WAIT_S
        try:
            while True:
                self._receive_frames(deadline)
        except (RunnerLost, RunnerWedged):
            pass

    def _accept(self, deadline: float) -> None:
        """Take the runner's connection; RunnerLost if the container ends first."""
        assert self._listener is not None
        while self._socket is None:
            readable = _wait_readable([self._listener.socket, self._attached_socket], deadline)
            if self._attached_socket in readable:
                self._receive_frames(deadline)  # stderr, or RunnerLost at its end
            if self._listener.socket in readable:
                self._socket = self._checked_peer(self._listener.accept())
        self._listener.close()
        self._listener = None

    def _checked_peer(self, connection: socket.socket) -> socket.socket:
        peer_pid = _peer_pid(connection)
        runner_pid = self._launcher.runner_pid(self.container_id)
        if peer_pid != runner_pid:
            _close_socket(connection)
            raise SandboxUnavailable(
                f"process {peer_pid}, not the runner of container {self.container_id[:12]} "
                f"(pid {runner_pid}), connected to its sandbox socket; if the Docker daemon runs "
                "in another pid namespace, use sandbox.transport=attach"
            )
        return connection


class _RunnerSocket:
    """A listening unix socket in a private folder of its own, removed once used."""

    def __init__(self) -> None:
        # Mode 0700: no one else gets in. Its path is the mount's source, which a candidate
        # reads in /proc/self/mountinfo: the owner's pid goes in a file, not in the name.
        self._folder = owned_folder(SOCKET_FOLDER_PREFIX, owner_in_name=False)
        self.path = str(self._folder / "runner.sock")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.socket.bind(self.path)
            os.chmod(self.path, 0o666)  # the container's user, whatever its uid, may connect
            self.socket.listen(1)
        except OSError:
            self.close()
            raise

    def accept(self) -> socket.socket:
        connection, _ = self.socket.accept()
        connection.setblocking(True)
        return connection

    def close(self) -> None:
        self.socket.close()
        remove_folder(self._folder)


def _peer_pid(connection: socket.socket) -> int:
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[0]


def _wait_readable(sockets: list[socket.socket], deadline: float) -> list[socket.socket]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RunnerWedged("no answer in time")
    readable, _, _ = select.select(sockets, [], [], remaining)
    if not readable:
        raise RunnerWedged("no answer in time")
    return readable


def _receive(connection: socket.socket, deadline: float) -> bytes:
    """One chunk; RunnerWedged at the deadline, RunnerLost at the end of the stream."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RunnerWedged("no answer in time")
    try:
        connection.settimeout(remaining)
        chunk = connection.recv(262144)
    except TimeoutError:
        raise RunnerWedged("no answer in time") from None
    except OSError as problem:
        raise RunnerLost(str(problem)) from None
    if not chunk:
        raise RunnerLost("end of stream")
    return chunk


def _close_socket(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)  # close() alone waits for the HTTP layer's refs
    except OSError:
        pass
    connection.close()


def _remove_quietly(api: Any, container_id: str) -> None:
    try:
        api.remove_container(container_id, force=True)
    except (docker.errors.DockerException, OSError):
        pass


def _first_line(problem: BaseException) -> str:
    explanation = getattr(problem, "explanation", None)
    text = str(explanation or problem).strip()
    return text.splitlines()[0] if text else type(problem).__name__
