"""Integrity checks of one image: dimensions, affine, spacing, values, and grid agreement.

Each check returns findings (never raises on bad content). Thresholds are module
constants so the report can state them.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import nibabel as nib
import numpy as np

from fedshift.data.nifti import Volume, affine_is_valid
from fedshift.findings import Finding, finding

#: voxel sizes outside [MIN_SPACING_MM, MAX_SPACING_MM] are not MRI of a head
MIN_SPACING_MM = 0.05
MAX_SPACING_MM = 20.0
#: largest / smallest voxel size above this is not a usable 3D volume
MAX_ANISOTROPY = 10.0
#: a 3D volume has at least this many voxels along every axis
MIN_AXIS_VOXELS = 2
#: image and label grids may differ by this fraction of the smallest voxel size (corners)
GRID_TOLERANCE_VOXELS = 0.1


def spacing_problem(zooms: Sequence[float]) -> str | None:
    """Why voxel sizes (mm) are unusable, or ``None`` when they are fine."""
    z = np.asarray(zooms, dtype=float)
    shown = "x".join(f"{v:g}" for v in z)
    if not np.all(np.isfinite(z)):
        return f"voxel sizes {shown} mm are not finite"
    if np.any(z <= 0):
        return f"voxel sizes {shown} mm include zero or negative values"
    if z.min() < MIN_SPACING_MM or z.max() > MAX_SPACING_MM:
        return f"voxel sizes {shown} mm are outside [{MIN_SPACING_MM}, {MAX_SPACING_MM}] mm"
    if z.max() / z.min() > MAX_ANISOTROPY:
        return (
            f"voxel sizes {shown} mm are too anisotropic "
            f"(ratio {z.max() / z.min():.1f} > {MAX_ANISOTROPY:g})"
        )
    return None


def affine_voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) implied by an affine: the lengths of its first three columns."""
    return np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))


def count_non_finite(data: np.ndarray) -> int:
    """Number of NaN or infinite voxels (0 for integer data)."""
    if not np.issubdtype(data.dtype, np.inexact):
        return 0
    return int(data.size - np.count_nonzero(np.isfinite(data)))


def is_constant(data: np.ndarray) -> bool:
    """True when every (finite) voxel has the same value."""
    if data.size == 0:
        return True
    if np.issubdtype(data.dtype, np.inexact):
        data = data[np.isfinite(data)]
        if data.size == 0:
            return True
    return bool(data.min() == data.max())


def _describe_affine(affine: np.ndarray) -> str:
    a = np.asarray(affine, dtype=float)
    if not np.all(np.isfinite(a)):
        return "affine holds NaN or infinite values"
    if not np.any(a[:3, :3]):
        return "affine's rotation/zoom part is all zero"
    with np.errstate(all="ignore"):
        det = float(np.linalg.det(a[:3, :3]))
    return f"affine is singular or degenerate (determinant {det:.3g})"


def integrity_findings(
    vol: Volume, file: str | None, *, check_constant: bool = True
) -> list[Finding]:
    """``not_3d``, ``bad_affine``, ``bad_spacing``, ``non_finite``, ``constant_image``,
    plus ``unusual_input`` infos for valid but unusual files (NIfTI-2, non-RAS storage).
    """
    found: list[Finding] = []
    data = vol.data
    if data.ndim != 3 or min(data.shape) < MIN_AXIS_VOXELS:
        found.append(
            finding(
                "not_3d",
                f"shape {tuple(data.shape)} is not a 3D volume (X, Y, Z) with "
                f">= {MIN_AXIS_VOXELS} voxels per axis",
                file,
            )
        )
    affine_ok = affine_is_valid(vol.affine)
    if not affine_ok:
        found.append(finding("bad_affine", _describe_affine(vol.affine), file))
    pixdim_fixes = [m for m in vol.header_fixes if "pixdim" in m]
    if pixdim_fixes:
        found.append(
            finding("bad_spacing", f"header voxel sizes were invalid: {pixdim_fixes[0]}", file)
        )
    elif data.ndim >= 3:
        problem = spacing_problem(vol.zooms[:3])
        if problem is None and affine_ok:
            problem = spacing_problem(affine_voxel_sizes(vol.affine))
            problem = problem and f"the affine's {problem}"
        if problem:
            found.append(finding("bad_spacing", problem, file))
    n_bad = count_non_finite(data)
    if n_bad:
        found.append(
            finding("non_finite", f"{n_bad:,} of {data.size:,} voxels are NaN or infinite", file)
        )
    elif check_constant and data.size and is_constant(data):
        found.append(finding("constant_image", f"every voxel equals {data.flat[0]!r}", file))
    found.extend(_unusual(vol, file))
    return found


def _unusual(vol: Volume, file: str | None) -> list[Finding]:
    notes = []
    if isinstance(vol.header, nib.Nifti2Header):
        notes.append(finding("unusual_input", "NIfTI-2 file, read as such", file))
    if "?" not in vol.orientation and tuple(vol.orientation) != ("R", "A", "S"):
        notes.append(
            finding(
                "unusual_input",
                f"stored in {''.join(vol.orientation)} orientation, reoriented to RAS on load",
                file,
            )
        )
    return notes


def grid_distance_mm(affine_a: np.ndarray, affine_b: np.ndarray, shape: Sequence[int]) -> float:
    """Largest distance (mm) between where two affines put the corners of a voxel grid."""
    corners = np.array([[*c, 1.0] for c in product(*[(0, max(n - 1, 0)) for n in shape[:3]])])
    diff = corners @ (np.asarray(affine_a, float) - np.asarray(affine_b, float)).T
    return float(np.sqrt((diff[:, :3] ** 2).sum(axis=1)).max())


def grid_findings(
    reference: Volume, other: Volume, file: str | None, what: str = "label"
) -> list[Finding]:
    """``shape_mismatch`` / ``affine_mismatch`` of ``other`` against the ``reference`` image.

    Both volumes are compared after reorientation to RAS, so an image and a label stored
    in the same other orientation (e.g. both LPS), or in different orientations covering
    the same grid, agree.
    """
    found = []
    if reference.data.shape != other.data.shape:
        found.append(
            finding(
                "shape_mismatch",
                f"{what} shape {tuple(other.data.shape)} differs from image shape "
                f"{tuple(reference.data.shape)}",
                file,
            )
        )
    if affine_is_valid(reference.affine) and affine_is_valid(other.affine):
        distance = grid_distance_mm(reference.affine, other.affine, reference.data.shape)
        voxel = float(affine_voxel_sizes(reference.affine).min())
        if distance > GRID_TOLERANCE_VOXELS * voxel:
            found.append(
                finding(
                    "affine_mismatch",
                    f"{what} grid is up to {distance:.3g} mm away from the image grid "
                    f"(tolerance {GRID_TOLERANCE_VOXELS * voxel:.3g} mm)",
                    file,
                )
            )
    return found
