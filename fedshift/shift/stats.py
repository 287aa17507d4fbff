"""Sufficient statistics that add up across sites.

A site summarises its data as sums — voxel counts, sums and sums of outer products of
its embeddings per class, intensity histograms and lesion-load histograms on bin grids
that every site shares — so that the sum of the sites' vectors is the vector of the
federation's statistics. Only that sum leaves the secure aggregation (>= 3 sites); a
single site's vector never leaves the hospital in the clear.

Classes: a labelled site contributes ``"background"`` and ``"lesion"``; a site without
labels contributes one unconditional class ``"all"``. The vector layout holds all three
in that fixed order (absent classes are zeros), so it does not depend on which sites
take part nor on how many.

References
----------
.. [1] Bonawitz et al. (2017). Practical secure aggregation for privacy-preserving
   machine learning. CCS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from fedshift.shift.case_descriptors import lesion_load
from fedshift.shift.descriptors import FAMILIES, KernelSummary, summary_size

CLASSES: tuple[str, ...] = ("background", "lesion", "all")
"""Embedding classes in vector order; ``"all"`` is the unconditional class of unlabelled sites."""

INTENSITY_EDGES: np.ndarray = np.linspace(-5.0, 5.0, 129)
"""Default grid for z-scored brain intensities: 128 bins over [-5, 5]."""

LESION_COUNT_EDGES: np.ndarray = np.array(
    [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256], dtype=np.float64
)
"""Default grid for lesions per case; bin ``[k, k+1)`` holds exactly k lesions up to 4."""

LESION_VOLUME_EDGES: np.ndarray = np.concatenate([[0.0], np.geomspace(0.01, 200.0, 16)])
"""Default grid for total lesion volume per case (mL): 0, then log-spaced 0.01 .. 200 mL."""


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


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of finite ``values`` on ``edges``; values outside are clipped to the end bins.

    Returns
    -------
    np.ndarray, shape (len(edges) - 1,), float64
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"edges must be 1-D and strictly increasing, got {edges!r}")
    v = np.asarray(values, dtype=np.float64).ravel()
    v = np.clip(v[np.isfinite(v)], edges[0], edges[-1])
    return np.histogram(v, bins=edges)[0].astype(np.float64)


def intensity_histogram(image: np.ndarray, mask: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Histogram of the (z-scored) intensities inside the brain mask.

    ``image`` (X, Y, Z) and bool ``mask`` (X, Y, Z); ``edges`` (K + 1,) shared by all sites,
    e.g. :data:`INTENSITY_EDGES`. Returns float64 voxel counts, shape (K,).
    """
    mask = np.asarray(mask, dtype=bool)
    if np.shape(image) != mask.shape:
        raise ValueError(f"image shape {np.shape(image)} differs from mask shape {mask.shape}")
    return histogram(np.asarray(image)[mask], edges)


