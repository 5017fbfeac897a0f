"""The HTML report in a real headless Chromium: no console errors, no network requests,
one shape per filled niche, and clicking a niche shows that elite's source."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from elm.cli import main
from elm.store import RunStore
from tests.test_report_support import (  # noqa: F401  (fixtures)
    HOSTILE_COMMENT,
    TOY_3D,
    any_run,
    real_run,
    toy_run,
    write_toy_run,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

webdriver = pytest.importorskip("selenium.webdriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER}", allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="elm-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     f"--user-data-dir={profile}", "--window-size=1400,1600"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_report(browser, run: Path, capsys) -> dict:
    """Write the run's report, load it, and return what `elm inspect --json` says of the run."""
    assert main(["report", str(run), "--renders", "4"]) == 0
    assert main(["inspect", str(run), "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    browser.get("about:blank")
    browser.get_log("browser")
    browser.get_log("performance")  # start both logs afresh: only the report's own traffic counts
    browser.get((run / "report.html").as_uri())
    return summary


def requests_made(browser) -> list[str]:
    messages = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    return [m["params"]["request"]["url"] for m in messages if m["method"] == "Network.requestWillBeSent"]


def filled_niches(browser) -> list:
    return browser.find_elements(By.CSS_SELECTOR, "#archive-map .niche.filled")


def source_shown(browser) -> str:
    return browser.find_element(By.ID, "source").get_attribute("textContent")


@pytest.fixture
def report_run(tmp_path: Path, any_run: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(any_run, run)
    return run


@pytest.fixture
def toy_report_run(tmp_path: Path, toy_run: Path) -> Path:
    run = tmp_path / "toy"
    shutil.copytree(toy_run, run)
    return run


def test_page_loads_cleanly_and_offline(browser, report_run: Path, capsys) -> None:
    open_report(browser, report_run, capsys)
    assert browser.title.startswith("elm report")
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    page = report_run.joinpath("report.html").as_uri()
    assert [url for url in requests_made(browser) if url != page and not url.startswith("data:")] == []


def test_one_shape_per_filled_niche_as_inspect_reports(browser, report_run: Path, capsys) -> None:
    summary = open_report(browser, report_run, capsys)
    assert len(filled_niches(browser)) == summary["num_elites"] > 0
    cells = len(browser.find_elements(By.CSS_SELECTOR, "#archive-map .niche"))
    assert cells == summary["cells"]


def test_clicking_a_niche_shows_its_elite(browser, report_run: Path, capsys) -> None:
    open_report(browser, report_run, capsys)
    store = RunStore.open(report_run, readonly=True)
    try:
        elites = {row.niche: row for row in store.best_per_niche()}
        shapes = filled_niches(browser)
        for shape in (shapes[0], shapes[len(shapes) // 2], shapes[-1]):
            niche = int(shape.get_attribute("data-niche"))
            shape.click()
            record = store.candidate(elites[niche].candidate_id)
            assert source_shown(browser) == record.source
            title = browser.find_element(By.ID, "detail-title").text
            assert title == f"Candidate {record.id}"
            assert "selected" in shape.get_attribute("class")
    finally:
        store.close()


def test_hostile_source_is_shown_as_text(browser, toy_report_run: Path, capsys) -> None:
    summary = open_report(browser, toy_report_run, capsys)
    best = summary["best"]
    shape = browser.find_element(By.CSS_SELECTOR, f"#archive-map [data-niche='{best['niche']}']")
    shape.click()
    assert HOSTILE_COMMENT in source_shown(browser)
    assert browser.execute_script("return window.pwned") is None
    assert browser.find_elements(By.CSS_SELECTOR, ".render img"), "the best elite's picture is embedded"


def test_empty_niche_and_lineage_links(browser, toy_report_run: Path, capsys) -> None:
    open_report(browser, toy_report_run, capsys)
    browser.find_element(By.CSS_SELECTOR, "#archive-map .niche.empty").click()
    assert browser.find_element(By.ID, "detail-title").text == "Empty niche"
    filled_niches(browser)[0].click()
    steps = browser.find_elements(By.CSS_SELECTOR, ".lineage li")
    assert steps and "seed" in steps[0].text
    browser.find_element(By.CSS_SELECTOR, ".lineage li [data-candidate]").click()
    assert browser.find_element(By.ID, "detail-title").text.startswith("Candidate ")


def test_three_dimensional_archive_is_drawn_as_slices(browser, tmp_path: Path, capsys) -> None:
    run = write_toy_run(tmp_path / "cube", environment=TOY_3D, iterations=3)
    summary = open_report(browser, run, capsys)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#archive-map svg")) == 12
    assert len(filled_niches(browser)) == summary["num_elites"]
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
