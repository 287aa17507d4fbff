"""MRIQC-style image quality metrics (IQMs) of one structural image, without templates.

Definitions follow MRIQC (Esteban et al. 2017, ``mriqc.qc.anatomical``); the tissue masks
do not come from FSL FAST but from a head mask (:func:`fedshift.data.masks.head_mask`), a
brain mask (:func:`fedshift.data.masks.brain_mask`) and a 3-class 1D k-means of the brain's
intensities. Class ranks depend on the contrast (:func:`tissue_order`): on FLAIR CSF < WM
< GM, on T1 CSF < GM < WM, on T2 WM < GM < CSF.

Metrics (``mu``: mean, ``sd``: standard deviation of a class; ``bg``: background, the air
outside the head):

- ``snr``: mu_WM / sd_WM (MRIQC's ``snr_wm``; higher is better).
- ``cnr``: \\|mu_GM - mu_WM\\| / sqrt(sd_bg^2 + sd_GM^2 + sd_WM^2) (higher is better).
- ``cjv``: (sd_WM + sd_GM) / \\|mu_WM - mu_GM\\| (lower is better).
- ``efc``: entropy focus criterion, the Shannon entropy of voxel intensities normalised by
  its maximum (Atkinson 1997; lower means less ghosting and blurring).
- ``fber``: median foreground energy / median background energy (higher is better).
- ``wm2max``: median WM intensity / 99.95th percentile of the image (about 0.6-0.8 for a
  well-behaved T1).
- ``bias_range``: p95 - p5 of exp(field) inside the head, where ``field`` is a 2nd-order
  3D polynomial fitted to log intensities of WM voxels and normalised to median 0. A cheap
  stand-in for MRIQC's N4-based ``inu_range``: it also absorbs genuine slow anatomical
  variation of WM intensity, so compare it between images, not against MRIQC's values.

A metric is NaN when undefined: without background (skull-stripped or zero-filled
outside the head) ``fber`` and ``cnr`` are NaN; with an empty tissue class, those using it.
Images over :data:`MAX_IQM_VOXELS` voxels are measured on a strided subsample (every
``step``-th voxel along each axis), which keeps a 1 mm head under a second.
IQMs stay at the site (in the readiness report); only pass/fail counts leave it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fedshift.data.masks import brain_mask, head_mask

IQM_NAMES = ("snr", "cnr", "cjv", "efc", "fber", "wm2max", "bias_range")
#: images larger than this are measured on a strided subsample
MAX_IQM_VOXELS = 2**22
#: classes and background need at least this many voxels to be measured
MIN_VOXELS = 20
#: at most this many WM voxels enter the bias-field fit
MAX_FIT_VOXELS = 20_000

FLAIR_ORDER = ("csf", "wm", "gm")
T1_ORDER = ("csf", "gm", "wm")
T2_ORDER = ("wm", "gm", "csf")


def tissue_order(modality: str) -> tuple[str, str, str]:
    """Tissue classes from darkest to brightest for a channel name from dataset.json.

    ``FLAIR`` -> CSF < WM < GM; T1-like names (``T1``, ``T1w``, ``T1CE``, ``MPRAGE``,
    ``SPGR``) -> CSF < GM < WM; ``T2`` -> WM < GM < CSF; anything else is treated as
    FLAIR, FedShift's default contrast.
    """
    name = modality.lower()
    if "flair" in name:
        return FLAIR_ORDER
    if "t1" in name or "mprage" in name or "spgr" in name:
        return T1_ORDER
    if "t2" in name:
        return T2_ORDER
    return FLAIR_ORDER


@dataclass(frozen=True)
class Segmentation:
    """Masks an image's IQMs are computed from, all on the (possibly strided) grid.

    Attributes
    ----------
    image : float32 (X', Y', Z') intensities, ``image[::step, ::step, ::step]``.
    zooms : voxel sizes (mm) of the strided grid.
    step : stride from the full-resolution grid.
    head, brain : bool masks.
    background : bool mask of air, or ``None`` when the image has none (skull-stripped).
    tissues : ``{"csf", "wm", "gm"}`` -> bool mask inside the brain.
    """

    image: np.ndarray
    zooms: tuple[float, float, float]
    step: int
    head: np.ndarray
    brain: np.ndarray
    background: np.ndarray | None
    tissues: dict[str, np.ndarray]


def subsample_step(shape: Sequence[int], max_voxels: int = MAX_IQM_VOXELS) -> int:
    """Smallest stride along every axis that leaves at most ``max_voxels`` voxels."""
    step = max(1, math.ceil((math.prod(shape) / max_voxels) ** (1 / 3)))
    while math.prod(math.ceil(n / step) for n in shape) > max_voxels:
        step += 1
    return step


def kmeans_1d(values: np.ndarray, k: int = 3, bins: int = 256) -> np.ndarray:
    """Globally optimal 1D k-means of a sample, on its histogram; ``k`` sorted centres.

    The histogram spans the 0.5th-99.5th percentiles. Dynamic programming over bins finds
    the partition into ``k`` intervals of least within-class sum of squares (multi-level
    Otsu), so a small class (CSF in a brain mask) is never lost to a poor start.
    """
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi <= lo:
        return np.full(k, float(lo))
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    x = (edges[:-1] + edges[1:]) / 2 - (lo + hi) / 2  # centred: fewer cancellations
    w = np.concatenate([[0.0], np.cumsum(counts)])
    m1 = np.concatenate([[0.0], np.cumsum(counts * x)])
    m2 = np.concatenate([[0.0], np.cumsum(counts * x * x)])
    start, stop = np.meshgrid(np.arange(bins), np.arange(1, bins + 1), indexing="ij")
    weight = w[stop] - w[start]
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = m2[stop] - m2[start] - (m1[stop] - m1[start]) ** 2 / weight
    cost = np.where((stop > start) & (weight > 0), cost, np.inf)  # cost[a, b-1]: bins a..b-1
    best = cost[0].copy()  # best[b-1]: one class over bins 0..b-1
    cuts = []
    for _ in range(k - 1):
        total = np.full((bins, bins), np.inf)
        total[1:] = best[:-1, None] + cost[1:]  # previous classes end at bin a-1
        cuts.append(np.argmin(total, axis=0))
        best = total.min(axis=0)
    bounds, end = [bins], bins - 1
    for cut in reversed(cuts):
        end = int(cut[end])
        bounds.append(end)
        end -= 1
    bounds.append(0)
    bounds = sorted(bounds)
    centres = [
        (m1[b] - m1[a]) / (w[b] - w[a]) if w[b] > w[a] else np.nan
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return np.sort(np.asarray(centres, dtype=float) + (lo + hi) / 2)


def _background(image: np.ndarray, head: np.ndarray) -> np.ndarray | None:
    """Air: voxels 2 voxels or more away from the head; ``None`` if absent or all zero."""
    air = ~ndimage.binary_dilation(head, iterations=2)
    if np.count_nonzero(air) < MIN_VOXELS:
        return None
    values = image[air]
    if np.median(np.abs(values)) <= 0 or values.std() <= 0:
        return None
    return air


def segment(
    image: np.ndarray,
    zooms: Sequence[float],
    modality: str = "FLAIR",
    max_voxels: int = MAX_IQM_VOXELS,
) -> Segmentation:
    """Head, brain, background and CSF/WM/GM masks of an (X, Y, Z) image (see module doc).

    Non-finite voxels are treated as 0. Voxel sizes that are not positive count as 1 mm.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"IQMs need a 3D image (X, Y, Z), got shape {image.shape}")
    step = subsample_step(image.shape, max_voxels)
    data = np.asarray(image[::step, ::step, ::step], dtype=np.float32)
    data = np.where(np.isfinite(data), data, np.float32(0))
    z = np.asarray(list(zooms)[:3], dtype=float)
    z = tuple(float(v) * step if np.isfinite(v) and v > 0 else float(step) for v in z)
    head = head_mask(data)
    brain = brain_mask(data, z, head) if head.any() else head
    tissues = {name: np.zeros(data.shape, dtype=bool) for name in FLAIR_ORDER}
    if np.count_nonzero(brain) >= 3 * MIN_VOXELS:
        inside = data[brain]
        centres = kmeans_1d(inside)
        classes = np.digitize(data, (centres[1:] + centres[:-1]) / 2)
        for rank, name in enumerate(tissue_order(modality)):
            tissues[name] = brain & (classes == rank)
    return Segmentation(data, z, step, head, brain, _background(data, head), tissues)


