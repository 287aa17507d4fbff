"""What a site reports for the shift diagnosis, and each step that measures it.

A site's indicators are scalars (:class:`SiteIndicators`), measured at the site from its
own statistics (:class:`~fedshift.shift.stats.SiteStatistics`, which never leave it) and
the reference the coordinator broadcast (:class:`~fedshift.shift.reference.Reference`).
Each function below computes one group of them; :func:`fedshift.shift.diagnosis.measure`
puts them together, and :func:`fedshift.shift.diagnosis.diagnose` reads them at the
coordinator. Only the returned scalars leave the hospital.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedshift.shift.calibration import Calibration
from fedshift.shift.descriptors import (
    FAMILIES,
    SHIFT_KINDS,
    KernelSummary,
    mean_difference,
    robust_comparison,
    similarity,
)
from fedshift.shift.distances import bures_wasserstein, histogram_distance, wasserstein_1d_hist
from fedshift.shift.embeddings import gaussian_from
from fedshift.shift.reference import Reference
from fedshift.shift.stats import SiteStatistics

#: shift family -> the indicator that decides it
SIMILARITY: dict[str, str] = {family: f"{family}_similarity" for family in SHIFT_KINDS}
#: the descriptor families whose median offsets decide acquisition: the image's appearance
#: and the order of its tissues (:mod:`fedshift.shift.tissue`)
ACQUISITION_FAMILIES: tuple[str, ...] = ("acquisition", "tissue")
#: acquisition descriptor -> the indicator holding its median offset
OFFSET: dict[str, str] = {
    name: f"{name}_offset" for family in ACQUISITION_FAMILIES for name, _ in FAMILIES[family]
}
#: acquisition descriptor -> the indicator holding the evidence (z) of its offset
Z: dict[str, str] = {name: f"{name}_z" for name in OFFSET}
#: calibration measure -> (its indicator, its scale: the annotation descriptor's)
CALIBRATION: dict[str, tuple[str, float]] = {
    "volume": ("calibration_volume", dict(FAMILIES["annotation"])["volume_agreement"]),
    "count": ("calibration_count", dict(FAMILIES["annotation"])["count_agreement"]),
}


@dataclass(frozen=True)
class SiteIndicators:
    """Scalars one site reports (``None``: not measured, e.g. no labels).

    Attributes
    ----------
    site : str
    acquisition_similarity, population_similarity, annotation_similarity : how much the
        site's cases look like the rest of the federation's, per family (1 alike, 0 unlike)
    noise_offset, contrast_offset, nonuniformity_offset, sharpness_offset, csf_rank_offset :
        the site's median case minus the other sites' median case on that acquisition
        descriptor, in their robust spread floored at the descriptor's scale
        (:func:`~fedshift.shift.descriptors.robust_comparison`; ``FAMILIES["acquisition"]``,
        ``FAMILIES["tissue"]``)
    noise_z, contrast_z, nonuniformity_z, sharpness_z, csf_rank_z : the evidence for each
        offset: the difference of medians over its standard error (few or spread cases:
        small)
    population_effect : how far the site's predicted lesion load lies from the other
        sites', in spreads, as far as the mean and the median comparison agree
        (:func:`agreed_effect`; the population descriptor that differs most, with its
        sign: > 0 more or larger lesions than the rest)
    population_z : the evidence of the median comparison, as for the offsets
    population_mean_effect, population_median_effect : the two comparisons behind it
    cases, rest_cases : the site's cases and the other sites' cases the comparisons rest on
    intensity_w1 : 1-Wasserstein distance of brain intensities to the reference (z units)
    embedding_bw : Bures-Wasserstein distance of background (or, unlabelled, all) embeddings
        to the reference background Gaussian
    lesion_volume, lesion_count : 1-Wasserstein distances of the lesion-load histograms
        (log1p scale, see :func:`~fedshift.shift.distances.histogram_distance`)
    dice : Dice of the global model's prediction against the site's labels
    volume_bias : (label volume - predicted volume) / predicted volume
    calibration_volume, calibration_count, calibration_dice : the site's labels of the
        shared calibration cases against the reference standard (mean log volume and
        count ratios, Dice; :class:`~fedshift.shift.calibration.Calibration`)
    csf_rank : the site's median case's rank of CSF among deep tissue (0 darkest, 1
        brightest; :func:`~fedshift.shift.tissue.tissue_order`): about 0.03 on FLAIR,
        above 0.5 when CSF is brighter than white matter
    lesion_auc_nawm, lesion_auc_gm : mean over the site's labelled cases of the AUC of
        intensity for lesion against normal-appearing white matter / grey matter
        (:func:`~fedshift.shift.tissue.separability`), before the site's intensity map
    lesion_auc_nawm_mapped, lesion_auc_gm_mapped : the same after the map (equal for a
        strictly increasing map)
    """

    site: str
    acquisition_similarity: float | None = None
    population_similarity: float | None = None
    annotation_similarity: float | None = None
    noise_offset: float | None = None
    contrast_offset: float | None = None
    nonuniformity_offset: float | None = None
    sharpness_offset: float | None = None
    csf_rank_offset: float | None = None
    noise_z: float | None = None
    contrast_z: float | None = None
    nonuniformity_z: float | None = None
    sharpness_z: float | None = None
    csf_rank_z: float | None = None
    population_effect: float | None = None
    population_z: float | None = None
    population_mean_effect: float | None = None
    population_median_effect: float | None = None
    cases: float | None = None
    rest_cases: float | None = None
    intensity_w1: float | None = None
    embedding_bw: float | None = None
    lesion_volume: float | None = None
    lesion_count: float | None = None
    dice: float | None = None
    volume_bias: float | None = None
    calibration_volume: float | None = None
    calibration_count: float | None = None
    calibration_dice: float | None = None
    csf_rank: float | None = None
    lesion_auc_nawm: float | None = None
    lesion_auc_gm: float | None = None
    lesion_auc_nawm_mapped: float | None = None
    lesion_auc_gm_mapped: float | None = None


def intensity_distance(stats: SiteStatistics, reference: Reference) -> float | None:
    """1-Wasserstein distance of the site's brain-intensity histogram to the reference's.

    Parameters
    ----------
    stats : SiteStatistics
        The site's own statistics (stay at the site).
    reference : Reference

    Returns
    -------
    float or None
        The distance in z units (``intensity_w1``), ``None`` when either histogram is
        empty. A scalar the site reports.
    """
    if stats.intensity.sum() > 0 and reference.intensity_pmf.sum() > 0:
        return wasserstein_1d_hist(
            stats.intensity, reference.intensity_pmf, reference.intensity_edges
        )
    return None


def embedding_distance(
    stats: SiteStatistics, reference: Reference, ridge: float = 1e-6
) -> float | None:
    """Bures-Wasserstein distance of the site's embedding Gaussian to the reference's.

    The site's background embeddings (all embeddings when it has fewer than 2 background
    ones, e.g. an unlabelled site) against the reference's background Gaussian (``all``
    when the reference has no background one).

    Parameters
    ----------
    stats : SiteStatistics
        The site's own statistics (stay at the site).
    reference : Reference
    ridge : float
        Ridge of the site's covariance (see :func:`~fedshift.shift.embeddings.gaussian_from`).

    Returns
    -------
    float or None
        The distance in embedding units (``embedding_bw``), ``None`` without a reference
        Gaussian or with fewer than 2 site embeddings. A scalar the site reports.
    """
    target = reference.gaussians.get("background", reference.gaussians.get("all"))
    own = stats.embeddings["background"]
    if own.n < 2:
        own = stats.embeddings["all"]
    if target is None or own.n < 2:
        return None
    mean, cov = gaussian_from(own, ridge=ridge)
    return bures_wasserstein(mean, cov, target.mean, target.cov)


def lesion_load_distances(stats: SiteStatistics, reference: Reference) -> dict[str, float | None]:
    """1-Wasserstein distances of the site's lesion-load histograms to the reference's.

    Parameters
    ----------
    stats : SiteStatistics
        The site's own statistics (stay at the site).
    reference : Reference

    Returns
    -------
    dict
        ``lesion_volume`` and ``lesion_count`` (log1p scale, see
        :func:`~fedshift.shift.distances.histogram_distance`); both ``None`` unless the
        site and the reference have labelled cases. Scalars the site reports.
    """
    if stats.labelled_cases > 0 and reference.labelled_cases > 0:
        return {
            "lesion_volume": histogram_distance(
                stats.lesion_volume, reference.lesion_volume_pmf, reference.volume_edges
            ),
            "lesion_count": histogram_distance(
                stats.lesion_count, reference.lesion_count_pmf, reference.count_edges
            ),
        }
    return {"lesion_volume": None, "lesion_count": None}


def family_similarities(stats: SiteStatistics, reference: Reference) -> dict[str, float | None]:
    """How much the site's cases look like the rest of the federation's, per family.

    Parameters
    ----------
    stats : SiteStatistics
        The site's own statistics (stay at the site).
    reference : Reference

    Returns
    -------
    dict
        Indicator name (:data:`SIMILARITY`) -> the kernel similarity in [0, ~1]
        (:func:`~fedshift.shift.descriptors.similarity`; ``None`` with too few cases), for
        each kind of shift (``SHIFT_KINDS``) both sides summarised, in that order. Scalars
        the site reports.
    """
    return {
        SIMILARITY[f]: similarity(stats.descriptors[f], reference.descriptors[f])
        for f in SHIFT_KINDS
        if f in reference.descriptors and f in stats.descriptors
    }


def acquisition_offsets(
    stats: SiteStatistics, reference: Reference, centre: str = "federation"
) -> dict[str, float]:
    """The site's median case against the other sites', per acquisition descriptor.

    Parameters
    ----------
    stats : SiteStatistics
        The site's own statistics (stay at the site).
    reference : Reference
    centre : what the site's median case is compared with (``CENTRES`` of
        :func:`~fedshift.shift.descriptors.robust_comparison`)

    Returns
    -------
    dict
        Indicator name (:data:`OFFSET`) -> the offset in the other sites' robust spread,
        floored at the descriptor's scale, and (:data:`Z`) -> its evidence
        (:func:`~fedshift.shift.descriptors.robust_comparison`), for each family of
        :data:`ACQUISITION_FAMILIES` both sides summarised; with them ``cases`` and
        ``rest_cases``. Finite values only; empty when either side has too few cases.
        Scalars the site reports.
    """
    out: dict[str, float] = {}
    for family in ACQUISITION_FAMILIES:
        if family not in reference.descriptors or family not in stats.descriptors:
            continue
        found = robust_comparison(stats.descriptors[family], reference.descriptors[family], centre)
        for name, c in (found or {}).items():
            if np.isfinite(c.offset) and np.isfinite(c.z):
                out.update({OFFSET[name]: c.offset, Z[name]: c.z})
                out.update({"cases": float(c.cases[0]), "rest_cases": float(c.cases[1])})
    return out


def _own(stats: SiteStatistics, family: str) -> KernelSummary | None:
    """The site's own summary of ``family``, ``None`` without a case in it."""
    summary = stats.descriptors.get(family)
    return summary if summary is not None and round(summary.n) >= 1 else None


