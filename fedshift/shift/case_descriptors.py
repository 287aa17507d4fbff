"""Per-case descriptors of shift: what one case of a site is described by.

Each case is described by three small vectors, one per kind of dataset shift
(Castro, Walker & Glocker 2020):

- **acquisition** (P(X | anatomy)): image appearance, one physical change per descriptor:
  ``noise`` (log sigma of the air background, relative to the median brain intensity),
  ``contrast`` (log spread of tissue log-intensities after N4 bias correction, a 30 mm
  smooth trend and the noise variance are removed: a contrast curve scales it),
  ``nonuniformity`` (log spread of the left-right antisymmetric part of the N4 bias
  field: anatomy is close to symmetric, a bias field is not) and ``sharpness`` (log
  ratio of the least to the most variable direction of voxel-to-voxel differences, noise
  removed: thick slices and through-plane blur lower it; a contrast curve, noise or a
  bias field do not);
- **population** (P(anatomy)): the lesion load the global model predicts,
  ``log1p`` of volume (mL) and of count; measured on every site, labelled or not;
- **annotation** (P(Y | anatomy)): how the site's labels disagree with the global model's
  prediction, ``log`` ratios of label to predicted lesion volume and count (labelled
  cases only). A population shift moves labels and predictions together; an annotation
  shift moves only the labels.

Two more families, the tissue order (every case) and the lesion separability (labelled
cases), measure what a monotone intensity map cannot change: :mod:`fedshift.shift.tissue`.

The descriptors stay at the site. Their names and kernel scales per family are
:data:`fedshift.shift.descriptors.FAMILIES`; how a site compares their distribution with
the rest of the federation's is :mod:`fedshift.shift.descriptors`.

References
----------
.. [1] Castro, D. C., Walker, I., & Glocker, B. (2020). Causality matters in medical
   imaging. Nature Communications, 11, 3673.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

#: version of :func:`appearance`; kept appearance descriptors of another version are not
#: reused (bump it with any change to what :func:`appearance` computes)
APPEARANCE_VERSION = 2
#: floor of the air-noise estimate (relative to the median brain intensity): skull-stripped
#: images have no air, and log(0) must not be
NOISE_FLOOR = 1e-4
#: smooth trend (FWHM, mm) taken out before the contrast is read: N4's leftovers and
#: anatomy coarser than tissue detail
FIELD_MM = 30.0
#: tissue: brain voxels between these percentiles of the lightly smoothed image; FLAIR
#: lesions are the brightest tissue, and a lesion load must not read as a contrast change
TISSUE_PERCENTILES = (40.0, 95.0)
#: median absolute deviation of a unit-sigma Rayleigh variable (solved numerically:
#: F(m + d) - F(m - d) = 1/2 with F(r) = 1 - exp(-r^2 / 2), m = sqrt(2 ln 2))
RAYLEIGH_MAD = 0.44845
#: air voxels are at least this far from the head (mm)
AIR_MARGIN_MM = 10.0


def _smooth(
    values: np.ndarray, weight: np.ndarray, fwhm_mm: float, zooms: np.ndarray
) -> np.ndarray:
    """Normalised convolution: Gaussian smoothing of ``values`` where ``weight`` is 1."""
    sigma = fwhm_mm / 2.3548 / zooms
    num = ndimage.gaussian_filter(values * weight, sigma)
    return num / np.maximum(ndimage.gaussian_filter(weight, sigma), 1e-6)


def _air_sigma(x: np.ndarray, head: np.ndarray, zooms: np.ndarray) -> float:
    """Noise sigma from the air background, whose magnitude is Rayleigh distributed: its
    median absolute deviation is ``RAYLEIGH_MAD * sigma`` (unchanged by an intensity
    offset). 0 when there is too little air (skull-stripped images)."""
    margin = max(1, int(np.ceil(AIR_MARGIN_MM / zooms.min())))
    air = x[~ndimage.binary_dilation(head, iterations=margin)]
    if air.size <= 100:
        return 0.0
    return float(np.median(np.abs(air - np.median(air)))) / RAYLEIGH_MAD


def _tissue(x: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Brain voxels between :data:`TISSUE_PERCENTILES`, chosen on a lightly smoothed copy
    so that the selection does not follow each voxel's noise."""
    smooth = ndimage.gaussian_filter(x, 1.0)
    lo, hi = np.percentile(smooth[inner], TISSUE_PERCENTILES)
    tissue = inner & (smooth > lo) & (smooth < hi)
    return tissue if tissue.sum() >= 64 else inner


