"""`elm report` and `write_report`: plots, the self-contained page, pictures, comparisons."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from elm.cli import main
from elm.report import build_report, open_run, write_comparison, write_report
from elm.store import RunStore
from tests.test_report_support import (  # noqa: F401  (fixtures)
    BROKEN_RENDER,
    HOSTILE_COMMENT,
    NO_RENDER,
    TOY_3D,
    real_run,
    toy_run,
    write_toy_run,
)

_DATA = re.compile(r'<script type="application/json" id="run-data">(.*?)</script>', re.S)


def page_data(html: str) -> dict:
    match = _DATA.search(html)
    assert match, "the page embeds its data"
    return json.loads(match.group(1))


@pytest.fixture(scope="module", params=["toy_run", "real_run"])
def reported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of a finished run with its report freshly written."""
    run = tmp_path_factory.mktemp("reported") / "run"
    shutil.copytree(request.getfixturevalue(request.param), run)
    write_report(run)
    return run


def test_report_writes_plots_and_page(reported: Path) -> None:
    html = (reported / "report.html").read_text()
    for name in ("archive", "metrics", "funnel"):
        with Image.open(reported / "plots" / f"{name}.png") as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 150
    assert html.count("<img src='data:image/png;base64,") == 3


def test_page_is_self_contained(reported: Path) -> None:
    html = (reported / "report.html").read_text()
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html)
    assert links and all(link.startswith("data:") for link in links)
    assert "url(" not in html and "@import" not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


def test_page_data_holds_every_elite_with_source_and_lineage(reported: Path) -> None:
    data = page_data((reported / "report.html").read_text())
    with open_run(reported) as run:
        elites = run.elites()
        assert data["num_elites"] == len(elites) == len(data["elites"])
        for elite in elites:
            shown = data["candidates"][str(elite.candidate_id)]
            assert shown["source"] == run.candidate(elite.candidate_id).source
            for step in run.lineage(elite.candidate_id).steps:
                assert data["candidates"][str(step.id)]["diff"] == step.diff
    fitnesses = [e["fitness"] for e in data["elites"]]
    assert fitnesses == sorted(fitnesses, reverse=True)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", e["color"]) for e in data["elites"])


