"""Monotone 1-D OT of intensities: identity, monotonicity, affine recovery, W1 ~ 0."""

from __future__ import annotations

import numpy as np
import ot
import pytest
from scipy.stats import norm

from fedshift.shift.intensity import (
    apply,
    cdf,
    histogram_quantiles,
    identity_map,
    quantile_map,
)

EDGES = np.linspace(-5.0, 5.0, 129)


def _gauss_hist(mean: float, sd: float) -> np.ndarray:
    """Exact bin masses of N(mean, sd^2) on EDGES."""
    return np.diff(norm.cdf(EDGES, mean, sd))


def test_quantiles_invert_cdf():
    counts = np.array([0.0, 2.0, 0.0, 1.0, 1.0])
    edges = np.arange(6.0)
    levels = cdf(counts, edges)
    q = histogram_quantiles(counts, edges, np.array([0.0, 0.25, 0.5, 0.75, 1.0]))
    np.testing.assert_allclose(q, [1.0, 1.5, 2.0, 4.0, 5.0])
    np.testing.assert_allclose(levels, [0, 0, 0.5, 0.5, 0.75, 1.0])


def test_identity_when_site_is_reference():
    ref = _gauss_hist(0.0, 1.0)
    m = quantile_map(ref, ref, EDGES)
    np.testing.assert_allclose(m.y, m.x, atol=1e-9)
    x = np.linspace(-3, 3, 50)
    np.testing.assert_allclose(apply(m, x), x, atol=1e-9)


def test_map_is_monotone(rng):
    site = rng.integers(0, 50, size=128).astype(float)
    site[rng.random(128) < 0.3] = 0.0  # empty bins
    ref = rng.integers(0, 50, size=128).astype(float)
    m = quantile_map(site, ref, EDGES)
    assert np.all(np.diff(m.x) > 0) and np.all(np.diff(m.y) >= 0)
    out = apply(m, np.sort(rng.uniform(-6, 6, 200)))
    assert np.all(np.diff(out) >= 0)


def test_recovers_affine_transform():
    # site intensities are a * z + b of reference intensities z ~ N(0, 1)
    a, b = 0.7, 0.5
    m = quantile_map(_gauss_hist(b, a), _gauss_hist(0.0, 1.0), EDGES)
    x = np.linspace(b - 2 * a, b + 2 * a, 41)
    np.testing.assert_allclose(apply(m, x), (x - b) / a, atol=0.05)


def test_w1_after_mapping_is_near_zero(rng):
    site_sample = rng.normal(0.5, 0.7, 4000)
    ref_sample = rng.normal(0.0, 1.0, 4000)
    m = quantile_map(np.histogram(site_sample, EDGES)[0], np.histogram(ref_sample, EDGES)[0], EDGES)
    before = ot.wasserstein_1d(site_sample, ref_sample)
    after = ot.wasserstein_1d(apply(m, site_sample), ref_sample)
    assert before > 0.4 and after < 0.05


def test_apply_leaves_outside_mask_alone():
    m = quantile_map(_gauss_hist(1.0, 1.0), _gauss_hist(0.0, 1.0), EDGES)
    image = np.full((4, 4, 4), 1.0)
    mask = np.zeros_like(image, bool)
    mask[:2] = True
    out = apply(m, image, mask)
    assert np.allclose(out[~mask], 1.0) and np.allclose(out[mask], 0.0, atol=0.05)
    np.testing.assert_allclose(apply(identity_map(EDGES), image), image)
    with pytest.raises(ValueError, match="mask shape"):
        apply(m, image, mask[0])


def test_rejects_empty_histogram():
    with pytest.raises(ValueError, match="not all zero"):
        quantile_map(np.zeros(128), _gauss_hist(0.0, 1.0), EDGES)
