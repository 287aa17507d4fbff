"""Per-class statistics of a site's voxel embeddings: counts, sums and sums of outer
products (they add up across sites), the Gaussians they give, and how voxels are sampled.

Part of the sufficient statistics of :mod:`fedshift.shift.stats`; a single site's values
never leave the hospital in the clear (only the securely aggregated sum does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

CLASSES: tuple[str, ...] = ("background", "lesion", "all")
"""Embedding classes in vector order; ``"all"`` is the unconditional class of unlabelled sites."""


@dataclass(frozen=True, eq=False)
class EmbeddingStats:
    """Additive moments of one class of embeddings.

    Attributes
    ----------
    n : float, number of embeddings (voxels)
    s : np.ndarray, shape (F,), their sum
    S : np.ndarray, shape (F, F), sum of their outer products ``sum_i x_i x_i^T``
    """

    n: float
    s: np.ndarray
    S: np.ndarray

    @classmethod
    def zeros(cls, feat_dim: int) -> EmbeddingStats:
        """Statistics of no embeddings, the neutral element of ``+``."""
        return cls(0.0, np.zeros(feat_dim), np.zeros((feat_dim, feat_dim)))

    def __add__(self, other: EmbeddingStats) -> EmbeddingStats:
        return EmbeddingStats(self.n + other.n, self.s + other.s, self.S + other.S)


class Gaussian(NamedTuple):
    """Mean ``(F,)`` and covariance ``(F, F)``; unpacks as ``mean, cov = g``."""

    mean: np.ndarray
    cov: np.ndarray


def _moments(x: np.ndarray) -> EmbeddingStats:
    x = np.asarray(x, dtype=np.float64)
    return EmbeddingStats(float(x.shape[0]), x.sum(axis=0), x.T @ x)


def embedding_stats(features: np.ndarray, labels: np.ndarray | None) -> dict[str, EmbeddingStats]:
    """Per-class moments of embeddings.

    Parameters
    ----------
    features : np.ndarray, shape (N, F)
        One embedding per row (see :func:`sample_voxels`).
    labels : np.ndarray, shape (N,), int, or None
        ``> 0`` lesion, ``0`` background; ``None`` for a site without labels.

    Returns
    -------
    dict
        ``{"background": ..., "lesion": ...}`` with labels, ``{"all": ...}`` without.
        Stays at the site; only sums over sites leave it.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, F), got shape {features.shape}")
    if labels is None:
        return {"all": _moments(features)}
    labels = np.asarray(labels)
    if labels.shape != features.shape[:1]:
        raise ValueError(f"labels must have shape ({features.shape[0]},), got {labels.shape}")
    lesion = labels > 0
    return {"background": _moments(features[~lesion]), "lesion": _moments(features[lesion])}


