"""Attribute a site's dataset shift to population, acquisition or annotation.

Causal view of Castro, Walker & Glocker (2020), with Z the anatomy (lesions included),
X the image, Y the label:

- **acquisition** changes P(X | Z): the site's intensities or embeddings differ;
- **annotation** changes P(Y | Z): its labels disagree with what the global model predicts
  where the other sites' labels agree with it;
- **population** changes P(Z): its lesion load differs while images look normal.

Each site computes its indicators locally (:func:`measure`) from its own statistics and
the broadcast reference, and reports them to the coordinator as **scalars** — not the
statistics behind them. :func:`diagnose` then compares every site against the others:
a robust z-score per indicator (median and MAD of the *other* sites, with a floor, since a
federation has 4-5 sites) and a transparent rule:

- acquisition  <- ``intensity_w1`` or ``embedding_bw`` above the threshold;
- population   <- ``lesion_volume`` or ``lesion_count`` above, acquisition normal;
- annotation   <- ``dice`` (low) or ``|volume_bias|`` above, ``intensity_w1`` normal.

No type when nothing exceeds; several when several do (the evidence then names the
possible confound).

References
----------
.. [1] Castro, D. C., Walker, I., & Glocker, B. (2020). Causality matters in medical
   imaging. Nature Communications, 11, 3673.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from fedshift.shift.distances import bures_wasserstein, histogram_distance, wasserstein_1d_hist
from fedshift.shift.reference import Reference
from fedshift.shift.stats import SiteStatistics, gaussian_from

INDICATORS: tuple[str, ...] = (
    "intensity_w1",
    "embedding_bw",
    "lesion_volume",
    "lesion_count",
    "dice",
    "volume_bias",
)
ACQUISITION = ("intensity_w1", "embedding_bw")
POPULATION = ("lesion_volume", "lesion_count")
ANNOTATION = ("dice", "volume_bias")

DEFAULT_FLOORS: dict[str, float] = {
    "intensity_w1": 0.05,  # z-score units
    "embedding_bw": 0.05,  # embedding units
    "lesion_volume": 0.1,  # log1p(mL)
    "lesion_count": 0.1,  # log1p(count)
    "dice": 0.05,
    "volume_bias": 0.1,  # 10 % of the predicted volume
}


@dataclass(frozen=True)
class SiteIndicators:
    """Scalars one site reports (``None``: not measured, e.g. no labels).

    Attributes
    ----------
    site : str
    intensity_w1 : 1-Wasserstein distance of brain intensities to the reference (z units)
    embedding_bw : Bures-Wasserstein distance of background (or, unlabelled, all) embeddings
        to the reference background Gaussian
    lesion_volume, lesion_count : 1-Wasserstein distances of the lesion-load histograms
        (log1p scale, see :func:`~fedshift.shift.distances.histogram_distance`)
    dice : Dice of the global model's prediction against the site's labels
    volume_bias : (label volume - predicted volume) / predicted volume
    """

    site: str
    intensity_w1: float | None = None
    embedding_bw: float | None = None
    lesion_volume: float | None = None
    lesion_count: float | None = None
    dice: float | None = None
    volume_bias: float | None = None


@dataclass(frozen=True)
class DiagnosisConfig:
    """Thresholds of :func:`diagnose`.

    Attributes
    ----------
    threshold : robust z above which an indicator counts as shifted
    floors : minimum spread per indicator (its units), so near-identical sites do not
        give huge z-scores
    relative_floor : the spread is also at least this fraction of ``|median|``
    min_others : fewest other sites with a value needed to score an indicator
    """

    threshold: float = 3.0
    floors: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FLOORS))
    relative_floor: float = 0.1
    min_others: int = 2


@dataclass(frozen=True)
class Diagnosis:
    """One site's verdict.

    Attributes
    ----------
    site : str
    shift : list of "acquisition" / "population" / "annotation"; empty when none
    scores : indicator -> robust z ("badness": high distance, low Dice; signed for
        ``volume_bias``, positive when labels are larger than predictions)
    evidence : one-line explanation
    """

    site: str
    shift: list[str]
    scores: dict[str, float]
    evidence: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def signed_volume_bias(label_volume: float, predicted_volume: float) -> float:
    """``(label - predicted) / predicted``; NaN when nothing is predicted."""
    if predicted_volume <= 0:
        return float("nan")
    return (label_volume - predicted_volume) / predicted_volume


def robust_z(value: float, others: Sequence[float], floor: float, relative_floor: float) -> float:
    """``(value - median) / max(1.4826 MAD, floor, relative_floor |median|)`` of ``others``."""
    arr = np.asarray(others, dtype=np.float64)
    med = float(np.median(arr))
    mad = 1.4826 * float(np.median(np.abs(arr - med)))
    return (value - med) / max(mad, floor, relative_floor * abs(med), 1e-12)


def _value(ind: SiteIndicators, name: str) -> float | None:
    v = getattr(ind, name)
    return None if v is None or not np.isfinite(v) else float(v)


def _scores(sites: Sequence[SiteIndicators], cfg: DiagnosisConfig) -> list[dict[str, float]]:
    out: list[dict[str, float]] = [{} for _ in sites]
    for name in INDICATORS:
        values = [_value(s, name) for s in sites]
        for i, v in enumerate(values):
            others = [o for j, o in enumerate(values) if j != i and o is not None]
            if v is None or len(others) < cfg.min_others:
                continue
            z = robust_z(v, others, cfg.floors.get(name, 0.0), cfg.relative_floor)
            out[i][name] = -z if name == "dice" else z
    return out


def _high(scores: dict[str, float], names: Sequence[str], t: float) -> list[str]:
    """Indicators above ``t``; only ``volume_bias`` counts in both directions."""
    return [
        n
        for n in names
        if n in scores and (abs(scores[n]) if n == "volume_bias" else scores[n]) > t
    ]


def _verdict(site: str, scores: dict[str, float], t: float) -> Diagnosis:
    acq, pop, ann = (_high(scores, names, t) for names in (ACQUISITION, POPULATION, ANNOTATION))
    shift, notes = [], []
    if acq:
        shift.append("acquisition")
        notes.append(f"acquisition: {_fmt(scores, acq)}")
    if pop and not acq:
        shift.append("population")
        notes.append(f"population: {_fmt(scores, pop)}")
    elif pop:
        notes.append(f"lesion load differs ({_fmt(scores, pop)}), not attributed: images differ")
    if ann and "intensity_w1" not in acq:
        shift.append("annotation")
        notes.append(f"annotation: {_fmt(scores, ann)}")
        if acq:
            notes.append("label disagreement may partly come from the acquisition shift")
        if pop:
            notes.append("lesion-load shift may partly come from the annotation shift")
    elif ann:
        notes.append(f"labels disagree ({_fmt(scores, ann)}), not attributed: intensities differ")
    if not notes:
        notes.append(f"no indicator above z={t:g}")
    return Diagnosis(site=site, shift=shift, scores=scores, evidence="; ".join(notes))


def _fmt(scores: dict[str, float], names: Sequence[str]) -> str:
    return ", ".join(f"{n} z={scores[n]:+.1f}" for n in names)


def diagnose(
    sites: Sequence[SiteIndicators], config: DiagnosisConfig | None = None
) -> list[Diagnosis]:
    """Attribute each site's shift from the indicator table of all sites.

    Parameters
    ----------
    sites : sequence of SiteIndicators
        One per site, as reported (scalars only) to the coordinator.
    config : DiagnosisConfig, optional

    Returns
    -------
    list of Diagnosis, in the order of ``sites``
    """
    cfg = config or DiagnosisConfig()
    names = [s.site for s in sites]
    if len(set(names)) != len(names):
        raise ValueError(f"site names must be unique, got {names}")
    return [
        _verdict(s.site, scores, cfg.threshold)
        for s, scores in zip(sites, _scores(sites, cfg), strict=True)
    ]


def measure(
    site: str,
    stats: SiteStatistics,
    reference: Reference,
    *,
    dice: float | None = None,
    volume_bias: float | None = None,
    ridge: float = 1e-6,
) -> SiteIndicators:
    """A site's indicators from its own statistics and the broadcast reference.

    Runs at the site; only the returned scalars leave it.

    Parameters
    ----------
    site : str
    stats : SiteStatistics
        This site's statistics (the sum over its cases), never aggregated.
    reference : Reference
    dice, volume_bias : float, optional
        Agreement of the global model with the site's labels (labelled sites only).
    ridge : float
        Ridge of the site's covariance (see :func:`~fedshift.shift.stats.gaussian_from`).
    """
    intensity = None
    if stats.intensity.sum() > 0 and reference.intensity_pmf.sum() > 0:
        intensity = wasserstein_1d_hist(
            stats.intensity, reference.intensity_pmf, reference.intensity_edges
        )
    bw = None
    ref_g = reference.gaussians.get("background", reference.gaussians.get("all"))
    own = stats.embeddings["background"]
    if own.n < 2:
        own = stats.embeddings["all"]
    if ref_g is not None and own.n >= 2:
        mean, cov = gaussian_from(own, ridge=ridge)
        bw = bures_wasserstein(mean, cov, ref_g.mean, ref_g.cov)
    load: dict[str, float | None] = {"lesion_volume": None, "lesion_count": None}
    if stats.labelled_cases > 0 and reference.labelled_cases > 0:
        load["lesion_volume"] = histogram_distance(
            stats.lesion_volume, reference.lesion_volume_pmf, reference.volume_edges
        )
        load["lesion_count"] = histogram_distance(
            stats.lesion_count, reference.lesion_count_pmf, reference.count_edges
        )
    return SiteIndicators(
        site=site,
        intensity_w1=intensity,
        embedding_bw=bw,
        dice=dice,
        volume_bias=volume_bias,
        **load,
    )
