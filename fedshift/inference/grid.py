"""The way from a scan's own voxel grid to the model's and back.

A scan is read in RAS+ voxel order (:func:`fedshift.data.nifti.read_volume` permutes and
flips its axes, no interpolation). The model's grid keeps that grid's direction cosines
(an oblique scan stays oblique, as MONAI's ``Spacing`` does) and changes only the voxel
size to the package's spacing, about the same centre; training never resampled, so a scan
already at the model's spacing is passed through untouched. The way back interpolates the
lesion probability onto the RAS grid, then undoes the axis permutation and flips, so a
mask lands on the input file's own grid (same shape, affine and storage orientation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)
from scipy import ndimage

#: spacings closer than this (relative) count as equal: no resampling
SPACING_RTOL = 1e-3


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) of a 4x4 affine: the lengths of its first three columns."""
    return np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))


@dataclass(frozen=True)
class ModelGrid:
    """How a RAS-ordered scan grid maps onto the model's grid.

    Attributes
    ----------
    in_shape : (X, Y, Z) of the scan in RAS voxel order.
    shape : (X', Y', Z') of the model grid.
    scale : (3,) model voxel size / scan voxel size per axis (1 where equal).
    offset : (3,) scan voxel coordinate of model voxel (0, 0, 0).
    affine : 4x4 voxel-to-world (mm) of the model grid.
    """

    in_shape: tuple[int, int, int]
    shape: tuple[int, int, int]
    scale: np.ndarray
    offset: np.ndarray
    affine: np.ndarray

    @property
    def identity(self) -> bool:
        """True when the model grid is the scan grid (nothing is interpolated)."""
        return self.in_shape == self.shape and bool(np.all(self.scale == 1.0))

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel sizes (mm) of the model grid."""
        return tuple(float(z) for z in voxel_sizes(self.affine))  # type: ignore[return-value]


def model_grid(in_shape: Sequence[int], affine: np.ndarray, spacing: Sequence[float]) -> ModelGrid:
    """The model grid of a RAS-ordered scan (``in_shape``, ``affine``) at ``spacing`` mm.

    The model grid covers the scan's field of view about the same centre: model voxel
    ``j`` sits at scan voxel coordinate ``scale * j + offset``.
    """
    shape_in = tuple(int(n) for n in in_shape[:3])
    sizes = voxel_sizes(affine)
    target = np.asarray(spacing, dtype=np.float64)
    if np.allclose(sizes, target, rtol=SPACING_RTOL, atol=0.0):
        return ModelGrid(shape_in, shape_in, np.ones(3), np.zeros(3), np.asarray(affine, float))  # type: ignore[arg-type]
    scale = target / sizes
    n_in = np.asarray(shape_in, dtype=np.float64)
    shape = tuple(int(max(1, np.ceil(n / s - 1e-6))) for n, s in zip(n_in, scale, strict=True))
    offset = (n_in - 1) / 2 - scale * (np.asarray(shape, dtype=np.float64) - 1) / 2
    step = np.eye(4)
    step[:3, :3] = np.diag(scale)
    step[:3, 3] = offset
    return ModelGrid(shape_in, shape, scale, offset, np.asarray(affine, float) @ step)  # type: ignore[arg-type]


def to_model(grid: ModelGrid, image: np.ndarray, order: int = 1) -> np.ndarray:
    """A (X, Y, Z) scan array interpolated onto the model grid (spline ``order``; edges
    continue the border values). Returns float32 (X', Y', Z')."""
    if grid.identity:
        return np.asarray(image, dtype=np.float32)
    return ndimage.affine_transform(
        np.asarray(image, dtype=np.float32),
        grid.scale,
        offset=grid.offset,
        output_shape=grid.shape,
        order=order,
        mode="nearest",
    ).astype(np.float32)


def to_scan(grid: ModelGrid, values: np.ndarray, order: int = 1) -> np.ndarray:
    """A (X', Y', Z') model-grid array (e.g. the lesion probability) interpolated back
    onto the scan's RAS grid (X, Y, Z). Returns float32."""
    if grid.identity:
        return np.asarray(values, dtype=np.float32)
    return ndimage.affine_transform(
        np.asarray(values, dtype=np.float32),
        1.0 / grid.scale,
        offset=-grid.offset / grid.scale,
        output_shape=grid.in_shape,
        order=order,
        mode="nearest",
    ).astype(np.float32)


RAS = axcodes2ornt(("R", "A", "S"))


def to_file_order(ras: np.ndarray, ras_affine: np.ndarray, file_affine: np.ndarray) -> np.ndarray:
    """Undo :func:`fedshift.data.nifti.reorient_to_ras`: a (X, Y, Z) array in RAS voxel
    order back to the storage order of a file whose affine is ``file_affine``.

    Raises
    ------
    ValueError
        the result's affine would not be ``file_affine`` (the arrays do not belong to
        that file).
    """
    back = ornt_transform(RAS, io_orientation(file_affine))
    out = apply_orientation(ras, back)
    affine = np.asarray(ras_affine, float) @ inv_ornt_aff(back, ras.shape)
    if not np.allclose(affine, file_affine, atol=1e-4 * float(voxel_sizes(file_affine).max())):
        raise ValueError("the RAS grid does not map back onto the file's affine")
    return np.ascontiguousarray(out)
