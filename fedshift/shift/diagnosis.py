"""Attribute a site's dataset shift to population, acquisition or annotation.

Causal view of Castro, Walker & Glocker (2020), with Z the anatomy (lesions included),
X the image, Y the label:

- **acquisition** changes P(X | Z): the site's images look different (noise, contrast,
  non-uniformity, sharpness, the order of its tissues);
- **population** changes P(Z): its lesion load differs (as the global model sees it, so
  it is measured on unlabelled sites too);
- **annotation** changes P(Y | Z): its labels disagree with the global model's
  prediction in a way the other sites' labels do not.

Each site measures its indicators locally (:func:`measure`) from its own statistics and
the broadcast reference and reports them to the coordinator as **scalars**, never the
statistics behind them. The verdict rests on one similarity per kind of shift
(:func:`fedshift.shift.descriptors.similarity`): how much the site's cases look like the
rest of the federation's cases, in [0, ~1]; for acquisition and population, on robust
comparisons of the site's median case with the federation's
(:func:`fedshift.shift.descriptors.robust_comparison`), each with its evidence (a ``_z``
indicator: the difference of medians over its standard error). The rule is

- acquisition  <- on some acquisition descriptor (noise, contrast, non-uniformity,
  sharpness, CSF rank), the site's median case lies at least ``DiagnosisConfig.offset``
  scales from the federation's median case (the scale: the robust spread of the site's and
  the other sites' cases, never less than the descriptor's kernel scale), with evidence
  of at least ``DiagnosisConfig.evidence``;
- population   <- predicted lesion load (volume or count) differing from the other sites'
  by at least ``DiagnosisConfig.population_effect`` spreads both by mean (Cohen's d) and
  by median (:func:`fedshift.shift.indicators.agreed_effect`), with evidence, images alike
  (acquisition not flagged);
- annotation   <- with calibration cases (:mod:`fedshift.shift.calibration`): the site's
  labels of them differ from the reference standard by at least ``DiagnosisConfig.offset``
  scales in lesion volume or count (the ``annotation`` scales of ``FAMILIES``), whatever
  the other kinds; without: annotation similarity below the threshold, images alike,
  lesion load alike (population not flagged).

A comparison past its size bound but short of the evidence is not named; the verdict says
"too little evidence" and on how many cases. Every verdict ends with the sites it was
compared with (those in the secure sum). The bounds' false-alarm rates and what they
detect: ``docs/results/diagnosis-error-rates.md`` (``simulations/diagnosis_error_rates.py``).

Why a median offset for acquisition: when every site but one changes one setting of its
scanner, each in its own direction, the unchanged site has no peer: its similarity to
the rest is low although it is the least shifted (site0 of the ``acquisition`` scenario,
0.04-0.13). On each single descriptor, though, most sites keep the common setting, so
the federation's median case is the common scanner's, and the unchanged site sits on
it. This needs descriptors that each respond to one change
(:func:`fedshift.shift.case_descriptors.appearance`).

The CSF rank (:func:`fedshift.shift.tissue.tissue_order`) is the one acquisition
descriptor an intensity map cannot move: it is a rank, and the map keeps ranks. A site
whose CSF sits above its white matter (a FLAIR with too short an inversion time) is named
acquisition on it, with the words that say so; its scale (0.25 in rank) is hand-set: on
the synthetic FLAIR cases of every scanner setting rank CSF at 0.025 or 0.075, and CSF
brighter than white matter ranks it at 0.6-1 (``docs/diagnosis.md``). The lesion
separability (AUC of intensity, lesion against normal-appearing white matter and grey
matter, labelled cases; before and after the site's intensity map) is reported and decides
nothing: labels move it as much as the scanner (a dilating rater lowers it), and no
intensity map changes it.

Population and annotation compare the site's lesion loads and label agreement with the
other sites', as the global model reads them; a scanner change moves what the model
reads. So they are attributed only when the images look alike, the site's own (its
acquisition not flagged) and the others' (its acquisition similarity to the rest at
least ``DiagnosisConfig.threshold``). The unchanged scanner of the ``acquisition``
scenario sits on the federation's median case, but every other site's predictions come
through another scanner; its lesion load differed from theirs by -1.28 sd
(``docs/results/diagnosis-validation.md``), which is not a population shift.

Without calibration cases, annotation is compared through the global model's prediction,
and how well a model's prediction agrees with a label depends on the lesions themselves
(it misses more small lesions, merges more of many close ones): a site with more, fewer
or larger lesions than the rest has a different label agreement without any change of
annotation protocol. So annotation is then attributed only when the lesion load is like
the rest's; a site with both gets "population", with the annotation evidence left
unattributed. Added after the ``population`` scenario's seed 1, where site3 (0.3x lesion
load, -2.94 sd) was named population and annotation (annotation similarity 0.40;
``docs/results/diagnosis-validation.md``).

Why calibration cases decide annotation when a site has them: the relative comparison
has no majority where the federation's raters split evenly. In the ``annotation``
scenario two raters annotate lesions under 300 mm^3 and two do not (one misses them, a
one-voxel erosion deletes them), and the faithful rater was named on seeds 0 and 2
(similarity 0.47 and 0.39). A fixed reference standard does not depend on the other
sites, the model or the scanner, so nothing gates it.

Why both a mean and a median for population: the mean comparison misreads a site beside
one outlier site (its mean and spread move the others'; an unshifted site was named at
-1.02 sd beside a 2.5x-load site), the median comparison a site whose other sites have no
majority (the ``population`` scenario's unchanged site0: -1.15 from the federation's
median case, -0.44 from the mean). A site counts as shifted only as far as both say.

Why an effect size for population: lesion loads spread along one axis (fewer, more,
larger), so a site in the middle of the federation has few cases like its own among the
others and a low similarity, though it is the least shifted. The ``population`` scenario
is such a federation: site0, the unchanged population, scored 0.38 and was named while
three shifted sites scored 0.68-0.77 and were not (``docs/results/diagnosis-validation.md``).

Whatever is left unattributed is named in the evidence. The classic distances (1-D
Wasserstein distance of the brain-intensity histogram, Bures-Wasserstein distance of the
embeddings, lesion-load histogram distance, Dice and signed volume bias against the
global model) are reported alongside, for the report; they compare a site with a
reference that contains the site itself and every other site's shift, so they rank sites
but do not say which site moved.

References
----------
.. [1] Castro, D. C., Walker, I., & Glocker, B. (2020). Causality matters in medical
   imaging. Nature Communications, 11, 3673.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from fedshift.shift.calibration import Calibration
from fedshift.shift.indicators import (
    CALIBRATION,
    OFFSET,
    SIMILARITY,
    SiteIndicators,
    Z,
    acquisition_offsets,
    calibration_indicators,
    embedding_distance,
    family_similarities,
    intensity_distance,
    lesion_load_distances,
    population_effect,
    separability_indicators,
    tissue_indicators,
)
from fedshift.shift.reference import Reference
from fedshift.shift.stats import SiteStatistics
from fedshift.shift.tissue import CSF_BRIGHT_RANK


@dataclass(frozen=True)
class DiagnosisConfig:
    """Thresholds of :func:`diagnose`.

    Set by the error-rate study (``simulations/diagnosis_error_rates.py``,
    ``docs/results/diagnosis-error-rates.md``): of a grid, the thresholds that keep false
    alarms at or under 5 % per unshifted site for every kind on 600 drawn synthetic
    federations, name the validation scenarios' sites rightly at least as often as before,
    and of those name the most shifted sites rightly. On 600 other federations their false
    alarms were 2.8 % (acquisition), 2.2 % (population) and 0.7 % (annotation) per
    unshifted site; mostly at sites of 3 cases.

    Attributes
    ----------
    threshold : a family counts as shifted when the site's similarity to the rest of the
        federation is below this (annotation without calibration cases; and the "images
        alike" gate on the other sites' acquisition similarity). With no shift the
        similarity is about 1 (0.85-1.0 on the ``control`` scenario); a site that looks
        like only one of four other sites scores about 0.25 or less. 0.6 from the study
        (0.5 before: the same false alarms on acquisition and population, annotation 0.2 %
        -> 0.7 %, a missed-small-lesions rater named 9 % of the time instead of 4 %).
    offset : acquisition counts as shifted when the site's median case lies at least this
        many scales from the federation's on some acquisition descriptor (a scale: the
        robust spread of the site's and the other sites' cases, never less than the
        descriptor's kernel scale in ``FAMILIES["acquisition"]``, ``FAMILIES["tissue"]``,
        the change that counts as clear on each). The same bound applies to the
        calibration cases' volume and count ratios (annotation).
    population_effect : population counts as shifted when the site's predicted lesion
        load differs from the other sites' by at least this many spreads, as far as the
        mean and the median comparison agree (absolute value). 1.0; the study's grid kept
        it (1.25 named fewer of the ``population`` scenario's planted sites).
    evidence : an acquisition offset or a population effect counts only when it is also
        this many standard errors from zero (its ``_z`` indicator): a median of a handful
        of spread cases lands a scale away by chance. 2.0; the study's grid kept it.
    """

    threshold: float = 0.6
    offset: float = 1.0
    population_effect: float = 1.0
    evidence: float = 2.0


@dataclass(frozen=True)
class Diagnosis:
    """One site's verdict.

    Attributes
    ----------
    site : str
    shift : list of "acquisition" / "population" / "annotation"; empty when none
    scores : family -> the site's similarity to the rest of the federation
    evidence : one-line explanation, ending with the sites it was compared with
    compared_with : the other sites in the secure sum its comparisons are against
    """

    site: str
    shift: list[str]
    scores: dict[str, float]
    evidence: str
    compared_with: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def signed_volume_bias(label_volume: float, predicted_volume: float) -> float:
    """``(label - predicted) / predicted``; NaN when nothing is predicted."""
    if predicted_volume <= 0:
        return float("nan")
    return (label_volume - predicted_volume) / predicted_volume


def _measured(ind: SiteIndicators, fields: dict[str, str]) -> dict[str, float]:
    """Key -> the finite value of indicator ``fields[key]`` (unmeasured ones left out)."""
    out = {}
    for key, name in fields.items():
        v = getattr(ind, name)
        if v is not None and np.isfinite(v):
            out[key] = float(v)
    return out


def _scores(ind: SiteIndicators) -> dict[str, float]:
    """Family -> the site's similarity to the rest."""
    return _measured(ind, SIMILARITY)


def _offsets(ind: SiteIndicators) -> dict[str, float]:
    """Acquisition descriptor -> the site's median offset (in scales)."""
    return _measured(ind, OFFSET)


def _sure(z: float | None, cfg: DiagnosisConfig) -> bool:
    """Whether a comparison's evidence (its ``_z``; None: not reported) reaches the bound."""
    return z is None or not np.isfinite(z) or abs(z) >= cfg.evidence


def _unsure(ind: SiteIndicators, cfg: DiagnosisConfig) -> dict[str, tuple[float, float]]:
    """Comparison -> (offset, z) of those beyond their size bound but short of evidence."""
    out = {}
    for name, v in _offsets(ind).items():
        z = getattr(ind, Z[name])
        if abs(v) >= cfg.offset and not _sure(z, cfg):
            out[name] = (v, z)
    effect = ind.population_effect
    measured = effect is not None and np.isfinite(effect)
    if measured and abs(effect) >= cfg.population_effect and not _sure(ind.population_z, cfg):
        out["lesion load"] = (effect, ind.population_z)
    return out


def _calibration(ind: SiteIndicators) -> dict[str, float]:
    """Calibration measure -> its value in scales (empty without calibration cases)."""
    measured = _measured(ind, {k: name for k, (name, _) in CALIBRATION.items()})
    return {k: v / CALIBRATION[k][1] for k, v in measured.items()}


def _bright_csf_words(ind: SiteIndicators) -> str | None:
    """The site's tissue order in words when CSF is brighter than white matter
    (``csf_rank`` at or above :data:`~fedshift.shift.tissue.CSF_BRIGHT_RANK`), else None."""
    rank = ind.csf_rank
    if rank is None or not np.isfinite(rank) or rank < CSF_BRIGHT_RANK:
        return None
    return (
        f"CSF brighter than white matter (CSF rank {rank:.2f}): the tissues changed order, "
        "and a monotone intensity map cannot undo this"
    )


def _tissue_note(ind: SiteIndicators, cfg: DiagnosisConfig) -> str | None:
    """Why the tissue order makes the site's images differ, when it does."""
    offset = ind.csf_rank_offset
    if offset is None or not np.isfinite(offset) or abs(offset) < cfg.offset:
        return None
    bright = _bright_csf_words(ind)
    if bright:
        return bright
    return (
        "CSF ranks unlike the federation's median case among the deep tissue: the tissues "
        "changed order, and a monotone intensity map cannot undo this"
    )


def _low(ind: SiteIndicators, scores: dict[str, float], cfg: DiagnosisConfig) -> dict[str, str]:
    """Family -> why it counts as shifted (the families that do)."""
    low = {f: f"{f} similarity {v:.2f}" for f, v in scores.items() if v < cfg.threshold}
    calibration = _calibration(ind)
    if calibration:
        low.pop("annotation", None)
        far = {n: v for n, v in calibration.items() if abs(v) >= cfg.offset}
        if far:
            low["annotation"] = (
                "labels of the calibration cases unlike the reference standard ("
                + ", ".join(f"{n} {v:+.1f}" for n, v in far.items())
                + " scales)"
            )
    offsets = _offsets(ind)
    if offsets:
        low.pop("acquisition", None)
        far = {
            n: v
            for n, v in offsets.items()
            if abs(v) >= cfg.offset and _sure(getattr(ind, Z[n]), cfg)
        }
        if far:
            low["acquisition"] = ", ".join(
                f"{n} {v:+.1f}" for n, v in sorted(far.items(), key=lambda kv: -abs(kv[1]))
            )
    effect = ind.population_effect
    if effect is not None and np.isfinite(effect):
        low.pop("population", None)
        if abs(effect) >= cfg.population_effect and _sure(ind.population_z, cfg):
            more = "more or larger" if effect > 0 else "fewer or smaller"
            low["population"] = f"{more} lesions than the rest ({effect:+.2f} sd)"
    return low


def _all_clear(ind: SiteIndicators, scores: dict[str, float], cfg: DiagnosisConfig) -> list[str]:
    """Why nothing was named: each deciding indicator within its bound."""
    notes = []
    unsure = _unsure(ind, cfg)
    offsets = _offsets(ind)
    within = {n: v for n, v in offsets.items() if n not in unsure}
    if within:
        worst = max(within, key=lambda n: abs(within[n]))
        notes.append(
            f"acquisition within {cfg.offset:g} scale of the federation's median case "
            f"(largest: {worst} {within[worst]:+.1f})"
        )
    calibration = _calibration(ind)
    if calibration:
        notes.append(
            f"labels of the calibration cases within {cfg.offset:g} scale of the reference "
            "standard (" + ", ".join(f"{n} {v:+.1f}" for n, v in calibration.items()) + ")"
        )
    deciding = {
        f: v
        for f, v in scores.items()
        if not (f == "acquisition" and offsets) and not (f == "annotation" and calibration)
    }
    if ind.population_effect is not None and np.isfinite(ind.population_effect):
        deciding.pop("population", None)
    if (
        "population" not in deciding
        and "lesion load" not in unsure
        and (ind.population_effect is not None and np.isfinite(ind.population_effect))
    ):
        notes.append(
            f"lesion load within {cfg.population_effect:g} sd of the rest's "
            f"({ind.population_effect:+.2f})"
        )
    if deciding:
        measured = ", ".join(f"{f} {v:.2f}" for f, v in deciding.items())
        notes.insert(0, f"every similarity at or above {cfg.threshold:g} ({measured})")
    return notes or ["nothing measured"]


def _verdict(ind: SiteIndicators, cfg: DiagnosisConfig) -> Diagnosis:
    scores = _scores(ind)
    low = _low(ind, scores, cfg)
    calibrated = bool(_calibration(ind))
    # compared with the other sites through the global model: needs images and (for the
    # label agreement) lesion loads alike; the calibration cases need neither
    relative = ["population"] if calibrated else ["population", "annotation"]
    shift, notes = [], []
    if "acquisition" in low:
        shift.append("acquisition")
        if _offsets(ind):
            notes.append(
                f"images unlike the federation's median case ({low['acquisition']} scales)"
            )
            tissue = _tissue_note(ind, cfg)
            if tissue:
                notes.append(tissue)
        else:
            notes.append(
                f"images unlike the rest (acquisition similarity {scores['acquisition']:.2f})"
            )
        notes += [f"{low[f]} not attributed: images differ" for f in relative if f in low]
    elif _offsets(ind) and scores.get("acquisition", 1.0) < cfg.threshold:
        # on the federation's median case, yet no other site's images are like these:
        # every other site's lesion load and labels are read through another scanner
        notes += [
            f"{low[f]} not attributed: no other site has images like these "
            f"(acquisition similarity {scores['acquisition']:.2f})"
            for f in relative
            if f in low
        ]
    elif "population" in low:
        # the global model's agreement with labels moves with lesion size and count
        shift.append("population")
        notes.append(low["population"])
        if not calibrated and "annotation" in low:
            notes.append(f"{low['annotation']} not attributed: lesion load differs")
    elif not calibrated and "annotation" in low:
        shift.append("annotation")
        notes.append(low["annotation"])
    if calibrated and "annotation" in low:
        shift.append("annotation")
        notes.append(low["annotation"])
    if not notes:
        notes.extend(_all_clear(ind, scores, cfg))
    notes += [
        f"{name} {v:+.1f} not named: too little evidence (z {z:+.1f} < {cfg.evidence:g}, "
        f"{_cases(ind)})"
        for name, (v, z) in _unsure(ind, cfg).items()
    ]
    return Diagnosis(site=ind.site, shift=shift, scores=scores, evidence="; ".join(notes))


def _cases(ind: SiteIndicators) -> str:
    """How many cases the site's comparisons rest on, in words."""
    if ind.cases is None or ind.rest_cases is None:
        return "cases not reported"
    return f"{ind.cases:g} cases against {ind.rest_cases:g}"


def diagnose(
    sites: Sequence[SiteIndicators],
    config: DiagnosisConfig | None = None,
    summed: Sequence[str] | None = None,
) -> list[Diagnosis]:
    """Attribute each site's shift from the indicators it reported.

    Parameters
    ----------
    sites : sequence of SiteIndicators
        One per site, as reported (scalars only) to the coordinator.
    config : DiagnosisConfig, optional
    summed : the sites whose statistics are in the secure sum the reference came from
        (default: the reporting sites); each verdict names the others as what its site was
        compared with.

    Returns
    -------
    list of Diagnosis, in the order of ``sites``
    """
    cfg = config or DiagnosisConfig()
    names = [s.site for s in sites]
    if len(set(names)) != len(names):
        raise ValueError(f"site names must be unique, got {names}")
    members = sorted(set(summed) if summed is not None else set(names))
    out = []
    for s in sites:
        verdict = _verdict(s, cfg)
        others = [m for m in members if m != s.site]
        words = f"compared with {', '.join(others)}" if others else "compared with no other site"
        if s.rest_cases is not None:
            words += f" ({s.rest_cases:g} cases)"
        out.append(replace(verdict, compared_with=others, evidence=f"{verdict.evidence}; {words}"))
    return out


def measure(
    site: str,
    stats: SiteStatistics,
    reference: Reference,
    *,
    dice: float | None = None,
    volume_bias: float | None = None,
    calibration: Calibration | None = None,
    ridge: float = 1e-6,
    centre: str = "federation",
) -> SiteIndicators:
    """A site's indicators from its own statistics and the broadcast reference.

    Runs at the site; only the returned scalars leave it. Each group of indicators is one
    step of :mod:`fedshift.shift.indicators`.

    Parameters
    ----------
    site : str
    stats : SiteStatistics
        This site's statistics (the sum over its cases), never aggregated.
    reference : Reference
    dice, volume_bias : float, optional
        Agreement of the global model with the site's labels (labelled sites only).
    calibration : Calibration, optional
        The site's labels of the shared calibration cases against the reference standard
        (:func:`~fedshift.site.calibration.measure_calibration`).
    ridge : float
        Ridge of the site's covariance (see :func:`~fedshift.shift.embeddings.gaussian_from`).
    centre : what the site's median cases are compared with: the federation's median case
        (default) or the other sites' (:func:`~fedshift.shift.descriptors.robust_comparison`)
    """
    compared = {
        **acquisition_offsets(stats, reference, centre),
        **population_effect(stats, reference, centre),
    }
    return SiteIndicators(
        site=site,
        **family_similarities(stats, reference),
        **compared,
        intensity_w1=intensity_distance(stats, reference),
        embedding_bw=embedding_distance(stats, reference, ridge),
        dice=dice,
        volume_bias=volume_bias,
        **lesion_load_distances(stats, reference),
        **calibration_indicators(calibration),
        **tissue_indicators(stats),
        **separability_indicators(stats),
    )