def test_candidate_text_stays_inside_the_data(tmp_path: Path, toy_run: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    html = write_report(run, renders=0).read_text()
    assert "</script><script>window.pwned" not in html
    assert html.count("</script>") == 3  # the data element and the page's own two scripts
    data = page_data(html)
    assert any(HOSTILE_COMMENT in (c.get("source") or "") for c in data["candidates"].values())


def test_pictures_of_the_best_elites_are_embedded(tmp_path: Path, toy_run: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    files = build_report(run, renders=2)
    data = page_data(files.html.read_text())
    pictured = [c["id"] for c in data["candidates"].values() if c["render"]]
    best_two = [e["candidate_id"] for e in data["elites"][:2]]
    assert sorted(pictured) == sorted(best_two)
    assert all(data["candidates"][str(i)]["render"].startswith("data:image/png;base64,") for i in pictured)
    assert any("best 2 of" in note for note in files.notes)


@pytest.mark.parametrize("environment, note", [
    (BROKEN_RENDER, "could not be drawn (first: candidate"),
    (NO_RENDER, "draws none"),
    ("no_such_environment", "cannot be loaded"),
])
def test_pictures_that_cannot_be_drawn_are_explained(tmp_path: Path, environment: str, note: str) -> None:
    run = write_toy_run(tmp_path / "run", iterations=2, environment=environment if ":" in environment else NO_RENDER,
                        meta=None if ":" in environment else {"environment": environment})
    files = build_report(run)
    assert any(note in n for n in files.notes), files.notes
    data = page_data(files.html.read_text())
    assert not any(c["render"] for c in data["candidates"].values())
    assert any(note in n for n in data["render_notes"])
    if environment == BROKEN_RENDER:
        assert any("the renderer is broken" in n for n in files.notes)


@pytest.mark.parametrize("environment, kind", [(TOY_3D, "grid"), (TOY_3D, "cvt"),
                                               ("tests.test_report_support:ToyEnvironment", "cvt")])
def test_other_archive_shapes(tmp_path: Path, environment: str, kind: str) -> None:
    run = write_toy_run(tmp_path / "run", iterations=3, environment=environment, kind=kind)
    files = build_report(run, renders=0)
    data = page_data(files.html.read_text())
    assert data["layout"]["kind"] == kind
    with open_run(run) as opened:
        assert len(data["elites"]) == len(opened.elites()) > 0
    with Image.open(run / "plots" / "archive.png") as image:
        assert image.width > 400


def test_run_without_iterations_still_gets_a_page(tmp_path: Path, toy_run: Path) -> None:
    run = tmp_path / "fresh"
    run.mkdir()
    meta = RunStore.open(toy_run, readonly=True)
    try:
        RunStore.create(run, meta.meta()).close()
    finally:
        meta.close()
    files = build_report(run)
    data = page_data(files.html.read_text())
    assert data["elites"] == [] and data["num_elites"] == 0
    assert "no iteration committed yet" in files.html.read_text()


def test_truncated_store_gets_a_page_that_says_so(tmp_path: Path) -> None:
    run = write_toy_run(tmp_path / "run", iterations=30, batch_size=24)
    store_file = run / "run.sqlite"
    with store_file.open("r+b") as handle:
        handle.truncate(store_file.stat().st_size // 2)
    files = build_report(run, renders=0)
    html = files.html.read_text()
    assert "damaged or incomplete" in html and "truncated" in html
    assert page_data(html)["num_elites"] > 0


def test_comparison_overlays_runs(tmp_path: Path, toy_run: Path) -> None:
    other = write_toy_run(tmp_path / "other", iterations=3, seed=7)
    page = write_comparison([toy_run, other], tmp_path / "cmp")
    html = page.read_text()
    assert page.name == "comparison.html" and toy_run.name in html and "other" in html
    with Image.open(tmp_path / "cmp" / "comparison.png") as image:
        assert image.width > 600
    with pytest.raises(Exception, match="at least two"):
        write_comparison([toy_run], tmp_path / "cmp")


def test_cli(capsys, tmp_path: Path, toy_run: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    assert main(["report", str(run), "--renders", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    other = write_toy_run(tmp_path / "other", iterations=2, seed=3)
    assert main(["report", str(run), str(other), "--out", str(tmp_path / "cmp")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cmp" / "comparison.html")
    assert main(["report", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("elm: error: run folder not found") and len(err.strip().splitlines()) == 1


def _one_elite_run(run: Path, kind: str, dims: int) -> Path:
    """A run whose archive holds exactly one elite (its only seed), on any archive shape."""
    from elm.archive import Archive
    from elm.config import ArchiveConfig
    from elm.environment import DescriptorSpace, Dimension
    from elm.records import CandidateRecord, SnapshotRow
    from elm.store import IterationMetrics

    space = DescriptorSpace(tuple(Dimension(name, 0.0, 1.0, 6) for name in "xyzw"[:dims]))
    archive = Archive(space, ArchiveConfig(kind=kind, cvt_cells=12, cvt_samples=600))
    descriptor = [0.3] * dims
    (placement,) = archive.add_batch([0], [0.5], [descriptor])
    run.mkdir()
    store = RunStore.create(run, {"config": {"run": {"iterations": 0}}, "environment": "toy",
                                  "environment_options": {}, "archive": archive.layout(), "qd_offset": 0.0})
    seed = CandidateRecord(id=0, iteration=0, parent_id=None, operator="seed", file_name="program.py",
                           source="def main():\n    return 1\n", stage="placed", status="ok", fitness=0.5,
                           descriptor=descriptor, niche=placement.niche, placement=placement.outcome)
    stats = archive.stats()
    metrics = IterationMetrics(iteration=0, wall_s=0.1, candidates=1, coverage=stats.coverage,
                               qd_score=stats.qd_score, num_elites=1, max_fitness=0.5, mean_fitness=0.5,
                               evals_per_s=10.0, statuses={"ok": 1}, funnel={"generated": 1, "placed": 1})
    try:
        store.record_iteration([seed], metrics, [SnapshotRow(placement.niche, 0, 0.5, tuple(descriptor))])
    finally:
        store.close()
    return run


@pytest.mark.parametrize("kind, dims", [("grid", 1), ("grid", 2), ("grid", 3), ("grid", 4),
                                        ("cvt", 1), ("cvt", 2), ("cvt", 3)])
def test_an_archive_of_one_elite_is_drawn_in_any_shape(tmp_path: Path, kind: str, dims: int) -> None:
    run = _one_elite_run(tmp_path / "run", kind, dims)
    files = build_report(run, renders=0)
    data = page_data(files.html.read_text())
    assert data["num_elites"] == 1 and data["layout"]["kind"] == kind
    with Image.open(run / "plots" / "archive.png") as image:
        assert image.width > 400


def test_the_page_says_why_candidates_failed(tmp_path: Path, toy_run: Path) -> None:
    from elm.report.failures import failures_view

    run = tmp_path / "run"
    shutil.copytree(toy_run, run)
    html = build_report(run, renders=0).html.read_text()
    with open_run(run) as opened:
        failures = failures_view(opened)
    section = re.search(r"<section id='failures'>(.*?)</section>", html, re.S)
    assert section and f"{failures['failed']} of {failures['candidates']} candidates failed" in section.group(1)
    for row in failures["statuses"]:
        assert f"<tr><td>{row['status']}</td><td>{row['count']}</td><td>{row['example_id']}</td></tr>" \
            in section.group(1)
    for row in failures["reasons"]:
        assert (f"<td>{row['status']}</td><td>{row['reason']}</td><td>{row['count']}</td>"
                f"<td>{row['example_id']}</td>") in section.group(1)
    assert "Seeds (iteration 0, not counted above)" in html


def test_page_of_a_long_run_holds_every_elite_and_a_bounded_share_of_ancestors(
        tmp_path: Path, real_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import elm.report

    run_dir = tmp_path / "run"
    shutil.copytree(real_run, run_dir)
    write_report(run_dir)
    unbounded = page_data((run_dir / "report.html").read_text())
    with open_run(run_dir) as run:
        elites, candidates = run.elites(), len(run.candidates())
    ancestors = len(unbounded["candidates"]) - len(elites)
    assert ancestors > 2, "the fixture run has ancestors to leave out"
    assert unbounded["left_out"] == candidates - len(unbounded["candidates"])

    monkeypatch.setattr(elm.report, "ANCESTOR_LIMIT", 2)
    write_report(run_dir)
    html = (run_dir / "report.html").read_text()
    data = page_data(html)
    assert len(data["candidates"]) == len(elites) + 2
    assert all(data["candidates"][str(e.candidate_id)]["source"] is not None for e in elites)
    assert data["left_out"] == candidates - len(elites) - 2
    note = re.search(r"<p class='sub' id='left-out'>(.*?)</p>", html)
    assert note and f"{data['left_out']:,} are left out" in note.group(1)
    assert f"elm inspect {run_dir} --lineage ID" in note.group(1)
