"""Sufficient statistics: additivity, fixed layout, moments, sampling, histograms."""

from __future__ import annotations

import numpy as np
import pytest

from fedshift.shift.embeddings import (
    CLASSES,
    EmbeddingStats,
    embedding_size,
    embedding_stats,
    from_vector,
    gaussian_from,
    sample_voxels,
    to_vector,
)
from fedshift.shift.stats import (
    SiteStatistics,
    StatsLayout,
    case_statistics,
    histogram,
    intensity_histogram,
    lesion_load,
)

F = 3


def _case(rng: np.random.Generator, labelled: bool = True):
    image = rng.normal(size=(8, 8, 8))
    mask = np.zeros((8, 8, 8), bool)
    mask[1:7, 1:7, 1:7] = True
    label = np.zeros((8, 8, 8), np.uint8)
    label[2:4, 2:4, 2:4] = 1  # 8 voxels
    label[5, 5, 5] = 1  # a second lesion
    features = rng.normal(size=(F, 8, 8, 8))
    return image, mask, (label if labelled else None), features


def test_embedding_stats_classes_and_moments(rng):
    x = rng.normal(size=(20, F))
    y = (np.arange(20) % 4 == 0).astype(int)
    st = embedding_stats(x, y)
    assert set(st) == {"background", "lesion"}
    assert st["lesion"].n == 5 and st["background"].n == 15
    np.testing.assert_allclose(st["lesion"].s + st["background"].s, x.sum(0))
    np.testing.assert_allclose(st["lesion"].S + st["background"].S, x.T @ x)
    assert set(embedding_stats(x, None)) == {"all"}


def test_vector_of_sum_is_sum_of_vectors(rng):
    a = embedding_stats(rng.normal(size=(10, F)), rng.integers(0, 2, 10))
    b = embedding_stats(rng.normal(size=(7, F)), None)
    total = {
        c: a.get(c, EmbeddingStats.zeros(F)) + b.get(c, EmbeddingStats.zeros(F)) for c in CLASSES
    }
    np.testing.assert_allclose(to_vector(a, F) + to_vector(b, F), to_vector(total, F))
    assert to_vector(a, F).shape == (embedding_size(F),)


def test_vector_round_trip(rng):
    st = embedding_stats(rng.normal(size=(12, F)), rng.integers(0, 2, 12))
    back = from_vector(to_vector(st, F), F)
    assert set(back) == set(CLASSES) and back["all"].n == 0
    for c in st:
        assert back[c].n == st[c].n
        np.testing.assert_allclose(back[c].s, st[c].s)
        np.testing.assert_allclose(back[c].S, st[c].S)


def test_vector_rejects_bad_input():
    with pytest.raises(ValueError, match="feat_dim"):
        from_vector(np.zeros(5), F)
    with pytest.raises(ValueError, match="unknown classes"):
        to_vector({"tumour": EmbeddingStats.zeros(F)}, F)


def test_gaussian_from_matches_numpy(rng):
    x = rng.normal(size=(30, F)) @ np.diag([1.0, 2.0, 0.5]) + 1.0
    mean, cov = gaussian_from(embedding_stats(x, None)["all"], ridge=0.0)
    np.testing.assert_allclose(mean, x.mean(0))
    np.testing.assert_allclose(cov, np.cov(x.T), atol=1e-12)
    ridged = gaussian_from(embedding_stats(x, None)["all"], ridge=0.1)
    np.testing.assert_allclose(ridged.cov - cov, 0.1 * np.eye(F), atol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_from(EmbeddingStats.zeros(F))


def test_sample_voxels_controls_class_mix(rng):
    _, mask, label, features = _case(rng)
    x, y = sample_voxels(features, label, mask, 6, rng)
    assert x.shape == (12, F) and (y == 1).sum() == 6 and (y == 0).sum() == 6
    # every sampled lesion row is the embedding of a lesion voxel
    lesion_rows = features[:, label > 0].T
    assert all(any(np.allclose(r, q) for q in lesion_rows) for r in x[y == 1])
    x, y = sample_voxels(features, label, mask, 100, rng)  # fewer lesion voxels than asked
    assert (y == 1).sum() == 9
    x, y = sample_voxels(features, None, mask, 10, rng)
    assert x.shape == (10, F) and y is None


def test_intensity_histogram_counts_brain_voxels_only(rng):
    image, mask, _, _ = _case(rng)
    image[0, 0, 0] = 1e6  # outside the mask: ignored
    image[3, 3, 3] = 99.0  # inside, out of range: clipped to the last bin
    counts = intensity_histogram(image, mask, np.linspace(-5, 5, 11))
    assert counts.dtype == np.float64 and counts.sum() == mask.sum() and counts[-1] >= 1


def test_histogram_rejects_bad_edges():
    with pytest.raises(ValueError, match="edges"):
        histogram([1.0], np.array([0.0, 0.0, 1.0]))


def test_lesion_load_counts_components_and_ml():
    label = np.zeros((8, 8, 8), np.uint8)
    label[1:3, 1:3, 1:3] = 1
    label[6, 6, 6] = 1
    count, volume = lesion_load(label, (2.0, 1.0, 1.0))
    assert count == 2 and volume == pytest.approx(9 * 2.0 / 1000)
    label[3, 3, 3] = 1  # touches the first lesion by a corner only
    assert lesion_load(label, (1, 1, 1))[0] == 2
    assert lesion_load(label, (1, 1, 1), connectivity=6)[0] == 3


def test_site_statistics_additive_and_round_trip(rng):
    layout = StatsLayout(feat_dim=F)
    cases = []
    for labelled in (True, True, False):
        image, mask, label, features = _case(rng, labelled)
        samples = sample_voxels(features, label, mask, 5, rng)
        cases.append(case_statistics(layout, image, mask, label, (1, 1, 1), samples))
    total = cases[0] + cases[1] + cases[2]
    np.testing.assert_allclose(total.to_vector(), sum(c.to_vector() for c in cases))
    assert total.cases == 3 and total.labelled_cases == 2
    assert total.lesion_count.sum() == 2 and total.lesion_count[2] == 2  # 2 lesions each
    assert total.embeddings["all"].n == 5 and total.embeddings["lesion"].n == 10
    back = SiteStatistics.from_vector(total.to_vector(), layout)
    np.testing.assert_array_equal(back.to_vector(), total.to_vector())


def test_layout_independent_of_sites():
    layout = StatsLayout(feat_dim=4)
    d = layout.to_dict()
    assert d["size"] == layout.size == SiteStatistics.zeros(layout).to_vector().size
    stops = [stop for _, stop in d["fields"].values()]
    assert stops == sorted(stops) and stops[-1] == layout.size
    with pytest.raises(ValueError, match="layout wants"):
        SiteStatistics.from_vector(np.zeros(layout.size + 1), layout)
