import numpy as np
import pytest

from elm.archive import Archive, Placement
from elm.config import ArchiveConfig
from elm.environment import DescriptorSpace, Dimension
from elm.errors import UserError

SPACE = DescriptorSpace((Dimension("a", 0.0, 1.0, 4), Dimension("b", 0.0, 1.0, 5)))


def test_grid_keeps_the_best_per_niche():
    archive = Archive(SPACE, ArchiveConfig())
    assert archive.cells == 20
    assert _add(archive, 1, 0.5, [0.1, 0.1]).outcome == "new"
    assert _add(archive, 2, 0.4, [0.15, 0.1]).outcome == "not_added"
    assert _add(archive, 3, 0.9, [0.12, 0.05]).outcome == "improved"
    far = _add(archive, 4, 0.1, [0.9, 0.9])
    assert far.niche != archive.niche_of([0.1, 0.1])
    assert archive.niche_coordinates(far.niche) == (3, 4)
    assert [e.candidate_id for e in archive.elites()] == [3, 4]
    stats = archive.stats()
    assert stats.num_elites == 2 and stats.coverage == pytest.approx(2 / 20)
    assert stats.max_fitness == pytest.approx(0.9)


def test_qd_score_uses_the_offset():
    archive = Archive(SPACE, ArchiveConfig(), qd_offset=-1.0)
    _add(archive, 1, 0.5, [0.1, 0.1])
    _add(archive, 2, -0.5, [0.9, 0.9])
    assert archive.stats().qd_score == pytest.approx(1.5 + 0.5)


def test_bins_override_and_mismatch():
    assert Archive(SPACE, ArchiveConfig(bins=[2, 2])).cells == 4
    with pytest.raises(UserError, match="2 descriptor dimensions"):
        Archive(SPACE, ArchiveConfig(bins=[2, 2, 2]))


def test_uniform_selection_is_seeded_and_covers_filled_niches():
    archive = Archive(SPACE, ArchiveConfig())
    for i, point in enumerate([[0.1, 0.1], [0.6, 0.6], [0.9, 0.1]]):
        _add(archive, i, 1.0, point)
    first = [e.candidate_id for e in archive.sample_parents(300, np.random.default_rng(5))]
    again = [e.candidate_id for e in archive.sample_parents(300, np.random.default_rng(5))]
    assert first == again
    assert set(first) == {0, 1, 2}
    assert min(first.count(i) for i in range(3)) > 60


def test_cvt_layout_round_trips():
    config = ArchiveConfig(kind="cvt", cvt_cells=16, cvt_samples=2000)
    archive = Archive(SPACE, config, seed=3)
    layout = archive.layout()
    twin = Archive(SPACE, config, centroids=layout["centroids"], seed=3)
    assert twin.layout()["centroids"] == layout["centroids"]
    assert archive.niche_of([0.3, 0.7]) == twin.niche_of([0.3, 0.7])
    assert _add(archive, 1, 1.0, [0.3, 0.7]).outcome == "new"


def _add(archive: Archive, candidate_id: int, fitness: float, descriptor: list[float]) -> Placement:
    (placement,) = archive.add_batch([candidate_id], [fitness], [descriptor])
    return placement