def embedding_size(feat_dim: int) -> int:
    """Length of the :func:`to_vector` encoding: per class 1 + F + F (F + 1) / 2."""
    return len(CLASSES) * (1 + feat_dim + feat_dim * (feat_dim + 1) // 2)


def to_vector(stats: Mapping[str, EmbeddingStats], feat_dim: int) -> np.ndarray:
    """Encode per-class statistics in the fixed layout (``to_vector`` is additive).

    Per class of :data:`CLASSES`, in order: ``n``, ``s`` (F,), upper triangle of ``S``
    (row-major). Missing classes are zeros.

    Returns
    -------
    np.ndarray, shape (embedding_size(F),), float64
    """
    unknown = set(stats) - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown classes {sorted(unknown)}; valid: {list(CLASSES)}")
    rows, cols = np.triu_indices(feat_dim)
    parts = []
    for name in CLASSES:
        st = stats.get(name, EmbeddingStats.zeros(feat_dim))
        if st.s.shape != (feat_dim,):
            raise ValueError(f"class {name!r}: sum has shape {st.s.shape}, expected ({feat_dim},)")
        parts += [np.array([st.n]), st.s, st.S[rows, cols]]
    return np.concatenate(parts).astype(np.float64)


def from_vector(vec: np.ndarray, feat_dim: int) -> dict[str, EmbeddingStats]:
    """Decode :func:`to_vector`; returns every class of :data:`CLASSES` (zeros if absent)."""
    vec = np.asarray(vec, dtype=np.float64)
    if vec.shape != (embedding_size(feat_dim),):
        raise ValueError(
            f"vector of shape {vec.shape} does not fit feat_dim={feat_dim} "
            f"(expected ({embedding_size(feat_dim)},))"
        )
    rows, cols = np.triu_indices(feat_dim)
    n_tri = rows.size
    out: dict[str, EmbeddingStats] = {}
    for k, chunk in enumerate(np.split(vec, len(CLASSES))):
        S = np.zeros((feat_dim, feat_dim))
        S[rows, cols] = chunk[1 + feat_dim : 1 + feat_dim + n_tri]
        S = S + np.triu(S, 1).T
        out[CLASSES[k]] = EmbeddingStats(float(chunk[0]), chunk[1 : 1 + feat_dim].copy(), S)
    return out


def gaussian_from(stats: EmbeddingStats, ridge: float = 1e-6) -> Gaussian:
    """Mean and unbiased covariance from summed moments.

    ``mean = s / n``, ``cov = (S - n mean mean^T) / (n - 1) + ridge * I``; the ridge
    keeps the covariance positive definite (Bures maps invert its square root).

    Raises
    ------
    ValueError
        If ``n < 2``.
    """
    if stats.n < 2:
        raise ValueError(f"need at least 2 embeddings for a covariance, got n={stats.n}")
    mean = stats.s / stats.n
    cov = (stats.S - stats.n * np.outer(mean, mean)) / (stats.n - 1)
    cov = 0.5 * (cov + cov.T) + ridge * np.eye(mean.size)
    return Gaussian(mean, cov)


def sample_voxels(
    features: np.ndarray,
    label: np.ndarray | None,
    mask: np.ndarray,
    n_per_class: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Sample voxel embeddings, lesion and background separately.

    Parameters
    ----------
    features : np.ndarray, shape (F, X, Y, Z)
        Embeddings g(x) of one case (one item of ``(B, F, D, H, W)``).
    label : np.ndarray, shape (X, Y, Z), or None
        Lesion mask (``> 0`` lesion). Every lesion voxel is a candidate, background is
        ``mask & (label == 0)``. ``None``: sample ``mask`` without regard to class.
    mask : np.ndarray, shape (X, Y, Z), bool
        Brain mask.
    n_per_class : int
        At most this many voxels per class (fewer if the class is smaller), without
        replacement, so the class mix does not follow the lesion load.
    rng : np.random.Generator

    Returns
    -------
    features : np.ndarray, shape (N, F)
    labels : np.ndarray, shape (N,), int64 (1 lesion, 0 background), or None without label
    """
    features = np.asarray(features)
    mask = np.asarray(mask, dtype=bool)
    if features.ndim != 4 or features.shape[1:] != mask.shape:
        raise ValueError(f"features {features.shape} must be (F, *mask.shape), mask {mask.shape}")
    flat = features.reshape(features.shape[0], -1)

    def pick(where: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(where)
        return rng.choice(idx, size=min(n_per_class, idx.size), replace=False)

    if label is None:
        return flat[:, pick(mask)].T.astype(np.float64), None
    label = np.asarray(label)
    if label.shape != mask.shape:
        raise ValueError(f"label shape {label.shape} differs from mask shape {mask.shape}")
    bg, les = pick(mask & (label == 0)), pick(label > 0)
    idx = np.concatenate([bg, les])
    labels = np.concatenate([np.zeros(bg.size, np.int64), np.ones(les.size, np.int64)])
    return flat[:, idx].T.astype(np.float64), labels
