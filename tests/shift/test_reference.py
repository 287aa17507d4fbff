"""Reference from summed statistics: pooled moments, normalised histograms, round trip."""

from __future__ import annotations

import numpy as np
import pytest

from fedshift.shift.embeddings import embedding_stats
from fedshift.shift.reference import Reference, build_reference
from fedshift.shift.stats import SiteStatistics, StatsLayout, intensity_histogram

F = 3
LAYOUT = StatsLayout(feat_dim=F)


def _site(
    rng: np.random.Generator, shift: float, labelled: bool
) -> tuple[SiteStatistics, np.ndarray]:
    x = rng.normal(size=(40, F)) + shift
    y = (np.arange(40) % 2).astype(int) if labelled else None
    image = rng.normal(shift, 1.0, size=(6, 6, 6))
    stats = SiteStatistics(
        layout=LAYOUT,
        cases=2.0,
        labelled_cases=2.0 * labelled,
        embeddings={**SiteStatistics.zeros(LAYOUT).embeddings, **embedding_stats(x, y)},
        intensity=intensity_histogram(image, np.ones((6, 6, 6), bool), LAYOUT.intensity_edges),
        lesion_count=np.eye(len(LAYOUT.count_edges) - 1)[1] * 2 * labelled,
        lesion_volume=np.eye(len(LAYOUT.volume_edges) - 1)[3] * 2 * labelled,
    )
    return stats, x


def _federation(rng):
    sites = [_site(rng, s, lab) for s, lab in ((0.0, True), (1.0, True), (2.0, False))]
    vector_sum = sum(s.to_vector() for s, _ in sites)  # what secure aggregation yields
    return SiteStatistics.from_vector(vector_sum, LAYOUT), sites


def test_pooled_gaussians_match_pooled_samples(rng):
    total, sites = _federation(rng)
    ref = build_reference(total, ridge=0.0)
    labelled = np.concatenate([x for _, x in sites[:2]])
    bg = labelled[np.tile(np.arange(40) % 2 == 0, 2)]
    np.testing.assert_allclose(ref.gaussians["background"].mean, bg.mean(0))
    np.testing.assert_allclose(ref.gaussians["background"].cov, np.cov(bg.T), atol=1e-10)
    np.testing.assert_allclose(ref.gaussians["all"].mean, sites[2][1].mean(0))
    assert ref.counts == {"background": 40.0, "lesion": 40.0, "all": 40.0}


def test_histograms_are_normalised(rng):
    total, _ = _federation(rng)
    ref = build_reference(total)
    assert ref.intensity_pmf.sum() == pytest.approx(1.0)
    assert ref.lesion_count_pmf.sum() == pytest.approx(1.0)
    assert ref.lesion_volume_pmf[3] == pytest.approx(1.0)
    assert ref.cases == 6 and ref.labelled_cases == 4
    q = ref.intensity_quantiles
    assert np.all(np.diff(q) >= 0) and q[0] >= -5 and q[-1] <= 5
    assert q[50] == pytest.approx(1.0, abs=0.3)  # pooled median of N(0), N(1), N(2)


def test_small_classes_get_no_gaussian(rng):
    total, _ = _federation(rng)
    ref = build_reference(total, min_count=41)
    assert ref.gaussians == {}
    empty = build_reference(SiteStatistics.zeros(LAYOUT))
    assert empty.gaussians == {} and empty.intensity_pmf.sum() == 0
    with pytest.raises(ValueError, match="min_count"):
        build_reference(total, min_count=1)


def test_arrays_round_trip(rng):
    total, _ = _federation(rng)
    ref = build_reference(total)
    back = Reference.from_arrays(ref.to_arrays())
    assert set(back.gaussians) == set(ref.gaussians) and back.counts == ref.counts
    for name, arr in ref.to_arrays().items():
        np.testing.assert_array_equal(back.to_arrays()[name], arr)
    with pytest.raises(ValueError, match="lack"):
        Reference.from_arrays({})
