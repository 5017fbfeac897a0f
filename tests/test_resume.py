"""A run killed with SIGKILL mid-iteration resumes and loses nothing it had committed."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

from elm.store import RunStore
from tests.conftest import REPO, cli_env, run_elm


def _committed_iterations(run_dir) -> int:
    try:
        with sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM iterations").fetchone()[0]
    except sqlite3.Error:
        return 0


def _kill_after(run_dir, config, committed: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "elm.cli", "run", str(config), "--out", str(run_dir), "--quiet"],
        env=cli_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while _committed_iterations(run_dir) < committed and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    # The runner processes of the local sandbox die with the session.
    subprocess.run(["pkill", "-KILL", "-s", str(process.pid)], check=False)


def test_sigkill_then_resume_loses_nothing(toy_config, tmp_path):
    run_dir = tmp_path / "run"
    config = toy_config(iterations=25)
    _kill_after(run_dir, config, committed=4)

    store = RunStore.open(run_dir, readonly=True)
    last = store.last_iteration()
    before = {c.id: (c.source, c.status, c.fitness) for c in store.candidates()}
    elites_before = {e.niche: e.fitness for e in _replayed_elites(store)}
    store.close()
    assert 3 <= last < 25

    result = run_elm("resume", str(run_dir), "--quiet")
    assert result.returncode == 0, result.stderr

    store = RunStore.open(run_dir, readonly=True)
    assert [m.iteration for m in store.metrics()] == list(range(26))
    after = {c.id: (c.source, c.status, c.fitness) for c in store.candidates()}
    assert all(after[i] == value for i, value in before.items())
    assert len(after) == 1 + 25 * 8
    assert sorted(after) == list(range(len(after)))
    final = {s.niche: s.fitness for s in store.snapshot(25)}
    for niche, fitness in elites_before.items():
        assert final[niche] >= fitness
    store.close()


def _replayed_elites(store):
    from elm.archive import Archive
    from elm.config import ArchiveConfig
    from tests.toy_environment import Toy

    archive = Archive(Toy.descriptor_space, ArchiveConfig())
    for record in store.scored_candidates():
        archive.add_batch([record.id], [record.fitness], [record.descriptor])
    return archive.elites()


def test_resume_raising_or_lowering_the_iterations(capsys, toy_config, tmp_path):
    """Raising the count extends the run and the store says it is finished; lowering it
    below what is committed is refused on one line and changes nothing."""
    from elm.cli import main

    run_dir = tmp_path / "run"
    assert main(["run", str(toy_config(iterations=1)), "--out", str(run_dir), "--quiet"]) == 0
    assert main(["resume", str(run_dir), "run.iterations=2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(run_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["last_iteration"], summary["configured_iterations"], summary["finished"]) == (2, 2, True)
    assert main(["inspect", str(run_dir)]) == 0
    assert "iteration 2 of 2" in capsys.readouterr().out.splitlines()[1]
    config_before = (run_dir / "config.yaml").read_text()
    assert "iterations: 2" in config_before

    assert main(["resume", str(run_dir), "run.iterations=1"]) == 2
    err = capsys.readouterr().err
    assert err == ("elm: error: run.iterations=1 is below the 2 iterations this run has already "
                   "committed; a run cannot be shortened (give 2 or more)\n")
    assert (run_dir / "config.yaml").read_text() == config_before

    assert main(["resume", str(run_dir), "run.iterations=2", "--quiet"]) == 0  # already there
    store = RunStore.open(run_dir, readonly=True)
    assert [m.iteration for m in store.metrics()] == [0, 1, 2]
    assert store.meta()["config"]["run"]["iterations"] == 2
    store.close()
