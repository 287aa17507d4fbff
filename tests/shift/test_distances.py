"""Distances and the Bures map: zero on self, symmetry, push-forward moments."""

from __future__ import annotations

import numpy as np
import ot
import pytest

from fedshift.shift.distances import (
    apply_affine_map,
    bures_map,
    bures_wasserstein,
    histogram_distance,
    wasserstein_1d_hist,
)
from fedshift.shift.stats import LESION_VOLUME_EDGES

F = 4


def _gaussian(rng: np.random.Generator, shift: float = 0.0):
    m = rng.normal(size=(F, F))
    return rng.normal(size=F) + shift, m @ m.T + 0.5 * np.eye(F)


def test_bures_of_gaussian_to_itself_is_zero(rng):
    m, c = _gaussian(rng)
    assert bures_wasserstein(m, c, m, c) == pytest.approx(0.0, abs=1e-6)


def test_bures_symmetric_and_mean_part(rng):
    (m1, c1), (m2, c2) = _gaussian(rng), _gaussian(rng, 1.0)
    assert bures_wasserstein(m1, c1, m2, c2) == pytest.approx(bures_wasserstein(m2, c2, m1, c1))
    # equal covariances: only the means count
    assert bures_wasserstein(m1, c1, m1 + 3.0, c1) == pytest.approx(6.0, rel=1e-6)


def test_bures_commuting_covariances_closed_form():
    c1, c2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    expected = np.sqrt((1 - 3) ** 2 + (2 - 1) ** 2)  # || sqrt(C1) - sqrt(C2) ||_F
    assert bures_wasserstein(np.zeros(2), c1, np.zeros(2), c2) == pytest.approx(expected)


def test_bures_map_of_gaussian_to_itself_is_identity(rng):
    m, c = _gaussian(rng)
    t = bures_map(m, c, m, c)
    np.testing.assert_allclose(t.A, np.eye(F), atol=1e-8)
    np.testing.assert_allclose(t.b, 0.0, atol=1e-8)


def test_bures_map_pushes_sample_onto_target(rng):
    (ms, cs), (mt, ct) = _gaussian(rng), _gaussian(rng, 2.0)
    x = rng.multivariate_normal(ms, cs, size=500)
    emp_m, emp_c = x.mean(0), np.cov(x.T)
    t = bures_map(emp_m, emp_c, mt, ct)
    y = apply_affine_map(x, t.A, t.b)
    np.testing.assert_allclose(y.mean(0), mt, atol=1e-8)
    np.testing.assert_allclose(np.cov(y.T), ct, atol=1e-8)


def test_apply_affine_map_on_channel_axis(rng):
    (ms, cs), (mt, ct) = _gaussian(rng), _gaussian(rng, 1.0)
    t = bures_map(ms, cs, mt, ct)
    vol = rng.normal(size=(2, F, 3, 3, 3))  # (B, F, D, H, W)
    out = apply_affine_map(vol, t.A, t.b, axis=1)
    rows = apply_affine_map(np.moveaxis(vol, 1, -1).reshape(-1, F), t.A, t.b)
    np.testing.assert_allclose(np.moveaxis(out, 1, -1).reshape(-1, F), rows)
    with pytest.raises(ValueError, match="do not fit"):
        apply_affine_map(vol, t.A, t.b)


def test_wasserstein_1d_hist_matches_emd(rng):
    edges = np.linspace(-5, 5, 21)
    a, b = rng.random(20), rng.random(20)
    centres = 0.5 * (edges[1:] + edges[:-1])
    expected = ot.emd2(
        a / a.sum(), b / b.sum(), ot.dist(centres[:, None], centres[:, None], "euclidean")
    )
    assert wasserstein_1d_hist(a, b, edges) == pytest.approx(expected, rel=1e-6)
    assert wasserstein_1d_hist(a, b, edges) == pytest.approx(wasserstein_1d_hist(b, a, edges))
    assert wasserstein_1d_hist(a, 3 * a, edges) == pytest.approx(0.0, abs=1e-12)


def test_wasserstein_1d_hist_shift_is_distance():
    edges = np.arange(11.0)
    a = np.zeros(10)
    a[2] = 1
    b = np.roll(a, 3)
    assert wasserstein_1d_hist(a, b, edges) == pytest.approx(3.0)
    assert wasserstein_1d_hist(a, b, edges, p=2) == pytest.approx(3.0)


def test_histogram_distance_log_scale():
    edges = LESION_VOLUME_EDGES
    a = np.zeros(edges.size - 1)
    a[5] = 4
    assert histogram_distance(a, a, edges) == 0.0
    near, far = np.roll(a, 1), np.roll(a, 4)
    assert 0 < histogram_distance(a, near, edges) < histogram_distance(a, far, edges)
    with pytest.raises(ValueError, match="not all zero"):
        histogram_distance(a, np.zeros_like(a), edges)
