"""A run killed with SIGKILL mid-iteration resumes and loses nothing it had committed."""

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