def tissue_indicators(stats: SiteStatistics) -> dict[str, float]:
    """The site's median case's tissue order, for the verdict's words and the report.

    Parameters
    ----------
    stats : SiteStatistics
        The site's own statistics (stay at the site).

    Returns
    -------
    dict
        ``csf_rank``: the median of its cases' CSF rank (:func:`~fedshift.shift.tissue.
        tissue_order`), read from its own histogram; empty without cases. A scalar the site
        reports (the federation's comparison is ``csf_rank_offset``).
    """
    own = _own(stats, "tissue")
    if own is None:
        return {}
    value = own.medians()["csf_rank"]
    return {"csf_rank": value} if np.isfinite(value) else {}


def separability_indicators(stats: SiteStatistics) -> dict[str, float]:
    """The mean lesion separability (AUCs) over the site's labelled cases.

    Parameters
    ----------
    stats : SiteStatistics
        The site's own statistics (stay at the site).

    Returns
    -------
    dict
        ``lesion_auc_nawm``, ``lesion_auc_gm`` and their ``_mapped`` twins (after the site's
        intensity map), means over the cases that have lesions
        (:func:`~fedshift.shift.tissue.separability`); empty without such cases. Scalars
        the site reports; they never decide a verdict.
    """
    own = _own(stats, "separability")
    if own is None:
        return {}
    return {name: mean for name, (mean, _) in own.moments().items() if np.isfinite(mean)}


