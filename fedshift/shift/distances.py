"""Distances between a site and the federation's reference, and the Bures affine map.

Thin, checked wrappers around POT (``ot.gaussian``, ``ot.wasserstein_1d``) so the rest of
FedShift gets plain floats and one result type. All inputs are statistics the site holds
(its own) or received (the reference); the distances are scalars a site may report.

References
----------
.. [1] Peyré, G., & Cuturi, M. (2019). Computational optimal transport. Foundations and
   Trends in Machine Learning, 11(5-6), 355-607 (Remarks 2.29-2.31: Bures-Wasserstein).
.. [2] Knott, M., & Smith, C. S. (1984). On the optimal mapping of distributions.
   Journal of Optimization Theory and Applications, 43(1), 39-49.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ot


@dataclass(frozen=True, eq=False)
class AffineMap:
    """``x -> A x + b`` acting on embeddings.

    Attributes
    ----------
    A : np.ndarray, shape (F, F)
    b : np.ndarray, shape (F,)
    """

    A: np.ndarray
    b: np.ndarray


def _gaussian(mean: np.ndarray, cov: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if mean.ndim != 1 or cov.shape != (mean.size, mean.size):
        raise ValueError(f"{name}: mean {mean.shape} and cov {cov.shape} must be (F,), (F, F)")
    return mean, 0.5 * (cov + cov.T)


def bures_wasserstein(
    mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray
) -> float:
    """2-Wasserstein distance between two Gaussians.

    ``W^2 = ||m1 - m2||^2 + Tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2})`` [1]_.

    Parameters
    ----------
    mean1, mean2 : np.ndarray, shape (F,)
    cov1, cov2 : np.ndarray, shape (F, F), symmetric positive semi-definite

    Returns
    -------
    float, >= 0, in embedding units
    """
    m1, c1 = _gaussian(mean1, cov1, "first Gaussian")
    m2, c2 = _gaussian(mean2, cov2, "second Gaussian")
    if m1.shape != m2.shape:
        raise ValueError(f"dimensions differ: {m1.size} vs {m2.size}")
    return float(ot.gaussian.bures_wasserstein_distance(m1, m2, c1, c2))


def bures_map(
    mean_s: np.ndarray, cov_s: np.ndarray, mean_t: np.ndarray, cov_t: np.ndarray
) -> AffineMap:
    """Optimal transport map between two Gaussians, source -> target [2]_.

    ``A = C_s^{-1/2} (C_s^{1/2} C_t C_s^{1/2})^{1/2} C_s^{-1/2}``, ``b = m_t - A m_s``;
    ``C_s`` must be positive definite (see the ridge of
    :func:`fedshift.shift.embeddings.gaussian_from`).

    Returns
    -------
    AffineMap
    """
    ms, cs = _gaussian(mean_s, cov_s, "source")
    mt, ct = _gaussian(mean_t, cov_t, "target")
    if ms.shape != mt.shape:
        raise ValueError(f"dimensions differ: {ms.size} vs {mt.size}")
    A, b = ot.gaussian.bures_wasserstein_mapping(ms, mt, cs, ct)
    A = np.asarray(A, dtype=np.float64)
    return AffineMap(A=0.5 * (A + A.T), b=np.asarray(b, dtype=np.float64).reshape(-1))


def apply_affine_map(
    features: np.ndarray, A: np.ndarray, b: np.ndarray, axis: int = -1
) -> np.ndarray:
    """Apply ``x -> A x + b`` to the feature axis.

    Parameters
    ----------
    features : np.ndarray, e.g. (N, F) with ``axis=-1`` or (B, F, D, H, W) with ``axis=1``
    A : np.ndarray, shape (F, F)
    b : np.ndarray, shape (F,)
    axis : int, the feature axis

    Returns
    -------
    np.ndarray, shape of ``features``
    """
    x = np.moveaxis(np.asarray(features, dtype=np.float64), axis, -1)
    A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64).reshape(-1)
    if A.shape != (x.shape[-1], x.shape[-1]) or b.shape != (x.shape[-1],):
        raise ValueError(f"A {A.shape} and b {b.shape} do not fit {x.shape[-1]} features")
    return np.moveaxis(x @ A.T + b, -1, axis)


def _weights(counts: np.ndarray, edges: np.ndarray, name: str) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (np.size(edges) - 1,):
        raise ValueError(f"{name} has shape {counts.shape}, edges want ({np.size(edges) - 1},)")
    total = counts.sum()
    if np.any(counts < 0) or not np.isfinite(total) or total <= 0:
        raise ValueError(f"{name} must be finite, non-negative and not all zero")
    return counts / total


def wasserstein_1d_hist(
    counts_a: np.ndarray, counts_b: np.ndarray, edges: np.ndarray, p: int = 1
) -> float:
    """p-Wasserstein distance between two histograms on the same bins.

    Each bin is a Dirac at its centre with weight ``count / total``.

    Parameters
    ----------
    counts_a, counts_b : np.ndarray, shape (K,)
    edges : np.ndarray, shape (K + 1,)
    p : int, order (1 or 2 usually)

    Returns
    -------
    float, in the units of ``edges`` (``W_p``, not ``W_p^p``)
    """
    edges = np.asarray(edges, dtype=np.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    return _w1d(
        centres, _weights(counts_a, edges, "counts_a"), _weights(counts_b, edges, "counts_b"), p
    )


def _w1d(positions: np.ndarray, wa: np.ndarray, wb: np.ndarray, p: int) -> float:
    cost = ot.wasserstein_1d(positions, positions, wa, wb, p=p)
    return float(max(float(cost), 0.0) ** (1.0 / p))


def histogram_distance(counts_a: np.ndarray, counts_b: np.ndarray, edges: np.ndarray) -> float:
    """1-Wasserstein distance between lesion-load histograms on a log scale.

    Bin centres are placed at ``log1p(centre)``, so a case with 2 mL against one with
    4 mL weighs about as much as 20 mL against 40 mL, and zero (no lesion) stays finite.

    Parameters
    ----------
    counts_a, counts_b : np.ndarray, shape (K,), cases per bin
    edges : np.ndarray, shape (K + 1,), non-negative (lesion count or volume in mL)

    Returns
    -------
    float, in units of ``log1p`` (nats)
    """
    edges = np.asarray(edges, dtype=np.float64)
    if np.any(edges < 0):
        raise ValueError(f"edges must be non-negative for a log scale, got {edges!r}")
    positions = np.log1p(0.5 * (edges[1:] + edges[:-1]))
    wa, wb = _weights(counts_a, edges, "counts_a"), _weights(counts_b, edges, "counts_b")
    return _w1d(positions, wa, wb, 1)
