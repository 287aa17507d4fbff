"""Monotone 1-D optimal transport of brain intensities onto the federation's histogram.

In 1-D the optimal transport map for any convex cost is the quantile map
``T = F_ref^{-1} o F_site`` (Villani 2003, Thm 2.18; Peyré & Cuturi 2019, Remark 2.30).
Histograms are read as piecewise-constant densities (uniform within a bin), so both CDFs
are piecewise linear and so is ``T``: it is stored exactly as knots ``(x, y)``.

The site's histogram stays at the site; the reference histogram is the federation's sum
(see :mod:`fedshift.shift.reference`). The map is fitted and applied locally.

References
----------
.. [1] Villani, C. (2003). Topics in Optimal Transportation. AMS.
.. [2] Peyré, G., & Cuturi, M. (2019). Computational optimal transport. Foundations and
   Trends in Machine Learning, 11(5-6), 355-607.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class IntensityMap:
    """Monotone piecewise-linear map through knots ``(x[k], y[k])``.

    Attributes
    ----------
    x : np.ndarray, shape (K,), strictly increasing site intensities
    y : np.ndarray, shape (K,), non-decreasing reference intensities

    Outside ``[x[0], x[-1]]`` the map is constant (``y[0]`` / ``y[-1]``).
    """

    x: np.ndarray
    y: np.ndarray


def _check(counts: np.ndarray, edges: np.ndarray, name: str) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or counts.shape != (edges.size - 1,):
        raise ValueError(f"{name} has shape {counts.shape}, edges want ({edges.size - 1},)")
    if np.any(counts < 0) or not np.isfinite(counts).all() or counts.sum() <= 0:
        raise ValueError(f"{name} must be finite, non-negative and not all zero")
    return counts


def cdf(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """CDF of a histogram at its edges.

    Returns
    -------
    np.ndarray, shape (K + 1,), from 0 to 1
    """
    counts = _check(counts, edges, "counts")
    c = np.concatenate([[0.0], np.cumsum(counts)])
    return np.clip(c / c[-1], 0.0, 1.0)


def histogram_quantiles(counts: np.ndarray, edges: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantile function ``F^{-1}(levels)`` of a histogram with uniform density in each bin.

    Parameters
    ----------
    counts : np.ndarray, shape (K,), non-negative
    edges : np.ndarray, shape (K + 1,), increasing
    levels : np.ndarray, values in [0, 1]

    Returns
    -------
    np.ndarray, shape of ``levels``; ``F^{-1}(l) = inf {x : F(x) >= l}``, and ``F^{-1}(0)``
    is the left end of the support.
    """
    edges = np.asarray(edges, dtype=np.float64)
    c = cdf(counts, edges)
    levels = np.clip(np.asarray(levels, dtype=np.float64), 0.0, 1.0)
    k = np.clip(np.searchsorted(c, levels, side="left"), 1, edges.size - 1)
    # bin k - 1 holds mass at this level: c[k - 1] < level <= c[k], except at level 0
    k0 = int(np.argmax(c > 0))  # first bin with mass is k0 - 1
    k = np.where(levels <= 0.0, k0, k)
    lo, width, mass = c[k - 1], np.diff(edges)[k - 1], c[k] - c[k - 1]
    frac = np.where(mass > 0, (levels - lo) / np.where(mass > 0, mass, 1.0), 0.0)
    return edges[k - 1] + np.clip(frac, 0.0, 1.0) * width


def quantile_map(
    site_counts: np.ndarray, ref_counts: np.ndarray, edges: np.ndarray
) -> IntensityMap:
    """Monotone OT map of the site's intensity histogram onto the reference histogram.

    ``T = F_ref^{-1} o F_site``, exact for piecewise-uniform histograms: its knots sit at
    every level where either CDF has a break.

    Parameters
    ----------
    site_counts : np.ndarray, shape (K,)
        The site's brain-intensity histogram (stays at the site).
    ref_counts : np.ndarray, shape (K,)
        The federation's histogram, same ``edges``.
    edges : np.ndarray, shape (K + 1,)

    Returns
    -------
    IntensityMap
    """
    levels = np.unique(np.concatenate([cdf(site_counts, edges), cdf(ref_counts, edges)]))
    x = histogram_quantiles(site_counts, edges, levels)
    y = histogram_quantiles(ref_counts, edges, levels)
    keep = np.concatenate([[True], np.diff(x) > 1e-12 * max(1.0, float(np.ptp(x)))])
    return IntensityMap(x=x[keep], y=np.maximum.accumulate(y[keep]))


def identity_map(edges: np.ndarray) -> IntensityMap:
    """The map that changes nothing inside ``[edges[0], edges[-1]]``."""
    ends = np.asarray(edges, dtype=np.float64)[[0, -1]]
    return IntensityMap(x=ends, y=ends.copy())


def apply(mapping: IntensityMap, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Map intensities inside ``mask`` (all voxels if None); voxels outside keep their value.

    Parameters
    ----------
    mapping : IntensityMap
    image : np.ndarray, any shape, z-scored intensities
    mask : np.ndarray, bool, shape of ``image``, optional

    Returns
    -------
    np.ndarray, float64 copy of ``image``
    """
    out = np.array(image, dtype=np.float64)
    if mask is None:
        return np.interp(out, mapping.x, mapping.y)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != out.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {out.shape}")
    out[mask] = np.interp(out[mask], mapping.x, mapping.y)
    return out
