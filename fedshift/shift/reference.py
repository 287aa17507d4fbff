"""The federation's reference, built by the coordinator from securely summed statistics.

Input is the sum over sites of :class:`fedshift.shift.stats.SiteStatistics` (the only thing
secure aggregation reveals); output is what the coordinator broadcasts to every site:

- class-conditional Gaussians ``N(mean_c, cov_c)`` of the pooled embeddings: the moments
  of the union of all sites' sampled voxels of class ``c`` (the mixture of the sites'
  distributions, weighted by their sample counts);
- the pooled brain-intensity histogram, normalised, and its quantiles;
- the pooled lesion-count and lesion-volume histograms, normalised over labelled cases;
- the summed kernel summaries of the cases' shift descriptors
  (:mod:`fedshift.shift.descriptors`), from which each site measures how much its cases
  look like the rest of the federation's.

Only what is computable from sums is offered. In particular the Bures-Wasserstein
barycenter of the sites' Gaussians (``ot.gaussian.bures_wasserstein_barycenter``) is *not*:
it needs each site's mean and covariance, which secure aggregation hides. Its mean equals
the pooled mean when sites are weighted by sample count; its covariance differs from the
pooled one, which also holds the spread between the sites' means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedshift.shift.descriptors import FAMILIES, KernelSummary
from fedshift.shift.embeddings import CLASSES, Gaussian, gaussian_from
from fedshift.shift.intensity import histogram_quantiles
from fedshift.shift.stats import SiteStatistics

QUANTILE_LEVELS: np.ndarray = np.linspace(0.0, 1.0, 101)
"""Default quantile levels reported for the intensity reference (percentiles)."""


@dataclass(frozen=True, eq=False)
class Reference:
    """What the coordinator broadcasts; derived from sums over >= 3 sites.

    Attributes
    ----------
    gaussians : dict[str, Gaussian]
        Per class of :data:`fedshift.shift.embeddings.CLASSES` that has at least
        ``min_count`` embeddings: mean (F,) and covariance (F, F).
    counts : dict[str, float]
        Embeddings behind each Gaussian.
    intensity_edges : np.ndarray, shape (K + 1,)
    intensity_pmf : np.ndarray, shape (K,), sums to 1 (zeros if no voxel)
    intensity_quantiles : np.ndarray, shape (Q,), at ``quantile_levels``
    quantile_levels : np.ndarray, shape (Q,)
    count_edges, volume_edges : np.ndarray
        Lesion-load grids (lesions per case; mL per case).
    lesion_count_pmf, lesion_volume_pmf : np.ndarray
        Share of labelled cases per bin (zeros without labelled cases).
    cases, labelled_cases : float
    descriptors : dict[str, KernelSummary]
        Per descriptor family, the sum over sites (``n`` cases, random-feature sums).
    """

    gaussians: dict[str, Gaussian]
    counts: dict[str, float]
    intensity_edges: np.ndarray
    intensity_pmf: np.ndarray
    intensity_quantiles: np.ndarray
    quantile_levels: np.ndarray
    count_edges: np.ndarray
    volume_edges: np.ndarray
    lesion_count_pmf: np.ndarray
    lesion_volume_pmf: np.ndarray
    cases: float
    labelled_cases: float
    descriptors: dict[str, KernelSummary]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat name -> float64 array mapping (for a Flower ArrayRecord)."""
        out = {
            name: np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64))
            for name in _ARRAY_FIELDS
        }
        for cls, (mean, cov) in self.gaussians.items():
            out[f"gaussian.{cls}.mean"] = mean
            out[f"gaussian.{cls}.cov"] = cov
            out[f"gaussian.{cls}.count"] = np.array([self.counts[cls]])
        for family, summary in self.descriptors.items():
            out[f"descriptors.{family}"] = summary.to_vector()
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Reference:
        """Inverse of :meth:`to_arrays`."""
        missing = [name for name in _ARRAY_FIELDS if name not in arrays]
        if missing:
            raise ValueError(f"reference arrays lack {missing}")
        fields = {name: np.asarray(arrays[name], dtype=np.float64) for name in _ARRAY_FIELDS}
        present = [c for c in CLASSES if f"gaussian.{c}.mean" in arrays]
        return cls(
            gaussians={
                c: Gaussian(
                    np.asarray(arrays[f"gaussian.{c}.mean"], dtype=np.float64),
                    np.asarray(arrays[f"gaussian.{c}.cov"], dtype=np.float64),
                )
                for c in present
            },
            counts={c: float(np.asarray(arrays[f"gaussian.{c}.count"])[0]) for c in present},
            **{k: v for k, v in fields.items() if k not in ("cases", "labelled_cases")},
            cases=float(fields["cases"][0]),
            labelled_cases=float(fields["labelled_cases"][0]),
            descriptors={
                f: KernelSummary.from_vector(f, np.asarray(arrays[f"descriptors.{f}"]))
                for f in FAMILIES
                if f"descriptors.{f}" in arrays
            },
        )


_ARRAY_FIELDS = (
    "intensity_edges",
    "intensity_pmf",
    "intensity_quantiles",
    "quantile_levels",
    "count_edges",
    "volume_edges",
    "lesion_count_pmf",
    "lesion_volume_pmf",
    "cases",
    "labelled_cases",
)


def _normalise(counts: np.ndarray) -> np.ndarray:
    total = float(np.sum(counts))
    return counts / total if total > 0 else np.zeros_like(counts)


def build_reference(
    total: SiteStatistics,
    *,
    ridge: float = 1e-6,
    min_count: int = 10,
    quantile_levels: np.ndarray = QUANTILE_LEVELS,
) -> Reference:
    """The federation's reference from the summed statistics.

    Parameters
    ----------
    total : SiteStatistics
        Sum over sites (decoded from the aggregated vector with
        :meth:`SiteStatistics.from_vector`).
    ridge : float
        Added to every covariance diagonal (see :func:`~fedshift.shift.embeddings.gaussian_from`).
    min_count : int
        A class with fewer pooled embeddings gets no Gaussian.
    quantile_levels : np.ndarray, shape (Q,), in [0, 1]

    Returns
    -------
    Reference
    """
    if min_count < 2:
        raise ValueError(f"min_count must be >= 2 (a covariance needs 2 samples), got {min_count}")
    gaussians, counts = {}, {}
    for cls in CLASSES:
        st = total.embeddings.get(cls)
        if st is not None and st.n >= min_count:
            gaussians[cls] = gaussian_from(st, ridge=ridge)
            counts[cls] = float(st.n)
    layout = total.layout
    levels = np.asarray(quantile_levels, dtype=np.float64)
    if total.intensity.sum() > 0:
        quantiles = histogram_quantiles(total.intensity, layout.intensity_edges, levels)
    else:
        quantiles = np.full(levels.shape, np.nan)
    return Reference(
        gaussians=gaussians,
        counts=counts,
        intensity_edges=layout.intensity_edges.copy(),
        intensity_pmf=_normalise(total.intensity),
        intensity_quantiles=quantiles,
        quantile_levels=levels.copy(),
        count_edges=layout.count_edges.copy(),
        volume_edges=layout.volume_edges.copy(),
        lesion_count_pmf=_normalise(total.lesion_count),
        lesion_volume_pmf=_normalise(total.lesion_volume),
        cases=total.cases,
        labelled_cases=total.labelled_cases,
        descriptors=dict(total.descriptors),
    )
