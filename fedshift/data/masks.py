"""Head and brain masks from intensities alone (no template, no registration).

One home for masks: readiness (IQMs, labels outside the brain) and training
preprocessing (z-score inside the brain) both call these.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: erosion (mm) that cuts the scalp's thin bridges to the brain
BRAIN_EROSION_MM = 4.0


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D sample (histogram-based, O(n))."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between))])


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed holes: background components that do not touch the volume's border."""
    labels, n = ndimage.label(~mask)
    if n == 0:
        return mask.astype(bool)
    border = np.unique(
        np.concatenate(
            [
                labels[0].ravel(),
                labels[-1].ravel(),
                labels[:, 0].ravel(),
                labels[:, -1].ravel(),
                labels[:, :, 0].ravel(),
                labels[:, :, -1].ravel(),
            ]
        )
    )
    outside = np.isin(labels, border[border > 0])
    return ~outside


#: above this radius (voxels) morphology by a ball uses distance transforms instead
_MAX_BALL_VOXELS = 3.0


def _ball(radius_vox: np.ndarray) -> np.ndarray:
    r = np.maximum(np.round(radius_vox).astype(int), 0)
    grid = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    dist = sum((g / max(k, 0.5)) ** 2 for g, k in zip(grid, r, strict=True))
    return dist <= 1.0


def safe_zooms(zooms: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """The first three voxel sizes (mm); missing, zero, negative or NaN ones become 1 mm."""
    z = np.ones(3)
    given = np.asarray(zooms, dtype=float).ravel()[:3]
    z[: given.size] = given
    return np.where(np.isfinite(z) & (z > 0), z, 1.0)


def erode_mm(mask: np.ndarray, zooms: np.ndarray, radius_mm: float) -> np.ndarray:
    """Erode by a ball of ``radius_mm``: a structuring element when it is small in voxels,
    else an exact Euclidean distance transform (cost independent of the radius)."""
    radius = np.maximum(radius_mm / zooms, 1.0)
    if radius.max() <= _MAX_BALL_VOXELS:
        return ndimage.binary_erosion(mask, structure=_ball(radius))
    return ndimage.distance_transform_edt(mask, sampling=zooms) > radius_mm


def dilate_mm(mask: np.ndarray, zooms: np.ndarray, radius_mm: float) -> np.ndarray:
    """Dilate by a ball of ``radius_mm`` (see :func:`erode_mm`)."""
    radius = np.maximum(radius_mm / zooms, 1.0)
    if radius.max() <= _MAX_BALL_VOXELS:
        return ndimage.binary_dilation(mask, structure=_ball(radius))
    return ndimage.distance_transform_edt(~mask, sampling=zooms) <= radius_mm


def head_mask(image: np.ndarray) -> np.ndarray:
    """Voxels of the head: above Otsu's threshold, closed, holes filled, largest component.

    Parameters
    ----------
    image : (X, Y, Z) intensities. Returns a bool array of the same shape. A
        skull-stripped image gives the brain. A head cut by the field of view (neck at the
        bottom) keeps its voxels on the border: the closing runs on a padded copy.
    """
    finite = np.where(np.isfinite(image), image, 0)
    mask = finite > otsu_threshold(finite.ravel()[:: max(1, finite.size // 2_000_000)])
    if not mask.any():
        return mask
    pad = 2
    closed = ndimage.binary_closing(np.pad(mask, pad, mode="edge"), iterations=pad)
    mask = closed[tuple(slice(pad, -pad) for _ in range(mask.ndim))]
    return fill_holes(largest_component(mask))


def brain_mask(
    image: np.ndarray, zooms: tuple[float, ...], head: np.ndarray | None = None
) -> np.ndarray:
    """Brain (parenchyma + CSF) inside the head: cut thin scalp bridges, keep the core.

    Inside the head mask, voxels darker than a low threshold (skull, air) are removed, the
    rest is eroded by ~4 mm to break the scalp's thin connections to the brain, the largest
    component is kept, dilated back and holes (ventricles) are filled. Works on skull-on
    FLAIR and T1; on a skull-stripped image it returns about the head mask.

    Parameters
    ----------
    image : (X, Y, Z) intensities.
    zooms : voxel sizes in mm (invalid ones count as 1 mm).
    head : head mask if already computed.
    """
    head = head_mask(image) if head is None else head
    if not head.any():
        return head
    inside = image[head]
    low = np.percentile(inside, 5)
    tissue = head & (image > low)
    z = safe_zooms(zooms)
    core = erode_mm(tissue, z, BRAIN_EROSION_MM)
    if not core.any():
        return head
    brain = dilate_mm(largest_component(core), z, BRAIN_EROSION_MM) & head
    return fill_holes(brain)