@dataclass(frozen=True, eq=False)
class StatsLayout:
    """Where each statistic sits in the secure-aggregation vector.

    Depends only on the embedding size and the bin grids, never on the number of sites.
    Fields in order: ``cases``, ``labelled_cases`` (1 each), ``embeddings``
    (:func:`embedding_size`), ``intensity``, ``lesion_count``, ``lesion_volume``
    (one value per bin), ``descriptors`` (a
    :class:`~fedshift.shift.descriptors.KernelSummary` per family of
    :data:`~fedshift.shift.descriptors.FAMILIES`, in that order).
    """

    feat_dim: int
    intensity_edges: np.ndarray = field(default_factory=lambda: INTENSITY_EDGES.copy())
    count_edges: np.ndarray = field(default_factory=lambda: LESION_COUNT_EDGES.copy())
    volume_edges: np.ndarray = field(default_factory=lambda: LESION_VOLUME_EDGES.copy())

    def fields(self) -> dict[str, slice]:
        """Name -> slice of the vector."""
        sizes = {
            "cases": 1,
            "labelled_cases": 1,
            "embeddings": embedding_size(self.feat_dim),
            "intensity": len(self.intensity_edges) - 1,
            "lesion_count": len(self.count_edges) - 1,
            "lesion_volume": len(self.volume_edges) - 1,
            "descriptors": sum(summary_size(f) for f in FAMILIES),
        }
        out, start = {}, 0
        for name, size in sizes.items():
            out[name] = slice(start, start + size)
            start += size
        return out

    @property
    def size(self) -> int:
        """Length of the vector."""
        return list(self.fields().values())[-1].stop

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description: grids and ``[start, stop]`` of every field."""
        return {
            "feat_dim": self.feat_dim,
            "classes": list(CLASSES),
            "intensity_edges": self.intensity_edges.tolist(),
            "count_edges": self.count_edges.tolist(),
            "volume_edges": self.volume_edges.tolist(),
            "descriptor_families": list(FAMILIES),
            "fields": {k: [s.start, s.stop] for k, s in self.fields().items()},
            "size": self.size,
        }


@dataclass(frozen=True, eq=False)
class SiteStatistics:
    """Everything a site (or a sum of sites) puts into one secure-aggregation vector.

    Attributes
    ----------
    layout : StatsLayout
    cases, labelled_cases : float
        Number of cases and of those with a label.
    embeddings : dict[str, EmbeddingStats]
        Every class of :data:`CLASSES`.
    intensity : np.ndarray, shape (K,)
        Brain-intensity counts on ``layout.intensity_edges``.
    lesion_count, lesion_volume : np.ndarray
        Labelled cases per bin of ``layout.count_edges`` / ``layout.volume_edges`` (mL).
    descriptors : dict[str, KernelSummary]
        Per family of :data:`~fedshift.shift.descriptors.FAMILIES`, the kernel summary of
        the cases' shift descriptors.
    """

    layout: StatsLayout
    cases: float
    labelled_cases: float
    embeddings: dict[str, EmbeddingStats]
    intensity: np.ndarray
    lesion_count: np.ndarray
    lesion_volume: np.ndarray
    descriptors: dict[str, KernelSummary] = field(default_factory=dict)

    @classmethod
    def zeros(cls, layout: StatsLayout) -> SiteStatistics:
        """Statistics of no case, the neutral element of ``+``."""
        return cls.from_vector(np.zeros(layout.size), layout)

    def to_vector(self) -> np.ndarray:
        """1-D float64 vector in ``layout`` order; additive: ``(a + b).to_vector()``
        equals ``a.to_vector() + b.to_vector()``. Only its sum over sites leaves a site.
        """
        f = self.layout.fields()
        vec = np.zeros(self.layout.size)
        vec[f["cases"]] = self.cases
        vec[f["labelled_cases"]] = self.labelled_cases
        vec[f["embeddings"]] = to_vector(self.embeddings, self.layout.feat_dim)
        for name in ("intensity", "lesion_count", "lesion_volume"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (f[name].stop - f[name].start,):
                raise ValueError(f"{name} has shape {value.shape}, layout wants {f[name]}")
            vec[f[name]] = value
        vec[f["descriptors"]] = np.concatenate(
            [self.descriptors.get(k, KernelSummary.zeros(k)).to_vector() for k in FAMILIES]
        )
        return vec

    @classmethod
    def from_vector(cls, vec: np.ndarray, layout: StatsLayout) -> SiteStatistics:
        """Decode :meth:`to_vector` (e.g. the securely aggregated sum)."""
        vec = np.asarray(vec, dtype=np.float64)
        if vec.shape != (layout.size,):
            raise ValueError(f"vector has shape {vec.shape}, layout wants ({layout.size},)")
        f = layout.fields()
        return cls(
            layout=layout,
            cases=float(vec[f["cases"]][0]),
            labelled_cases=float(vec[f["labelled_cases"]][0]),
            embeddings=from_vector(vec[f["embeddings"]], layout.feat_dim),
            intensity=vec[f["intensity"]].copy(),
            lesion_count=vec[f["lesion_count"]].copy(),
            lesion_volume=vec[f["lesion_volume"]].copy(),
            descriptors=_split_summaries(vec[f["descriptors"]]),
        )

    def __add__(self, other: SiteStatistics) -> SiteStatistics:
        return SiteStatistics.from_vector(self.to_vector() + other.to_vector(), self.layout)


def _split_summaries(vec: np.ndarray) -> dict[str, KernelSummary]:
    out, start = {}, 0
    for family in FAMILIES:
        stop = start + summary_size(family)
        out[family] = KernelSummary.from_vector(family, vec[start:stop])
        start = stop
    return out


def case_statistics(
    layout: StatsLayout,
    image: np.ndarray,
    mask: np.ndarray,
    label: np.ndarray | None = None,
    spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
    samples: tuple[np.ndarray, np.ndarray | None] | None = None,
    descriptors: Mapping[str, Mapping[str, float]] | None = None,
) -> SiteStatistics:
    """Statistics of one preprocessed case; a site sums them over its cases.

    Parameters
    ----------
    layout : StatsLayout
    image : np.ndarray, shape (X, Y, Z), z-scored inside ``mask``
    mask : np.ndarray, shape (X, Y, Z), bool brain mask
    label : np.ndarray, shape (X, Y, Z), or None for an unlabelled case
    spacing_mm : voxel size (mm), for the lesion volume
    samples : (features (N, F), labels (N,) or None), optional
        Output of :func:`sample_voxels` on this case's embeddings; omitted: no embeddings.
    descriptors : family -> this case's descriptors, optional
        (:mod:`fedshift.shift.descriptors`); a family left out gets no contribution.
    """
    stats = SiteStatistics.zeros(layout)
    count_hist = np.zeros_like(stats.lesion_count)
    volume_hist = np.zeros_like(stats.lesion_volume)
    if label is not None:
        count, volume = lesion_load(label, spacing_mm)
        count_hist = histogram([count], layout.count_edges)
        volume_hist = histogram([volume], layout.volume_edges)
    embeddings = stats.embeddings
    if samples is not None:
        embeddings = {**embeddings, **embedding_stats(*samples)}
    return SiteStatistics(
        layout=layout,
        cases=1.0,
        labelled_cases=float(label is not None),
        embeddings=embeddings,
        intensity=intensity_histogram(image, mask, layout.intensity_edges),
        lesion_count=count_hist,
        lesion_volume=volume_hist,
        descriptors={
            family: KernelSummary.of(family, [values])
            for family, values in (descriptors or {}).items()
        },
    )