def _stats(values: np.ndarray) -> tuple[float, float]:
    """(mean, sample standard deviation), NaN when there are too few voxels."""
    if values.size < MIN_VOXELS:
        return math.nan, math.nan
    values = values.astype(np.float64)
    return float(values.mean()), float(values.std(ddof=1))


def efc(image: np.ndarray) -> float:
    """MRIQC's entropy focus criterion of the whole image (negative values clipped to 0)."""
    values = np.clip(np.asarray(image, dtype=np.float64).ravel(), 0, None)
    n = values.size
    b_max = math.sqrt(float((values**2).sum()))
    if n < 2 or b_max <= 0:
        return math.nan
    efc_max = n * (1.0 / math.sqrt(n)) * math.log(1.0 / math.sqrt(n))
    scaled = values / b_max
    return float((scaled * np.log(scaled + 1e-16)).sum() / efc_max)


def fber(image: np.ndarray, head: np.ndarray, background: np.ndarray | None) -> float:
    """Median energy (squared intensity) in the head over that in the background."""
    if background is None or not head.any():
        return math.nan
    bg = float(np.median(np.abs(image[background]) ** 2))
    if bg <= 0:
        return math.nan
    return float(np.median(np.abs(image[head]) ** 2)) / bg


def _polynomial_terms(coords: np.ndarray) -> np.ndarray:
    """Columns x, y, z, x^2, y^2, z^2, xy, xz, yz of (N, 3) coordinates (no constant)."""
    x, y, z = coords.T
    return np.stack([x, y, z, x * x, y * y, z * z, x * y, x * z, y * z], axis=1)


