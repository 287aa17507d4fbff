"""How sure a verdict is: its margin to the bound, and how often a shift that large is seen.

Each kind of shift is decided on one indicator (:func:`deciding_size`, as a size: larger
is more shifted): the largest acquisition offset, the population effect, one minus the
annotation similarity. Its **margin** is that size minus the bound of
:class:`~fedshift.shift.diagnosis.DiagnosisConfig`. Its **detection rate** comes from the
error-rate study (``simulations/diagnosis_error_rates.py``, results in
``docs/results/diagnosis-error-rates.md``): synthetic federations with shifts of known
size, and per kind and number of cases per site, the share of shifted sites the
diagnosis named with their kind against the size of their shift. The curves ship as
``detection_curves.json`` beside this module, written by that script; a report reads a
verdict's size against them: "a shift this large was named N % of the time".

The curves are those of the study's synthetic sites (one scanner and population unshifted,
one global model); a hospital's own data may differ, which the report says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from fedshift.shift.diagnosis import DiagnosisConfig
from fedshift.shift.indicators import OFFSET

#: the curves of the error-rate study (written by simulations/diagnosis_error_rates.py)
CURVES_FILE = Path(__file__).with_name("detection_curves.json")


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def deciding_size(indicators: Mapping[str, Any], kind: str) -> float | None:
    """The size of a site's ``kind`` of shift as its verdict reads it (None: unmeasured).

    ``indicators``: the scalars the site reported (``SiteIndicators`` fields, as in
    ``diagnosis.json``). Acquisition: the largest absolute offset; population: the absolute
    population effect; annotation: one minus the annotation similarity.
    """
    if kind == "acquisition":
        found = [abs(v) for n in OFFSET.values() if (v := _finite(indicators.get(n))) is not None]
        return max(found) if found else None
    if kind == "population":
        v = _finite(indicators.get("population_effect"))
        return abs(v) if v is not None else None
    if kind == "annotation":
        v = _finite(indicators.get("annotation_similarity"))
        return 1.0 - v if v is not None else None
    raise ValueError(f"unknown kind of shift {kind!r}")


def bound(kind: str, cfg: DiagnosisConfig) -> float:
    """The size at which ``kind`` counts as shifted under ``cfg``'s thresholds."""
    sizes = {"acquisition": cfg.offset, "population": cfg.population_effect}
    return sizes.get(kind, 1.0 - cfg.threshold)


@cache
def load_curves(path: Path = CURVES_FILE) -> dict[str, Any] | None:
    """The study's curves (``{"kinds": {kind: {cases: [{"size", "detected", ...}]}},
    "source": str}``), None when the file is missing."""
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def detection_rate(
    kind: str, size: float, cases: float | None, curves: Mapping[str, Any] | None = None
) -> tuple[float, int] | None:
    """How often the study named a ``kind`` shift of this ``size`` at a site of about
    ``cases`` cases (the study's nearest case count; None: its middle one).

    Returns ``(rate in [0, 1], the case count whose curve was read)``, linearly
    interpolated between the study's shift sizes and held at its ends; None without
    curves for the kind.
    """
    curves = load_curves() if curves is None else curves
    per_cases = ((curves or {}).get("kinds") or {}).get(kind)
    if not per_cases:
        return None
    counts = sorted(int(n) for n in per_cases)
    n = counts[len(counts) // 2] if cases is None else min(counts, key=lambda c: abs(c - cases))
    points = sorted(per_cases[str(n)], key=lambda p: p["size"])
    sizes = np.array([p["size"] for p in points], dtype=float)
    rates = np.array([p["detected"] for p in points], dtype=float)
    # a curve of a few pools is not monotone by chance alone: read its running maximum
    rates = np.maximum.accumulate(rates)
    return float(np.interp(size, sizes, rates)), n