def calibration_indicators(calibration: Calibration | None) -> dict[str, float]:
    """The site's calibration-case measures under their indicator names.

    Parameters
    ----------
    calibration : Calibration, optional
        The site's labels of the shared calibration cases against the reference standard.

    Returns
    -------
    dict
        ``calibration_volume``, ``calibration_count`` (mean log ratios) and
        ``calibration_dice``; empty without calibration cases. Scalars the site reports.
    """
    if calibration is None:
        return {}
    return {
        "calibration_volume": calibration.volume,
        "calibration_count": calibration.count,
        "calibration_dice": calibration.dice,
    }


def agreed_effect(mean_effect: float, median_effect: float) -> float:
    """The lesion-load effect both comparisons agree on: the smaller in size, with its sign;
    0 when they point different ways.

    The mean comparison (Cohen's d against the other sites' cases) misreads a site beside
    one outlier site (its mean and spread move the rest's; an unshifted site was named at
    -1.02 sd beside a 2.5x-load site); the median comparison misreads a site whose other
    sites have no majority (three of four others with more lesions: the unchanged site
    sat -1.15 from the federation's median case, -0.44 from the mean,
    ``docs/results/diagnosis-error-rates.md``). Each one's failure is where the other is
    right, so a site counts as shifted only as far as both say.
    """
    if mean_effect * median_effect <= 0:
        return 0.0
    return min(mean_effect, median_effect, key=abs)