def _mirror(inner: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Left-right flip (axis 0 of a RAS volume) about the brain's centre of mass."""
    shift = int(round(2.0 * ndimage.center_of_mass(inner)[0] - (inner.shape[0] - 1)))
    return lambda a: np.roll(a[::-1], shift, axis=0)


def _directional_variances(logx: np.ndarray, tissue: np.ndarray, noise_var: float) -> list[float]:
    """Per axis, the variance of neighbour differences inside tissue, noise removed."""
    out = []
    for ax in range(3):
        n = logx.shape[ax]
        both = np.take(tissue, range(n - 1), axis=ax) & np.take(tissue, range(1, n), axis=ax)
        diff = np.diff(logx, axis=ax)[both]
        out.append(max(float(diff.var()) - 2.0 * noise_var, 1e-8) if diff.size else 1e-8)
    return out


def appearance(
    raw: np.ndarray,
    corrected: np.ndarray,
    brain: np.ndarray,
    head: np.ndarray,
    zooms: tuple[float, ...],
) -> dict[str, float]:
    """Acquisition descriptors of one image (see the module docstring).

    Parameters
    ----------
    raw : (X, Y, Z) stored intensities (before any preprocessing), RAS+
    corrected : (X, Y, Z) the same image after N4 bias correction
        (:func:`fedshift.model.preprocess.n4_correct`); the non-uniformity is read from
        ``raw / corrected``. Passing ``raw`` itself leaves the non-uniformity at its
        floor and lets a bias field raise the contrast
    brain : (X, Y, Z) bool brain mask
    head : (X, Y, Z) bool head mask; voxels at least ``AIR_MARGIN_MM`` outside it are air
    zooms : voxel sizes (mm)

    Returns
    -------
    dict with ``noise``, ``contrast``, ``nonuniformity``, ``sharpness`` (all log scale)
    """
    z = np.asarray(zooms[:3], dtype=np.float64)
    inner = ndimage.binary_erosion(brain, iterations=1)
    if inner.sum() < 64:
        inner = brain
    if inner.sum() < 64:
        raise ValueError(f"brain mask holds {int(brain.sum())} voxels; too few to describe")
    x = np.clip(np.asarray(raw, dtype=np.float64), 0.0, None)
    x /= max(float(np.median(x[inner])), 1e-6)
    sigma = _air_sigma(x, head, z)
    y = np.clip(np.asarray(corrected, dtype=np.float64), 0.0, None)
    y = np.clip(y / max(float(np.median(y[inner])), 1e-6), 1e-3, None)
    tissue = _tissue(y, inner)
    logy = np.log(y)
    # Rician noise of sigma on intensity y is, in the log domain, a variance of (sigma/y)^2
    noise_var = float(np.mean((sigma / y[tissue]) ** 2))
    trend = _smooth(logy, tissue.astype(np.float64), FIELD_MM, z)
    contrast = 0.5 * np.log(max(float((logy - trend)[tissue].var()) - noise_var, 1e-8))
    variances = _directional_variances(logy, tissue, noise_var)
    # N4's field (raw / corrected) holds the bias field and some smooth anatomy; anatomy
    # is close to left-right symmetric, a bias field is not: keep the antisymmetric part
    field = np.log(np.clip(x, 1e-3, None)) - logy
    mirror = _mirror(inner)
    both = tissue & mirror(tissue)
    if both.sum() < 64:
        raise ValueError("too few brain voxels have a left-right counterpart; is the image RAS?")
    asymmetry = float((0.5 * (field - mirror(field)))[both].std())
    return {
        "noise": float(np.log(max(sigma, NOISE_FLOOR))),
        "contrast": float(contrast),
        "nonuniformity": float(np.log(max(asymmetry, 1e-8))),
        "sharpness": float(0.5 * np.log(min(variances) / max(variances))),
    }


def lesion_load(
    label: np.ndarray, spacing_mm: Sequence[float], connectivity: int = 26
) -> tuple[int, float]:
    """Lesion count (connected components) and total lesion volume of one case.

    ``label`` (X, Y, Z), ``> 0`` lesion; ``spacing_mm`` voxel size (mm); ``connectivity``
    6, 18 or 26. Returns ``(count, volume_ml)``, the volume in mL.
    """
    rank = {6: 1, 18: 2, 26: 3}.get(connectivity)
    if rank is None:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    fg = np.asarray(label) > 0
    _, count = ndimage.label(fg, structure=ndimage.generate_binary_structure(3, rank))
    return int(count), float(fg.sum() * np.prod(spacing_mm[:3]) / 1000.0)


def population(predicted: np.ndarray, zooms: tuple[float, ...]) -> dict[str, float]:
    """Population descriptors from the global model's predicted lesion mask."""
    count, volume = lesion_load(predicted, zooms)
    return {"lesion_volume": float(np.log1p(volume)), "lesion_count": float(np.log1p(count))}


def annotation(
    label: np.ndarray, predicted: np.ndarray, zooms: tuple[float, ...]
) -> dict[str, float]:
    """Annotation descriptors: the site's label against the global model's prediction."""
    lc, lv = lesion_load(label, zooms)
    pc, pv = lesion_load(predicted, zooms)
    return {
        "volume_agreement": float(np.log((lv + 0.1) / (pv + 0.1))),
        "count_agreement": float(np.log((lc + 1.0) / (pc + 1.0))),
    }
