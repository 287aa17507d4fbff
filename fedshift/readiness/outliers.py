"""Robust outlier flags for image quality metrics against a reference distribution.

The reference is the site's own cases by default; the federation's pooled distribution
can be passed instead once it exists (same function, another argument).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: |robust z| above this flags a metric
Z_THRESHOLD = 3.5
#: a reference needs at least this many finite values
MIN_REFERENCE = 5
#: consistency constant: MAD * 1.4826 estimates the standard deviation of a normal
MAD_TO_SD = 1.4826
#: the robust scale is never below this fraction of |median|: in a site of near-identical
#: scans (one scanner and protocol, a synthetic federation) MAD can be tiny, and ordinary
#: subject-to-subject differences of a few percent would become "outliers"
MIN_RELATIVE_SCALE = 0.1
#: per-metric (relative, absolute) floors of the robust scale where the default does not
#: fit: fber is a ratio of squared intensities (twice the relative spread), bias_range is
#: near 0 on good images
SCALE_FLOORS: dict[str, tuple[float, float]] = {"fber": (0.0, 0.1), "bias_range": (0.1, 0.02)}
#: ratio metrics whose variation is multiplicative: scored as log(value), so the floor
#: above (0.1 in log units) means about 10 % (fber spans orders of magnitude across sites)
LOG_SCALE: frozenset[str] = frozenset({"fber"})
#: metrics that describe the acquisition rather than a broken image: an outlier is
#: reported as a warning and the case is kept (N4 removes bias; wm2max is contrast)
ADVISORY: frozenset[str] = frozenset({"bias_range", "wm2max"})
#: sign of z that means worse quality (-1: lower is worse, +1: higher is worse, 0: both)
WORSE_SIGN: dict[str, int] = {
    "snr": -1,
    "cnr": -1,
    "fber": -1,
    "cjv": 1,
    "efc": 1,
    "bias_range": 1,
    "wm2max": 0,
}


@dataclass(frozen=True)
class Outlier:
    """One metric of one case far from the reference; ``worse`` when on the side of worse
    quality (see :data:`WORSE_SIGN`) of a metric that can exclude a case (not in
    :data:`ADVISORY`)."""

    case: str
    metric: str
    value: float
    z: float
    worse: bool = True


def robust_z(
    values: Sequence[float] | np.ndarray,
    reference: Sequence[float] | np.ndarray,
    min_reference: int = MIN_REFERENCE,
    min_relative_scale: float = MIN_RELATIVE_SCALE,
    min_scale: float = 0.0,
) -> np.ndarray:
    """(value - median) / (MAD * 1.4826) of each value against the reference.

    Parameters
    ----------
    values : the values to score.
    reference : the distribution to score against (NaN ignored).
    min_reference : fewer finite reference values give all-NaN scores.
    min_relative_scale : floor of the scale as a fraction of \\|median\\|, so that a
        reference of near-identical values does not turn tiny differences into outliers
        (with 5-20 cases, MAD alone flags a clean normal sample far more often than
        |z| > 3.5 suggests).
    min_scale : absolute floor of the scale.

    Returns
    -------
    float array like ``values``; NaN where a value is NaN or the reference is too small
    or has zero spread.
    """
    vals = np.asarray(values, dtype=float)
    ref = np.asarray(reference, dtype=float)
    ref = ref[np.isfinite(ref)]
    if ref.size < min_reference:
        return np.full(vals.shape, np.nan)
    median = float(np.median(ref))
    mad = float(np.median(np.abs(ref - median)))
    scale = max(MAD_TO_SD * mad, min_relative_scale * abs(median), min_scale)
    if not scale > 0:
        return np.full(vals.shape, np.nan)
    return (vals - median) / scale


def _log(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """log of positive values; NaN elsewhere."""
    arr = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(arr > 0, np.log(np.where(arr > 0, arr, 1.0)), np.nan)


def reference_from(iqms: Mapping[str, Mapping[str, float]]) -> dict[str, np.ndarray]:
    """Per-metric arrays of the values in ``{case: {metric: value}}``."""
    metrics = sorted({m for values in iqms.values() for m in values})
    return {
        m: np.asarray([v.get(m, math.nan) for v in iqms.values()], dtype=float) for m in metrics
    }


def find_outliers(
    iqms: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    threshold: float = Z_THRESHOLD,
    min_reference: int = MIN_REFERENCE,
    floors: Mapping[str, tuple[float, float]] | None = None,
) -> list[Outlier]:
    """Metrics with \\|robust z\\| > ``threshold``.

    Parameters
    ----------
    iqms : ``{case: {metric: value}}`` of the cases to judge.
    reference : ``{metric: values}`` to judge against; the cases' own values when
        ``None``. A metric missing from the reference is not judged.
    floors : ``{metric: (relative, absolute)}`` floors of the robust scale (default
        :data:`SCALE_FLOORS`, else :data:`MIN_RELATIVE_SCALE` and 0).
    """
    reference = reference_from(iqms) if reference is None else reference
    floors = SCALE_FLOORS if floors is None else floors
    cases = list(iqms)
    found = []
    for metric, ref_values in reference.items():
        values = [iqms[c].get(metric, math.nan) for c in cases]
        relative, absolute = floors.get(metric, (MIN_RELATIVE_SCALE, 0.0))
        if metric in LOG_SCALE:
            z = robust_z(_log(values), _log(ref_values), min_reference, relative, absolute)
        else:
            z = robust_z(values, ref_values, min_reference, relative, absolute)
        for case, value, score in zip(cases, values, z, strict=True):
            if np.isfinite(score) and abs(score) > threshold:
                sign = WORSE_SIGN.get(metric, 0)
                worse = (sign == 0 or np.sign(score) == sign) and metric not in ADVISORY
                found.append(Outlier(case, metric, float(value), float(score), bool(worse)))
    return found