def population_effect(
    stats: SiteStatistics, reference: Reference, centre: str = "federation"
) -> dict[str, float]:
    """The site's predicted lesion load against the other sites', as an effect size.

    Parameters
    ----------
    stats : SiteStatistics
        The site's own statistics (stay at the site).
    reference : Reference
    centre : as for :func:`acquisition_offsets`

    Returns
    -------
    dict
        Per population descriptor, the mean comparison (Cohen's d,
        :func:`~fedshift.shift.descriptors.mean_difference`) and the median comparison
        (:func:`~fedshift.shift.descriptors.robust_comparison`) combined by
        :func:`agreed_effect`; of the descriptors, the one whose agreed effect is largest
        in size: ``population_effect`` (with its sign; > 0: more or larger lesions),
        ``population_z`` (the median comparison's evidence), ``population_mean_effect``,
        ``population_median_effect``, with ``cases`` and ``rest_cases``. Empty when
        either side has no population summary or too few cases. Scalars the site reports.
    """
    if "population" not in reference.descriptors or "population" not in stats.descriptors:
        return {}
    own, federation = stats.descriptors["population"], reference.descriptors["population"]
    means = mean_difference(own, federation)
    medians = robust_comparison(own, federation, centre)
    if not means or not medians:
        return {}
    name = max(medians, key=lambda n: abs(agreed_effect(means[n], medians[n].offset)))
    found = medians[name]
    return {
        "population_effect": agreed_effect(means[name], found.offset),
        "population_z": found.z,
        "population_mean_effect": means[name],
        "population_median_effect": found.offset,
        "cases": float(found.cases[0]),
        "rest_cases": float(found.cases[1]),
    }
