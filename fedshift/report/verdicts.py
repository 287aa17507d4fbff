"""The shift verdicts of ``diagnosis.json`` in words, for the diagnosis and run reports.

Two views of the same entries: one card per site (its verdict as a sentence, the
evidence as a list, the similarities the verdict rests on, and its tissue order in words
when CSF is brighter than white matter) and the full table of the
scalars every site reported, one row per indicator and one column per site, grouped by
what the indicator is for. Pure data in, plain dicts and strings out; the templates in
``templates/verdicts.html.j2`` draw them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fedshift.render.pages import num
from fedshift.shift.detection import bound, deciding_size, detection_rate
from fedshift.shift.diagnosis import DiagnosisConfig
from fedshift.shift.tissue import CSF_BRIGHT_RANK

_BOUNDS = DiagnosisConfig()

#: shift family -> what it means for the site, in words
FAMILY_WORDS = {
    "acquisition": "its images look unlike the federation's (scanner or protocol)",
    "population": "its patients' lesion load differs from the rest's",
    "annotation": "its labels are drawn unlike the rest's (annotation protocol)",
}
#: the tissue order in words, for a site whose CSF ranks at or above CSF_BRIGHT_RANK
TISSUE_WORDS = (
    "CSF brighter than white matter: the tissues changed order; a monotone intensity map "
    "cannot undo this."
)
#: the similarity a family's verdict rests on (1 alike, 0 unlike)
SIMILARITIES = (
    ("acquisition", "acquisition_similarity"),
    ("population", "population_similarity"),
    ("annotation", "annotation_similarity"),
)
#: (group title, [(indicator, label)]) in the order the table shows them
INDICATOR_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Similarity to the rest of the federation (1 alike, 0 unlike; below "
        f"{_BOUNDS.threshold:g} counts as shifted)",
        tuple((key, family) for family, key in SIMILARITIES),
    ),
    (
        "Acquisition: the site's median case against the federation's (in the robust spread "
        f"of its and the other sites' cases, at least the descriptor's scale; "
        f"±{_BOUNDS.offset:g} or beyond counts as shifted when its evidence z is "
        f"±{_BOUNDS.evidence:g} or beyond)",
        (
            ("noise_offset", "noise"),
            ("noise_z", "noise: evidence z"),
            ("contrast_offset", "contrast"),
            ("contrast_z", "contrast: evidence z"),
            ("nonuniformity_offset", "non-uniformity"),
            ("nonuniformity_z", "non-uniformity: evidence z"),
            ("sharpness_offset", "sharpness"),
            ("sharpness_z", "sharpness: evidence z"),
            ("csf_rank_offset", "tissue order (CSF rank)"),
            ("csf_rank_z", "tissue order: evidence z"),
            ("cases", "cases compared"),
            ("rest_cases", "other sites' cases"),
        ),
    ),
    (
        "Acquisition: what a monotone intensity map cannot change (CSF rank among the deep "
        f"tissue, 0 darkest, 1 brightest, {CSF_BRIGHT_RANK:g} or above: CSF brighter than "
        "white matter; AUC of intensity for lesion against normal-appearing white matter and "
        "grey matter, labelled cases, before and after the site's intensity map)",
        (
            ("csf_rank", "CSF rank"),
            ("lesion_auc_nawm", "AUC lesion vs NAWM"),
            ("lesion_auc_nawm_mapped", "AUC lesion vs NAWM, intensity-mapped"),
            ("lesion_auc_gm", "AUC lesion vs GM"),
            ("lesion_auc_gm_mapped", "AUC lesion vs GM, intensity-mapped"),
        ),
    ),
    (
        "Population: predicted lesion load against the other sites' (in spreads, as far as "
        f"the mean and the median comparison agree; ±{_BOUNDS.population_effect:g} or beyond "
        f"counts as shifted when its evidence z is ±{_BOUNDS.evidence:g} or beyond)",
        (
            ("population_effect", "lesion load"),
            ("population_mean_effect", "lesion load: by mean (Cohen's d)"),
            ("population_median_effect", "lesion load: by median"),
            ("population_z", "lesion load: evidence z"),
        ),
    ),
    (
        "Calibration cases: the site's labels against the reference standard",
        (
            ("calibration_volume", "log volume ratio"),
            ("calibration_count", "log count ratio"),
            ("calibration_dice", "Dice"),
        ),
    ),
    (
        "Distances to a reference holding every site (they rank sites, they do not say "
        "which one moved)",
        (
            ("intensity_w1", "intensity W1"),
            ("embedding_bw", "embedding BW"),
            ("lesion_volume", "lesion volume histogram"),
            ("lesion_count", "lesion count histogram"),
            ("dice", "Dice against the global model"),
            ("volume_bias", "volume bias"),
        ),
    ),
)


def _measured(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def verdict(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One site's verdict for a card.

    Returns
    -------
    ``{"status": "shifted" | "clear" | "unknown", "families": [...], "sentence": str,
    "evidence": [str, ...], "similarities": str, "tissue": str | None, "margins": [str,
    ...]}``; "unknown" when the site reported nothing the verdict rests on; ``tissue`` is
    :data:`TISSUE_WORDS` when its CSF ranks at or above ``CSF_BRIGHT_RANK`` among its deep
    tissue; ``margins``: per named kind, how far past its bound and how often the error-
    rate study named a shift that large (:func:`margin_words`).
    """
    families = [f for f in entry.get("shift", []) if f]
    indicators = entry.get("indicators", {}) or {}
    evidence = [e.strip() for e in str(entry.get("evidence", "") or "").split(";") if e.strip()]
    sims = [(f, indicators.get(k)) for f, k in SIMILARITIES if _measured(indicators.get(k))]
    if families:
        status = "shifted"
        sentence = "Shifted: " + "; ".join(FAMILY_WORDS.get(f, f) for f in families) + "."
    elif sims or (evidence and evidence != ["nothing measured"]):
        status = "clear"
        sentence = "No shift found: its images, lesion load and labels are like the rest's."
    else:
        status = "unknown"
        sentence = "No verdict: this site reported nothing the verdict rests on."
    return {
        "status": status,
        "families": families,
        "sentence": sentence,
        "evidence": evidence,
        "similarities": ", ".join(f"{f} {num(v, 2)}" for f, v in sims),
        "tissue": TISSUE_WORDS if _bright_csf(indicators.get("csf_rank")) else None,
        "margins": [w for f in families if (w := margin_words(f, indicators)) is not None],
    }


