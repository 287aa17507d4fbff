"""Orthogonal-slice mosaics of a 3D image with its label overlaid, as RGB arrays.

Used by the readiness report (a few cases per site), the prediction overlays of a run and
the README mosaic command. Pure numpy: slices are resampled to square pixels by nearest
neighbour so that anisotropic voxels keep their physical aspect, and each panel carries
orientation letters (R/L, A/P, S/I) at its edges, read from the affine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedshift.render.orientation import OPPOSITE, axis_codes, mark_edges

#: default label colour (RGB)
LABEL_COLOR = (255, 64, 32)


def window_limits(
    values: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)
) -> tuple[float, float] | None:
    """(low, high) percentiles of the finite non-zero values; None when there are none."""
    values = np.asarray(values, dtype=np.float32).ravel()
    sample = values[np.isfinite(values) & (values != 0)]
    if sample.size == 0:
        return None
    lo, hi = np.percentile(sample[:: max(1, sample.size // 1_000_000)], percentiles)
    return float(lo), float(hi if hi > lo else lo + 1.0)


def apply_window(values: np.ndarray, limits: tuple[float, float] | None) -> np.ndarray:
    """Map intensities to uint8 between ``limits``; NaN and inf become 0."""
    values = np.asarray(values, dtype=np.float32)
    if limits is None:
        return np.zeros(values.shape, dtype=np.uint8)
    lo, hi = limits
    scaled = (np.where(np.isfinite(values), values, lo) - lo) / (hi - lo)
    return np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def window(image: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> np.ndarray:
    """Map intensities to uint8 between two percentiles of the finite non-zero voxels.

    A constant or empty image gives all zeros. NaN and inf become 0.
    """
    return apply_window(image, window_limits(image, percentiles))


def _display_zooms(zooms: Sequence[float]) -> np.ndarray:
    """Voxel sizes usable for display: invalid ones (0, negative, NaN) become 1 mm."""
    z = np.asarray(list(zooms)[:3] + [1.0] * (3 - len(zooms[:3])), dtype=float)
    return np.where(np.isfinite(z) & (z > 0), z, 1.0)


def orthogonal_panels(
    volume: np.ndarray, center: Sequence[int] | None = None
) -> list[tuple[np.ndarray, int, int]]:
    """Axial, coronal and sagittal slices of an (X, Y, Z) RAS volume, ready to display.

    Returns ``(panel, row_axis, col_axis)`` triples: the panel has superior (or anterior,
    for the axial slice) at the top, and the two volume axes along its rows and columns.
    """
    c = [n // 2 for n in volume.shape] if center is None else [int(v) for v in center]
    c = [min(max(v, 0), n - 1) for v, n in zip(c, volume.shape, strict=True)]
    return [
        (volume[:, :, c[2]].T[::-1], 1, 0),  # axial: rows = y (A up), cols = x
        (volume[:, c[1], :].T[::-1], 2, 0),  # coronal: rows = z (S up), cols = x
        (volume[c[0], :, :].T[::-1], 2, 1),  # sagittal: rows = z (S up), cols = y
    ]


def _resample_indices(n: int, voxel_mm: float, pixel_mm: float) -> np.ndarray:
    """Nearest-neighbour source indices for ``n`` voxels of ``voxel_mm`` at ``pixel_mm``."""
    out = max(1, int(round(n * voxel_mm / pixel_mm)))
    idx = np.floor((np.arange(out) + 0.5) * pixel_mm / voxel_mm).astype(int)
    return np.clip(idx, 0, n - 1)


def label_center(label: np.ndarray) -> tuple[int, int, int] | None:
    """The label voxel nearest the label's centre of mass (so all three slices cut it)."""
    coords = np.argwhere(np.asarray(label) > 0)
    if coords.size == 0:
        return None
    nearest = coords[np.argmin(((coords - coords.mean(axis=0)) ** 2).sum(axis=1))]
    return int(nearest[0]), int(nearest[1]), int(nearest[2])