def _sample_coords(mask: np.ndarray, max_points: int) -> np.ndarray:
    """(N, 3) voxel coordinates of ``mask`` on a regular strided grid, N <~ ``max_points``."""
    step = max(1, math.ceil((np.count_nonzero(mask) / max_points) ** (1 / 3)))
    return np.argwhere(mask[::step, ::step, ::step]) * step


def bias_range(
    image: np.ndarray, wm: np.ndarray, head: np.ndarray, zooms: Sequence[float]
) -> float:
    """p95 - p5 of exp(field) in the head, field a quadratic fit to log WM intensity.

    A cheaper stand-in for MRIQC's N4-based ``inu_range`` (see the module docstring). The
    fit uses at most :data:`MAX_FIT_VOXELS` WM voxels, the percentiles a regular sample
    of the head of about ten times as many.
    """
    positive = wm & (image > 0)
    if np.count_nonzero(positive) < 10 * MIN_VOXELS or not head.any():
        return math.nan
    fit = _sample_coords(positive, MAX_FIT_VOXELS)
    scale = np.asarray(zooms[:3], dtype=float)
    centre = np.asarray(image.shape, dtype=float) * scale / 2
    half = max(float(centre.max()), 1e-6)
    terms = _polynomial_terms((fit * scale - centre) / half)
    design = np.column_stack([np.ones(len(terms)), terms])
    target = np.log(image[tuple(fit.T)].astype(np.float64))
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    where = _sample_coords(head, 10 * MAX_FIT_VOXELS)
    field = _polynomial_terms((where * scale - centre) / half) @ coef[1:]
    gain = np.exp(field - np.median(field))
    p5, p95 = np.percentile(gain, [5, 95])
    return float(p95 - p5)


def iqms_from_segmentation(seg: Segmentation) -> dict[str, float]:
    """The metrics of :data:`IQM_NAMES` from a :class:`Segmentation` (NaN when undefined)."""
    img = seg.image
    mu_wm, sd_wm = _stats(img[seg.tissues["wm"]])
    mu_gm, sd_gm = _stats(img[seg.tissues["gm"]])
    sd_bg = float(img[seg.background].std(ddof=1)) if seg.background is not None else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = abs(mu_gm - mu_wm)
        wm_median = (
            float(np.median(img[seg.tissues["wm"]])) if seg.tissues["wm"].any() else math.nan
        )
        top = float(np.percentile(img, 99.95))
        out = {
            "snr": mu_wm / sd_wm if sd_wm > 0 else math.nan,
            "cnr": contrast / math.sqrt(sd_bg**2 + sd_gm**2 + sd_wm**2),
            "cjv": (sd_wm + sd_gm) / contrast if contrast > 0 else math.nan,
            "efc": efc(img),
            "fber": fber(img, seg.head, seg.background),
            "wm2max": wm_median / top if top > 0 else math.nan,
            "bias_range": bias_range(img, seg.tissues["wm"], seg.head, seg.zooms),
        }
    return {name: float(value) if np.isfinite(value) else math.nan for name, value in out.items()}


def compute_iqms(
    image: np.ndarray,
    zooms: Sequence[float],
    modality: str = "FLAIR",
    max_voxels: int = MAX_IQM_VOXELS,
) -> dict[str, float]:
    """Image quality metrics of one (X, Y, Z) image; see the module docstring.

    Parameters
    ----------
    image : intensities, any real dtype (int16, uint8, float), RAS+ not required.
    zooms : voxel sizes in mm.
    modality : channel name (``"FLAIR"``, ``"T1"``, ...), sets the tissue class ranks.
    max_voxels : above this many voxels a strided subsample is measured.

    Returns
    -------
    ``{name: value}`` for every name of :data:`IQM_NAMES`, NaN where undefined.
    """
    return iqms_from_segmentation(segment(image, zooms, modality, max_voxels))
