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

import numpy as np

from fedshift.shift.case_descriptors import lesion_load
from fedshift.shift.descriptors import FAMILIES, KernelSummary, summary_size
from fedshift.shift.embeddings import (
    CLASSES,
    EmbeddingStats,
    embedding_size,
    embedding_stats,
    from_vector,
    to_vector,
)

INTENSITY_EDGES: np.ndarray = np.linspace(-5.0, 5.0, 129)
"""Default grid for z-scored brain intensities: 128 bins over [-5, 5]."""

LESION_COUNT_EDGES: np.ndarray = np.array(
    [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256], dtype=np.float64
)
"""Default grid for lesions per case; bin ``[k, k+1)`` holds exactly k lesions up to 4."""

LESION_VOLUME_EDGES: np.ndarray = np.concatenate([[0.0], np.geomspace(0.01, 200.0, 16)])
"""Default grid for total lesion volume per case (mL): 0, then log-spaced 0.01 .. 200 mL."""


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
