"""`elm serve`: a local web dashboard of running and finished runs.

    from elm.serve import Dashboard
    with Dashboard("runs") as dashboard:   # serves in a background thread
        print(dashboard.url)

The dashboard reads each run's store read-only and a little at a time (see
`elm.serve.watch`), so a run being written is watched without slowing it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from pathlib import Path

import uvicorn

from elm.errors import UserError
from elm.serve.app import create_app, is_run_folder

__all__ = ["Dashboard", "check_folder", "is_local_host"]

DEFAULT_PORT = 8765
DEFAULT_HOST = "127.0.0.1"


def check_folder(folder: str | Path) -> Path:
    """The folder to serve: a run folder or a folder that holds run folders."""
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"folder not found: {folder}")
    if is_run_folder(path) or any(p.is_dir() and is_run_folder(p) for p in path.iterdir()):
        return path
    raise UserError(f"{folder} is not a run folder and holds no run folders (none has a run.sqlite)")


def is_local_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Dashboard:
    """The dashboard's server on its own listening socket. `serve_forever` blocks (the
    command line); `start` runs it in a background thread until `stop` (tests, notebooks)."""

    def __init__(self, folder: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.folder = check_folder(folder)
        self._socket = _listen(host, port)
        bound_host, bound_port = self._socket.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}/"
        config = uvicorn.Config(create_app(self.folder), log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def start(self) -> Dashboard:
        self._thread = threading.Thread(target=self.serve_forever, name="elm-serve", daemon=True)
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            self._thread.join(0.02)
        if not self._server.started:
            raise RuntimeError("the dashboard server did not start")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except (OSError, OverflowError) as error:
        listener.close()
        raise UserError(f"cannot listen on {host}:{port}: {getattr(error, 'strerror', None) or error}") from None
    return listener
