"""The dashboard's web application (Starlette): two pages, a JSON API they poll, and the
package's own scripts and styles. Nothing is fetched from anywhere else: the content
security policy allows the page to talk to this server only.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from elm.errors import UserError
from elm.serve.watch import RunWatch, legend_colors
from elm.store import STORE_FILE

_POLICY = ("default-src 'none'; connect-src 'self'; script-src 'self'; style-src 'self'; "
           "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": _POLICY, "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store"}


def is_run_folder(folder: Path) -> bool:
    return (folder / STORE_FILE).is_file()


class RunFolders:
    """The runs under the served folder: the folder itself when it is a run, otherwise each
    sub-folder holding a run store (looked for again on every request: runs appear)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.single = is_run_folder(folder)
        self._watches: dict[str, RunWatch] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        if self.single:
            return [self.folder.resolve().name]
        found = [p for p in self.folder.iterdir() if p.is_dir() and is_run_folder(p)]
        return sorted(p.name for p in found)

    def watch(self, name: str) -> RunWatch:
        with self._lock:
            if name in self._watches:
                return self._watches[name]
            if name not in self.names():
                raise LookupError(name)
            path = self.folder if self.single else self.folder / name
            watch = self._watches[name] = RunWatch(path)
            return watch

    def close(self) -> None:
        with self._lock:
            for watch in self._watches.values():
                watch.close()
            self._watches.clear()


def create_app(folder: Path) -> Starlette:
    runs = RunFolders(folder)
    legend_colors()  # imports matplotlib now, not while the first page waits

    def index(request: Request) -> Response:
        if runs.single:
            return _page("run.html", runs.names()[0], single=True)
        return _page("index.html", "")

    def run_page(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in runs.names():
            return HTMLResponse("<p>No such run.</p>", status_code=404, headers=_HEADERS)
        return _page("run.html", name)

    def api_runs(request: Request) -> Response:
        rows = []
        for name in runs.names():
            try:
                rows.append(runs.watch(name).overview())
            except UserError as error:  # a folder being created or a damaged store
                rows.append({"name": name, "problem": str(error)})
        return _json({"single": runs.single, "runs": rows})

    def api_live(request: Request) -> Response:
        return _with_run(request, lambda w: w.live(_int_param(request, "metrics_after"),
                                                   _int_param(request, "events_after")))

    def api_archive(request: Request) -> Response:
        return _with_run(request, lambda w: w.archive(_int_param(request, "snapshot")))

    def api_candidate(request: Request) -> Response:
        return _with_run(request, lambda w: w.candidate(request.path_params["candidate_id"]))

    def api_lineage(request: Request) -> Response:
        return _with_run(request, lambda w: w.lineage(request.path_params["candidate_id"]))

    def api_picture(request: Request) -> Response:
        return _with_run(request, lambda w: w.picture(request.path_params["candidate_id"]))

    def api_messages(request: Request) -> Response:
        return _with_run(request, lambda w: w.messages())

    def _with_run(request: Request, view: Callable[[RunWatch], Any]) -> Response:
        try:
            watch = runs.watch(request.path_params["name"])
            return _json(view(watch))
        except LookupError:
            return _json({"error": "no such run"}, status=404)
        except (UserError, ValueError) as error:
            return _json({"error": str(error)}, status=400)

    run = "/api/runs/{name}"
    routes = [
        Route("/", index),
        Route("/runs/{name}/", run_page),
        Route("/api/runs", api_runs),
        Route(f"{run}/live", api_live),
        Route(f"{run}/archive", api_archive),
        Route(f"{run}/candidates/{{candidate_id:int}}", api_candidate),
        Route(f"{run}/candidates/{{candidate_id:int}}/lineage", api_lineage),
        Route(f"{run}/candidates/{{candidate_id:int}}/picture", api_picture),
        Route(f"{run}/messages", api_messages),
        Mount("/static/report", app=StaticFiles(packages=[("elm.report", "static")])),
        Mount("/static", app=StaticFiles(packages=[("elm.serve", "static")])),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        runs.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runs = runs
    return app


def _page(template: str, run_name: str, single: bool = False) -> Response:
    text = (resources.files("elm.serve") / "static" / template).read_text(encoding="utf-8")
    page = text.replace("{{single}}", " data-single" if single else "")
    page = page.replace("{{run}}", escape(run_name, quote=True))
    return HTMLResponse(page, headers=_HEADERS)


def _json(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status, headers=_HEADERS)


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