def margin_words(kind: str, indicators: Mapping[str, Any]) -> str | None:
    """How sure a named ``kind`` is, in words: the size its verdict read, its margin to the
    bound (the diagnosis's defaults) and, where the error-rate study has a curve for the
    kind, how often it named a shift that large at a site of as many cases
    (:mod:`fedshift.shift.detection`). None when the size is not measured (annotation
    decided by calibration cases, for one: the study has no curve for it)."""
    if kind == "annotation" and _measured(indicators.get("calibration_volume")):
        return None
    size = deciding_size(indicators, kind)
    if size is None:
        return None
    edge = bound(kind, _BOUNDS)
    words = f"{kind}: size {size:.2f}, {size - edge:+.2f} past the bound of {edge:g}"
    cases = indicators.get("cases")
    found = detection_rate(kind, size, cases if _measured(cases) else None)
    if found is None:
        return words
    rate, n = found
    return (
        f"{words}; on synthetic federations a shift this large was named {100 * rate:.0f} % "
        f"of the time at {n} cases per site (docs/results/diagnosis-error-rates.md)"
    )


def _bright_csf(rank: Any) -> bool:
    return _measured(rank) and rank >= CSF_BRIGHT_RANK


def verdict_cards(diagnosis: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One card per site of ``diagnosis.json``, in site order (see :func:`verdict`)."""
    return [
        {"site": site, **verdict(entry)}
        for site, entry in sorted(diagnosis.get("sites", {}).items())
    ]


def indicator_table(diagnosis: Mapping[str, Any]) -> dict[str, Any]:
    """Every indicator of every site: ``{"sites": [...], "groups": [{"title", "rows":
    [{"label", "cells": [str per site]}]}]}``; groups no site measured are left out."""
    entries = sorted(diagnosis.get("sites", {}).items())
    groups = []
    for title, indicators in INDICATOR_GROUPS:
        rows = []
        for key, label in indicators:
            values = [(e.get("indicators") or {}).get(key) for _, e in entries]
            if any(_measured(v) for v in values):
                rows.append({"label": label, "cells": [num(v) for v in values]})
        if rows:
            groups.append({"title": title, "rows": rows})
    return {"sites": [s for s, _ in entries], "groups": groups}
