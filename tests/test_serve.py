"""`elm serve`: the folder it accepts, the JSON API its pages poll, and the store's paged
reads behind it."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from elm.cli import main
from elm.report import open_run
from elm.serve import Dashboard
from elm.store import RunStore
from tests.conftest import REPO, cli_env, run_elm
from tests.test_report_support import (  # noqa: F401  (fixtures)
    TOY_3D,
    real_run,
    toy_run,
    write_toy_run,
)


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, json.loads(body) if error.headers.get_content_type() == "application/json" else {}


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory: pytest.TempPathFactory, toy_run: Path, real_run: Path) -> Path:
    """A folder of runs: a toy run, an `elm run` run, a 3-D one, and a folder that is no run."""
    folder = tmp_path_factory.mktemp("runs")
    shutil.copytree(toy_run, folder / "toy")
    shutil.copytree(real_run, folder / "real")
    write_toy_run(folder / "cube", environment=TOY_3D, iterations=4)
    (folder / "notes").mkdir()
    return folder


@pytest.fixture(scope="module")
def dashboard(runs_folder: Path):
    with Dashboard(runs_folder, port=0) as served:
        yield served


def test_runs_list_names_every_run_with_its_progress(dashboard: Dashboard, runs_folder: Path) -> None:
    status, data = get(dashboard.url + "api/runs")
    assert status == 200 and data["single"] is False
    rows = {row["name"]: row for row in data["runs"]}
    assert sorted(rows) == ["cube", "real", "toy"]
    for name, row in rows.items():
        store = RunStore.open(runs_folder / name, readonly=True)
        try:
            latest = store.metrics()[-1]
        finally:
            store.close()
        assert row["progress"] == f"iteration {latest.iteration} of {latest.iteration}"
        assert row["state"] == "finished"
        assert row["coverage"] == latest.coverage and row["qd_score"] == latest.qd_score
        assert row["max_fitness"] == latest.max_fitness and row["evals_per_s"] == latest.evals_per_s
    assert rows["real"]["environment"] == "tests.toy_environment:Toy"


@pytest.mark.parametrize("name", ["toy", "real"])
def test_live_view_matches_the_store(dashboard: Dashboard, runs_folder: Path, name: str) -> None:
    status, live = get(dashboard.url + f"api/runs/{name}/live")
    assert status == 200
    store = RunStore.open(runs_folder / name, readonly=True)
    try:
        metrics = store.metrics()
        assert [m["iteration"] for m in live["metrics"]] == [m.iteration for m in metrics]
        assert live["candidates"] == sum(1 for _ in store.candidates())
        assert live["statuses"] == store.status_counts()
        assert live["snapshots"] == store.snapshot_iterations()
        assert len(live["events"]) == len(store.events())
        # The funnel counts the children; the seeds of iteration 0 are shown apart, as in inspect.
        with open_run(runs_folder / name) as run:
            assert live["funnel"] == run.funnel() and live["seed_funnel"] == run.funnel(seeds=True)
        seeds = [c for c in store.candidates() if c.iteration == 0]
        assert live["seed_funnel"]["generated"] == len(seeds)
        assert live["funnel"]["generated"] == live["candidates"] - len(seeds)
        assert live["seed_funnel_text"].startswith(f"Seeds (iteration 0, not counted above): {len(seeds)} evaluated")
        _, later = get(dashboard.url + f"api/runs/{name}/live?metrics_after={metrics[-3].iteration}")
        assert [m["iteration"] for m in later["metrics"]] == [m.iteration for m in metrics[-2:]]

        _, archive = get(dashboard.url + f"api/runs/{name}/archive")
        elites = {row.niche: row.candidate_id for row in store.best_per_niche()}
        assert {e["niche"]: e["candidate_id"] for e in archive["elites"]} == elites
        first = store.snapshot_iterations()[0]
        _, snapshot = get(dashboard.url + f"api/runs/{name}/archive?snapshot={first}")
        assert [e["niche"] for e in sorted(snapshot["elites"], key=lambda e: e["niche"])] == \
            [row.niche for row in store.snapshot(first)]

        best = archive["elites"][0]
        _, candidate = get(dashboard.url + f"api/runs/{name}/candidates/{best['candidate_id']}")
        record = store.candidate(best["candidate_id"])
        assert candidate["source"] == record.source and candidate["diff"] == record.diff
        assert candidate["commit_message"] == record.commit_message
        _, lineage = get(dashboard.url + f"api/runs/{name}/candidates/{best['candidate_id']}/lineage")
        assert lineage["steps"][-1]["id"] == record.id
        assert lineage["complete"] and lineage["steps"][0]["parent_id"] is None
        for step, parent in zip(lineage["steps"][1:], lineage["steps"]):
            assert step["parent_id"] == parent["id"]
            assert step["diff"] == store.candidate(step["id"]).diff

        _, messages = get(dashboard.url + f"api/runs/{name}/messages")
        assert messages["counted"] == messages["candidates"] == live["candidates"]
        mutated = [c for c in store.candidates() if c.operator != "seed"]
        assert sum(m["tries"] for m in messages["messages"]) == len(mutated)
        assert sum(m["placed"] for m in messages["messages"]) == sum(c.stage == "placed" for c in mutated)
    finally:
        store.close()


def test_pictures_come_from_the_environment(dashboard: Dashboard) -> None:
    _, archive = get(dashboard.url + "api/runs/toy/archive")
    _, picture = get(dashboard.url + f"api/runs/toy/candidates/{archive['elites'][0]['candidate_id']}/picture")
    assert picture["picture"].startswith("data:image/png;base64,")


def test_bad_requests_get_an_error_not_a_crash(dashboard: Dashboard) -> None:
    assert get(dashboard.url + "api/runs/notes/live")[0] == 404
    assert get(dashboard.url + "api/runs/..%2Ftoy/live")[0] == 404
    assert get(dashboard.url + "api/runs/toy/archive?snapshot=999")[0] == 400
    assert get(dashboard.url + "api/runs/toy/live?metrics_after=x")[0] == 400
    status, data = get(dashboard.url + "api/runs/toy/candidates/999999")
    assert status == 400 and "no candidate" in data["error"]


def test_pages_are_served_from_the_package_under_a_strict_policy(dashboard: Dashboard) -> None:
    with urllib.request.urlopen(dashboard.url + "runs/toy/", timeout=30) as response:
        page = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert 'data-run="toy"' in page
    for asset in ("static/run.js", "static/report/common.js", "static/dashboard.css", "static/report/report.css"):
        with urllib.request.urlopen(dashboard.url + asset, timeout=30) as response:
            assert response.status == 200 and response.read()


def test_a_run_folder_is_served_as_its_own_page(toy_run: Path) -> None:
    with Dashboard(toy_run, port=0) as served:
        with urllib.request.urlopen(served.url, timeout=30) as response:
            page = response.read().decode()
        _, data = get(served.url + "api/runs")
    assert f'data-run="{toy_run.name}"' in page and "data-single" in page
    assert data["single"] is True and [r["name"] for r in data["runs"]] == [toy_run.name]


def test_current_elites_match_the_full_rebuild_while_a_run_is_written(tmp_path: Path) -> None:
    """The dashboard's archive (latest snapshot + later candidates) is `best_per_niche`'s,
    between snapshots too."""
    checked = []

    def compare(iteration: int) -> None:
        store = RunStore.open(tmp_path / "run", readonly=True)
        try:
            assert store.current_elites() == store.best_per_niche()
        finally:
            store.close()
        checked.append(iteration)

    write_toy_run(tmp_path / "run", iterations=7, snapshot_every=3, after_iteration=compare)
    assert checked == list(range(8))


def test_folder_without_runs_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "absent"):
        assert main(["serve", str(folder), "--port", "0"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("elm: error: ") and len(err.strip().splitlines()) == 1


def test_a_taken_port_is_one_line_and_exit_2(toy_run: Path, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert main(["serve", str(toy_run), "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("elm: error: cannot listen on 127.0.0.1:") and len(err.strip().splitlines()) == 1


def test_a_non_local_host_is_served_with_a_warning(toy_run: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "elm.cli", "serve", str(toy_run), "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO)
    try:
        line = server.stdout.readline()
        assert line.startswith("elm serve: http://0.0.0.0:")
        port = re.search(r"0\.0\.0\.0:(\d+)/", line).group(1)
        status, data = get(f"http://127.0.0.1:{port}/api/runs")
        assert status == 200 and data["single"] is True
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "no authentication" in err


def test_events_arrive_a_page_at_a_time(tmp_path: Path, monkeypatch) -> None:
    from elm.serve import watch
    from elm.store import IterationMetrics

    store = RunStore.create(tmp_path, {"config": {"run": {"iterations": 3}}})
    kinds = ["worker_restarted", "batch_retried", "model_updated"]
    for iteration, kind in enumerate(kinds):
        metrics = IterationMetrics(iteration=iteration, wall_s=1.0, candidates=0, coverage=0.0, qd_score=0.0,
                                   num_elites=0, max_fitness=None, mean_fitness=None, evals_per_s=0.0,
                                   statuses={}, funnel={})
        store.record_iteration([], metrics, events=[(kind, {"iteration": iteration})])
    store.close()
    monkeypatch.setattr(watch, "EVENTS_PAGE", 2)
    watched = watch.RunWatch(tmp_path)
    try:
        first = watched.live(None, None)
        assert [e["kind"] for e in first["events"]] == kinds[:2]
        rest = watched.live(None, first["events"][-1]["id"])
        assert [e["kind"] for e in rest["events"]] == kinds[2:]
        assert rest["events"][0]["detail"] == {"iteration": 2}
        assert first["progress"] == "iteration 2 of 3" and first["state"] == "running"
        assert watched.archive(None)["elites"] == []  # no layout, no elites: still an answer
    finally:
        watched.close()


def test_the_dashboard_bench_times_every_page_and_the_watched_loop(tmp_path):
    result = run_elm("bench", "serve", "--candidates", "2000", "--store", str(tmp_path / "large"),
                     "--loop-iterations", "3", "--batch-size", "32", "--trials", "1", "--json", check=True)
    figures = json.loads(result.stdout)
    pages = figures["pages"]
    assert pages["candidates"] == 2000 and pages["lineage_steps"] >= 1
    assert {"run page", "first poll (all metrics)", "archive", "its lineage", "a snapshot"} <= set(pages["seconds"])
    assert all(0 < seconds < 60 for seconds in pages["seconds"].values())
    loop = figures["loop"]
    assert loop["alone_per_s"] > 0 and loop["watched_per_s"] > 0 and loop["polls"] >= 1
    assert loop["slowdown"] == pytest.approx(1 - loop["watched_per_s"] / loop["alone_per_s"], abs=1e-3)
    assert (tmp_path / "large").is_dir()  # --store keeps the synthetic run for the next time
