"""Subject anatomy from the MNI152 template and tissue maps that ship inside nilearn.

The template (ICBM152 2009a, 1 mm, skull-stripped T1 + GM/WM probability maps) is read
from nilearn's package data: no download. Around the brain we add the layers a FLAIR scan
shows (outer CSF, skull, scalp) from the distance to the brain. A subject is the template
warped by a global scale, a local ventricle enlargement and a smooth random displacement,
sampled on the output grid (``voxel_mm``), which gives partial-volume effects for free.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

#: tissue map order in :class:`Template` and :class:`Subject`
TISSUES = ("gm", "wm", "csf", "skull", "scalp")

_NILEARN_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}

# MNI box (mm) that holds the lateral ventricles
_VENTRICLE_BOX = ((-30.0, 30.0), (-45.0, 30.0), (-5.0, 35.0))


@dataclass(frozen=True)
class Template:
    """Tissue probability maps on the 1 mm template grid.

    maps : (5, X, Y, Z) float32 in [0, 1], order :data:`TISSUES`.
    affine : template voxel -> MNI mm.
    ventricles : bool (X, Y, Z), lateral ventricles.
    center_mm : centre of the ventricles (MNI mm), anchor of ventricle enlargement.
    head_box_mm : (3, 2) min/max MNI mm of the head (scalp included).
    """

    maps: np.ndarray
    affine: np.ndarray
    ventricles: np.ndarray
    center_mm: np.ndarray
    head_box_mm: np.ndarray


def _nilearn_data_dir() -> Path:
    import nilearn.datasets

    return Path(nilearn.datasets.__file__).parent / "data"


def _load(name: str) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(_nilearn_data_dir() / _NILEARN_FILES[name])
    return np.asarray(img.dataobj, dtype=np.float32) / 255.0, img.affine


def _crop_to(box: tuple[slice, ...], affine: np.ndarray, *arrays: np.ndarray) -> tuple:
    shifted = affine.copy()
    shifted[:3, 3] += affine[:3, :3] @ np.array([s.start for s in box], dtype=float)
    return (shifted, *(a[box] for a in arrays))


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Build the five tissue maps once per process (a few seconds)."""
    t1, affine = _load("t1")
    gm, _ = _load("gm")
    wm, _ = _load("wm")
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise RuntimeError("expected nilearn's 1 mm axis-aligned MNI152 template")
    brain = t1 > 0.02
    lo = np.maximum(np.argwhere(brain).min(axis=0) - 16, 0)
    hi = np.minimum(np.argwhere(brain).max(axis=0) + 17, brain.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    affine, brain, gm, wm = _crop_to(box, affine, brain, gm, wm)
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(brain, iterations=2))
    brain_soft = ndimage.gaussian_filter(brain.astype(np.float32), 0.7)
    csf = np.clip(brain_soft - np.clip(gm + wm, 0, 1), 0, 1)
    dist = ndimage.distance_transform_edt(~brain).astype(np.float32)  # mm (1 mm grid)

    def shell(lo_mm: float, hi_mm: float) -> np.ndarray:
        inside = (dist > lo_mm) & (dist <= hi_mm)
        return ndimage.gaussian_filter(inside.astype(np.float32), 0.8)

    maps = np.stack(
        [gm, wm, np.clip(csf + shell(0.0, 2.5), 0, 1), shell(2.5, 8.0), shell(8.0, 13.0)]
    ).astype(np.float32)
    maps /= np.maximum(maps.sum(axis=0, keepdims=True), 1.0)  # partial volumes sum to <= 1

    axes_mm = [affine[i, 3] + np.arange(n, dtype=np.float32) for i, n in enumerate(brain.shape)]
    in_box = np.ones(brain.shape, bool)
    for axis, (lo_mm, hi_mm) in enumerate(_VENTRICLE_BOX):
        keep = (axes_mm[axis] >= lo_mm) & (axes_mm[axis] <= hi_mm)
        in_box &= keep.reshape([-1 if i == axis else 1 for i in range(3)])
    ventricles = (csf > 0.5) & in_box & brain & (ndimage.binary_erosion(brain, iterations=3))
    center = np.argwhere(ventricles).mean(axis=0) + affine[:3, 3]
    head = np.argwhere(dist <= 13.0)
    head_box = np.stack([head.min(axis=0), head.max(axis=0)], axis=1) + affine[:3, 3:4]
    return Template(maps, affine, ventricles, center, head_box)


def output_grid(
    template: Template, voxel_mm: float, margin_mm: float = 6.0
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine (RAS, mm) of the output grid covering the head plus a margin."""
    lo = template.head_box_mm[:, 0] - margin_mm
    hi = template.head_box_mm[:, 1] + margin_mm
    shape = tuple(int(np.ceil((h - lo_) / voxel_mm)) for lo_, h in zip(lo, hi, strict=True))
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = lo
    return shape, affine  # type: ignore[return-value]


@dataclass(frozen=True)
class Subject:
    """One subject on the output grid.

    maps : (5, X, Y, Z) tissue fractions, order :data:`TISSUES`.
    points_mm : (3, X, Y, Z) template (MNI) coordinates each output voxel samples: lesions
        are placed in template space and drawn through this map.
    params : planted parameters (scale, ventricle factor), for truth.json.
    """

    maps: np.ndarray
    points_mm: np.ndarray
    params: dict[str, float]


def _smooth_displacement(
    shape: tuple[int, ...], sd_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """(3, *shape) displacement (mm) from random values on a coarse 6^3 control grid."""
    coarse = rng.normal(0.0, sd_mm, size=(3, 6, 6, 6)).astype(np.float32)
    factors = [s / 6 for s in shape]
    return np.stack([ndimage.zoom(c, factors, order=3, mode="nearest") for c in coarse])


def sample_subject(
    template: Template,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    rng: np.random.Generator,
    *,
    deformation_mm: float,
    scale_sd: float,
    ventricle_sd: float,
) -> Subject:
    """Warp the template into a new subject, sampled on the output grid."""
    scale = float(np.clip(rng.normal(1.0, scale_sd), 0.8, 1.2))
    ventricle = float(np.exp(np.clip(rng.normal(0.0, ventricle_sd), -0.7, 1.0)))
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    p = affine[:3, :3] @ ijk + affine[:3, 3:4]  # output mm
    c = template.center_mm[:, None]
    q = c + (p - c) / scale  # global scale about the ventricle centre
    # local magnification around the ventricles: ventricle > 1 enlarges them
    r2 = ((q - c) ** 2).sum(axis=0, keepdims=True)
    weight = np.exp(-r2 / (2 * 22.0**2))
    q = c + (q - c) / (1.0 + (ventricle - 1.0) * weight)
    q = q + _smooth_displacement(shape, deformation_mm, rng).reshape(3, -1)
    inv = np.linalg.inv(template.affine)
    vox = inv[:3, :3] @ q + inv[:3, 3:4]
    maps = np.stack(
        [ndimage.map_coordinates(m, vox, order=1, mode="constant", cval=0.0) for m in template.maps]
    ).reshape((len(TISSUES), *shape))
    params = {"scale": scale, "ventricle_factor": ventricle}
    return Subject(maps.astype(np.float32), q.reshape((3, *shape)).astype(np.float32), params)


def ventricle_distance_mm(template: Template) -> np.ndarray:
    """Distance (mm) of each template voxel to the lateral ventricles (cached by caller)."""
    return ndimage.distance_transform_edt(~template.ventricles).astype(np.float32)
