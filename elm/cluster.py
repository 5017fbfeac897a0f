"""The Ray cluster that diff workers and node evaluators run on.

`join_cluster(config)` connects this process to the cluster named by `ray.address`, or
starts a local Ray when there is none, and `leave_cluster()` undoes it. Several users in
one process (the mutator and the distributed sandbox) share one connection: the last to
leave shuts it down, and only if this process connected it. `check_worker_resources`
refuses a worker shape the cluster cannot place, before any actor waits forever for it.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from elm.errors import UserError

if TYPE_CHECKING:
    from elm.config import ElmConfig, WorkersConfig

_users = 0
_connected_here = False
# The line of a Ray error that names the underlying exception, e.g. "ModuleNotFoundError: ...".
_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Exit|Interrupt)\b:? ?.*$")


class ClusterError(UserError):
    """The Ray cluster cannot be reached or cannot place the configured workers."""


class NoGpuError(ClusterError):
    """GPUs were asked for on a cluster that has none."""


def join_cluster(config: ElmConfig) -> None:
    """Connect to `ray.address`, or start a local Ray sized for the configured workers."""
    global _users, _connected_here
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if not ray.is_initialized():
        _connect(config)
        _connected_here = True
    _users += 1


def leave_cluster() -> None:
    """Release one user's hold; the last one out disconnects (and stops a local Ray)."""
    global _users, _connected_here
    import ray

    _users = max(_users - 1, 0)
    if _users == 0 and _connected_here:
        _connected_here = False
        if ray.is_initialized():
            ray.shutdown()


def check_worker_resources(workers: WorkersConfig) -> None:
    """One clear line when the cluster lacks the GPUs or CPUs the workers ask for."""
    import ray

    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0.0)
    if workers.num_gpus > 0 and gpus == 0:
        raise NoGpuError(
            f"workers.num_gpus={workers.num_gpus:g} but the Ray cluster has no GPU; "
            "run on CPU with workers.num_gpus=0 (and mutation.device=cpu)"
        )
    needed_gpus = workers.num_actors * workers.num_gpus
    if needed_gpus > gpus + 1e-9 and workers.num_gpus > 0:
        raise ClusterError(
            f"workers.num_actors={workers.num_actors} x workers.num_gpus={workers.num_gpus:g} needs "
            f"{needed_gpus:g} GPUs but the Ray cluster has {gpus:g}; lower workers.num_actors or "
            "share GPUs with a fractional workers.num_gpus (e.g. 0.5)"
        )
    cpus = resources.get("CPU", 0.0)
    needed_cpus = workers.num_actors * workers.num_cpus
    if needed_cpus > cpus + 1e-9:
        raise ClusterError(
            f"workers.num_actors={workers.num_actors} x workers.num_cpus={workers.num_cpus:g} needs "
            f"{needed_cpus:g} CPUs but the Ray cluster has {cpus:g}; lower workers.num_actors or workers.num_cpus"
        )


def _connect(config: ElmConfig) -> None:
    import ray

    address = config.ray.address or None
    options: dict = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    local = address is None and not os.environ.get("RAY_ADDRESS")
    if local:
        options["num_cpus"] = _local_cpus(config.workers)
        options["runtime_env"] = {"env_vars": {"PYTHONPATH": _worker_python_path()}}
    try:
        # "local": a Ray of this process's own, even where another is running on the machine
        # (a bare ray.init() would join that one; `ray.address: auto` asks for that)
        ray.init(address="local" if local else address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ClusterError(
            f"cannot connect to {where}: {reason} (start a cluster with `ray start --head`, "
            "or leave ray.address unset to run a local Ray)"
        ) from None


def error_reason(error: BaseException) -> str:
    """One line saying why a Ray call failed: the underlying exception where Ray names
    one (an actor's traceback ends with it), else the error's first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    causes = [line for line in lines[1:] if _EXCEPTION_LINE.match(line)]
    if causes:
        return causes[-1]
    return lines[0] if lines else type(error).__name__


def _worker_python_path() -> str:
    """Local workers import the same `elm` as this process, installed or not."""
    package_parent = str(Path(__file__).resolve().parent.parent)
    inherited = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(part for part in (package_parent, inherited) if part)


def _local_cpus(workers: WorkersConfig) -> int:
    """A local Ray gets this machine's cores, and at least what the workers reserve, so
    the actors are placed even when they ask for more CPUs than there are cores."""
    return max(os.cpu_count() or 1, math.ceil(workers.num_actors * workers.num_cpus))