def render_mosaic(
    image: np.ndarray,
    label: np.ndarray | None = None,
    zooms: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    center: Sequence[int] | None = None,
    height: int | None = 160,
    percentiles: tuple[float, float] = (1.0, 99.0),
    color: tuple[int, int, int] = LABEL_COLOR,
    alpha: float = 0.6,
    gap: int = 2,
    affine: np.ndarray | None = None,
    markers: bool = True,
) -> np.ndarray:
    """Three orthogonal slices side by side, grayscale, with the label in colour and the
    orientation letters (R/L, A/P, S/I) at each panel's edges.

    Parameters
    ----------
    image : (X, Y, Z) intensities in RAS+ orientation (as :func:`read_volume` gives).
    label : (X, Y, Z) array of the same shape, foreground > 0, or ``None``.
    zooms : voxel sizes in mm; pixels are square in mm, so aspect is respected.
    center : voxel the slices go through (default: the middle of the volume).
    height : height in pixels of the tallest panel; ``None`` keeps one pixel per
        smallest voxel size.
    percentiles : intensity window (of the non-zero pixels of the three slices) mapped to
        black..white.
    color, alpha : label colour and its opacity.
    gap : black pixels between panels.
    affine : the image's 4x4 voxel-to-world matrix, where the letters are read from;
        ``None`` means the image is RAS+ (as :func:`read_volume` gives). An affine whose
        axes cannot be named (singular, not finite) gets no letters.
    markers : draw the orientation letters (panels under 40 pixels never get them).

    Returns
    -------
    uint8 array (H, W, 3).
    """
    image = np.asarray(image)
    if image.ndim != 3 or min(image.shape) < 1:
        raise ValueError(f"render_mosaic needs a 3D image, got shape {image.shape}")
    if label is not None and np.shape(label) != image.shape:
        raise ValueError(f"label shape {np.shape(label)} differs from image shape {image.shape}")
    z = _display_zooms(zooms)
    codes = None
    if markers:
        codes = ("R", "A", "S") if affine is None else axis_codes(affine)
    raw = orthogonal_panels(image, center)
    # window from the three slices shown, not the whole volume (much cheaper at 1 mm)
    limits = window_limits(np.concatenate([p.ravel() for p, _, _ in raw]), percentiles)
    slices = [(apply_window(p, limits), r, c) for p, r, c in raw]
    mask = None if label is None else np.asarray(label) > 0
    extents = [image.shape[a] * z[a] for a in (1, 2, 2)]
    pixel_mm = float(z.min()) if height is None else max(extents) / max(int(height), 1)
    panels = []
    masks = orthogonal_panels(mask, center) if mask is not None else [None] * 3
    for (panel, row_axis, col_axis), mask_panel in zip(slices, masks, strict=True):
        rows = _resample_indices(panel.shape[0], z[row_axis], pixel_mm)
        cols = _resample_indices(panel.shape[1], z[col_axis], pixel_mm)
        rgb = np.repeat(panel[np.ix_(rows, cols)][:, :, None], 3, axis=2).astype(np.float32)
        if mask_panel is not None:
            on = mask_panel[0][np.ix_(rows, cols)]
            rgb[on] = (1 - alpha) * rgb[on] + alpha * np.asarray(color, dtype=np.float32)
        panel_rgb = np.rint(rgb).astype(np.uint8)
        if codes is not None:
            top, right = codes[row_axis], codes[col_axis]
            mark_edges(panel_rgb, top, OPPOSITE[top], OPPOSITE[right], right)
        panels.append(panel_rgb)
    return _hstack(panels, gap)


def _hstack(panels: list[np.ndarray], gap: int) -> np.ndarray:
    """Panels side by side, vertically centred on a black canvas."""
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    x = 0
    for panel in panels:
        top = (height - panel.shape[0]) // 2
        canvas[top : top + panel.shape[0], x : x + panel.shape[1]] = panel
        x += panel.shape[1] + gap
    return canvas
