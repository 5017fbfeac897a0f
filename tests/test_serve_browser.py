"""The `elm serve` pages in a real headless Chromium, against a run being written: the
page follows the run without a reload, clicking a niche shows its source, and no request
leaves 127.0.0.1."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from elm.serve import Dashboard
from elm.store import RunStore
from tests.test_report_browser import browser, requests_made  # noqa: F401  (fixture; skips without Chromium)
from tests.test_report_support import TOY_3D, toy_run, write_toy_run  # noqa: F401  (fixture)

ITERATIONS = 60
_PROGRESS = re.compile(r"^iteration (\d+) of (\d+)$")


class SlowWriter:
    """Writes a toy run an iteration at a time, pausing between iterations, until stopped."""

    def __init__(self, run_dir: Path, pause_s: float) -> None:
        self.committed = threading.Event()  # the first iteration is in the store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=write_toy_run, args=(run_dir,), daemon=True,
                                        kwargs={"iterations": ITERATIONS, "after_iteration": self._after})
        self._pause_s = pause_s

    def _after(self, iteration: int) -> None:
        self.committed.set()
        self._stop.wait(self._pause_s)

    def __enter__(self) -> SlowWriter:
        self._thread.start()
        assert self.committed.wait(60), "the writer committed no iteration"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


@pytest.fixture
def live_run(tmp_path: Path) -> Iterator[Path]:
    runs = tmp_path / "runs"
    with SlowWriter(runs / "live", pause_s=0.5):
        yield runs


def progress(browser) -> tuple[int, int]:
    text = browser.find_element(By.ID, "progress").text
    match = _PROGRESS.match(text)
    assert match, f"unexpected progress text {text!r}"
    return int(match.group(1)), int(match.group(2))


@contextlib.contextmanager
def serving(browser, folder: Path) -> Iterator[Dashboard]:
    """A dashboard for the test; the browser leaves its page before the server stops."""
    with Dashboard(folder, port=0) as dashboard:
        try:
            yield dashboard
        finally:
            browser.get("about:blank")


def wait(browser, seconds: float = 30) -> WebDriverWait:
    return WebDriverWait(browser, seconds, ignored_exceptions=(StaleElementReferenceException,))


def load(browser, url: str) -> None:
    browser.get("about:blank")
    browser.get_log("browser")
    browser.get_log("performance")  # only this page's own traffic counts
    browser.get(url)


def open_page(browser, url: str) -> None:
    load(browser, url)
    wait(browser).until(lambda b: _PROGRESS.match(b.find_element(By.ID, "progress").text))


def shown_candidate(browser) -> int | None:
    title = browser.find_element(By.ID, "detail-title").text
    return int(title.split()[1]) if title.startswith("Candidate ") else None


def only_local_requests(browser, url: str) -> list[str]:
    return [u for u in requests_made(browser) if not u.startswith(url) and not u.startswith("data:")]


def test_the_run_page_follows_a_run_in_progress(browser, live_run: Path) -> None:
    with serving(browser, live_run) as dashboard:
        assert dashboard.url.startswith("http://127.0.0.1:")
        open_page(browser, dashboard.url + "runs/live/")
        browser.execute_script("window.notReloaded = true")
        first, total = progress(browser)
        assert total == ITERATIONS and first < ITERATIONS
        wait(browser, 60).until(lambda b: progress(b)[0] >= first + 2)
        assert browser.execute_script("return window.notReloaded") is True

        best = wait(browser).until(shown_candidate)  # the page opens on the best elite
        shape = browser.find_element(By.CSS_SELECTOR, "#archive-map .niche.filled:not(.selected)")
        niche = int(shape.get_attribute("data-niche"))
        shape.click()
        shown = wait(browser).until(lambda b: shown_candidate(b) not in (None, best) and shown_candidate(b))
        store = RunStore.open(live_run / "live", readonly=True)
        try:
            holder = {row.niche: row.candidate_id for row in store.best_per_niche()}[niche]
            # The niche's elite when the page drew the map, or a later one: never another niche's.
            assert store.candidate(shown).niche == niche and shown <= holder
            source = store.candidate(shown).source
            assert browser.find_element(By.ID, "source").get_attribute("textContent") == source
        finally:
            store.close()
        wait(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#lineage .lineage li"))
        assert browser.find_elements(By.CSS_SELECTOR, "#curves svg polyline")
        assert only_local_requests(browser, dashboard.url) == []
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_the_runs_list_follows_runs(browser, live_run: Path, toy_run: Path) -> None:
    import shutil

    shutil.copytree(toy_run, live_run / "done")
    with serving(browser, live_run) as dashboard:
        load(browser, dashboard.url)
        wait(browser).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 2)
        done = browser.find_element(By.CSS_SELECTOR, "#runs tr[data-run='done']")
        assert "iteration 6 of 6" in done.text and "finished" in done.text
        live = browser.find_element(By.CSS_SELECTOR, "#runs tr[data-run='live']")
        assert f"of {ITERATIONS}" in live.text and "running" in live.text
        browser.find_element(By.LINK_TEXT, "done").click()
        wait(browser).until(lambda b: b.find_element(By.ID, "progress").text == "iteration 6 of 6")
        assert only_local_requests(browser, dashboard.url) == []


def test_a_finished_3d_run_has_slices_and_a_snapshot_slider(browser, tmp_path: Path) -> None:
    run = write_toy_run(tmp_path / "cube", environment=TOY_3D, iterations=4)
    store = RunStore.open(run, readonly=True)
    try:
        snapshots, elites = store.snapshot_iterations(), store.best_per_niche()
        first = len(store.snapshot(snapshots[0]))
    finally:
        store.close()
    with serving(browser, run) as dashboard:
        open_page(browser, dashboard.url)
        assert progress(browser) == (4, 4)
        wait(browser).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#archive-map svg")) == 12)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#archive-map .niche.filled")) == len(elites)
        assert browser.find_elements(By.ID, "crumbs") == []  # a single run: no list to go back to
        slider = browser.find_element(By.ID, "snapshot-slider")
        assert int(slider.get_attribute("max")) == len(snapshots)
        browser.execute_script("arguments[0].value = 0; arguments[0].dispatchEvent(new Event('input'))", slider)
        wait(browser).until(
            lambda b: b.find_element(By.ID, "snapshot-label").text.startswith(f"snapshot at iteration {snapshots[0]}"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#archive-map .niche.filled")) == first
