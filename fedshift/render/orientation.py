"""Orientation letters for image panels: which way each voxel axis points, from the affine,
and the letters R/L, A/P, S/I drawn at a panel's edges.

Pure numpy. The letters are a 5x7 bitmap font of the six letters needed, scaled by whole
pixels and drawn white on a black outline so that they read on bright and dark tissue.
"""

from __future__ import annotations

import numpy as np

#: world axis (RAS+ scanner space) -> letter of its positive and negative direction
POSITIVE = ("R", "A", "S")
NEGATIVE = ("L", "P", "I")
OPPOSITE = dict(zip(POSITIVE + NEGATIVE, NEGATIVE + POSITIVE, strict=True))

#: panels smaller than this (pixels, either side) get no letters: they would hide it
MIN_PANEL = 40

_GLYPHS = {
    "R": ("XXXX.", "X...X", "X...X", "XXXX.", "X.X..", "X..X.", "X...X"),
    "L": ("X....", "X....", "X....", "X....", "X....", "X....", "XXXXX"),
    "A": (".XXX.", "X...X", "X...X", "XXXXX", "X...X", "X...X", "X...X"),
    "P": ("XXXX.", "X...X", "X...X", "XXXX.", "X....", "X....", "X...."),
    "S": (".XXXX", "X....", "X....", ".XXX.", "....X", "....X", "XXXX."),
    "I": ("XXXXX", "..X..", "..X..", "..X..", "..X..", "..X..", "XXXXX"),
}


def axis_codes(affine: np.ndarray) -> tuple[str, str, str] | None:
    """The direction each voxel axis increases toward, e.g. ``("R", "A", "S")``.

    Each axis takes the world axis its column of the affine is closest to (the largest
    absolute component), so an oblique acquisition gets its nearest letters.

    Parameters
    ----------
    affine : 4x4 voxel-to-world matrix (mm, RAS+ world as NIfTI defines it).

    Returns
    -------
    Three letters, or ``None`` for an affine that is not finite, is singular or maps two
    voxel axes onto the same world axis.
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        return None
    m = a[:3, :3]
    scale = float(np.abs(m).max())
    if scale == 0 or abs(np.linalg.det(m / scale)) < 1e-6:
        return None
    world = np.argmax(np.abs(m), axis=0)
    if len(set(world.tolist())) != 3:
        return None
    codes = (POSITIVE[w] if m[w, j] > 0 else NEGATIVE[w] for j, w in enumerate(world))
    return tuple(codes)  # type: ignore[return-value]


def _glyph(letter: str, scale: int) -> np.ndarray:
    rows = _GLYPHS[letter]
    mask = np.array([[c == "X" for c in row] for row in rows], dtype=bool)
    return np.kron(mask, np.ones((scale, scale), dtype=bool)).astype(bool)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one pixel in the 8 directions (the letter's outline)."""
    padded = np.pad(mask, 1)
    out = np.zeros_like(padded)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out |= np.roll(np.roll(padded, dy, axis=0), dx, axis=1)
    return out


def _stamp(rgb: np.ndarray, letter: str, top: int, left: int, scale: int) -> None:
    """Draw one outlined letter with its glyph's top-left pixel at (top, left)."""
    glyph = np.pad(_glyph(letter, scale), 1)
    outline = _dilate(glyph)[1:-1, 1:-1]
    h, w = glyph.shape
    top, left = max(0, min(top, rgb.shape[0] - h)), max(0, min(left, rgb.shape[1] - w))
    region = rgb[top : top + h, left : left + w]
    region[outline[: region.shape[0], : region.shape[1]]] = 0
    region[glyph[: region.shape[0], : region.shape[1]]] = 255


def mark_edges(rgb: np.ndarray, top: str, bottom: str, left: str, right: str) -> np.ndarray:
    """Draw the four letters at the middle of a panel's edges, in place; returns ``rgb``.

    Parameters
    ----------
    rgb : uint8 (H, W, 3) panel. Panels under :data:`MIN_PANEL` pixels are left as they are.
    top, bottom, left, right : one of R, L, A, P, S, I each.
    """
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_PANEL:
        return rgb
    scale = max(1, int(round(min(height, width) / 80)))
    gh, gw = 7 * scale + 2, 5 * scale + 2  # glyph with its outline
    margin = max(1, scale)
    mid_x, mid_y = (width - gw) // 2, (height - gh) // 2
    _stamp(rgb, top, margin, mid_x, scale)
    _stamp(rgb, bottom, height - gh - margin, mid_x, scale)
    _stamp(rgb, left, mid_y, margin, scale)
    _stamp(rgb, right, mid_y, width - gw - margin, scale)
    return rgb
