"""Helpers of tests/inference (import them from here, never from ``conftest``): a tiny
segmentation config, and head phantoms defined in scanner millimetres, so one subject
can be written on any voxel grid (RAS, LPS, oblique, anisotropic) with its label.

Head: ellipsoid of scalp, dark skull, brain and a dark ventricle around the world
origin; lesions: bright balls given in mm. Noise comes from a seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from fedshift.model.config import (
    AugmentConfig,
    ModelConfig,
    PreprocessConfig,
    SegConfig,
    TrainConfig,
)

#: voxel size (mm) of the tiny model; at 1.5 mm the way back to 0.9 x 0.9 x 3 mm scans
#: scored 0.010-0.025 above the model grid's Dice on 12 phantoms, at 2 mm -0.017..+0.026
MODEL_SPACING = 1.5
#: lesion radii (mm) of every phantom here: 3.3-5.3 model voxels
LESION_MM = (5.0, 8.0)


def tiny_seg() -> SegConfig:
    """2-level UNet, 16^3 patches, quick N4, no intensity augmentation (a fast learner)."""
    model = ModelConfig(channels=(8, 16, 32), strides=(2, 2), num_res_units=1, feat_dim=8)
    train = replace(TrainConfig(), patch_size=(16, 16, 16), batch_size=2, lr=1e-2, seed=0)
    augment = AugmentConfig(bias_field_prob=0, contrast_prob=0, noise_prob=0, smooth_prob=0)
    pre = PreprocessConfig(n4_shrink=2, n4_iterations=(20, 20))
    return SegConfig(model=model, preprocess=pre, augment=augment, train=train)


HEAD_RADII_MM = np.array([27.0, 29.0, 25.0])
Lesion = tuple[tuple[float, float, float], float]  # (centre mm, radius mm)


def rotation(axis: int, degrees: float) -> np.ndarray:
    """3x3 rotation about world axis ``axis``."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def grid(
    spacing: Sequence[float],
    fov_mm: float = 66.0,
    directions: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(affine, shape) of a grid of ``spacing`` mm covering ``fov_mm`` about the origin.

    ``directions``: 3x3 matrix whose columns are the voxel axes' unit directions in
    world space (identity: RAS; ``diag(-1, -1, 1)``: LPS; a rotation: oblique).
    """
    d = np.eye(3) if directions is None else np.asarray(directions, float)
    z = np.asarray(spacing, float)
    shape = tuple(int(np.ceil(fov_mm / s)) for s in z)
    affine = np.eye(4)
    affine[:3, :3] = d * z
    centre = (np.asarray(shape, float) - 1) / 2
    affine[:3, 3] = -affine[:3, :3] @ centre
    return affine, shape  # type: ignore[return-value]


def draw_lesions(rng: np.random.Generator, n: int, radius_mm: tuple[float, float]) -> list[Lesion]:
    """``n`` balls inside the brain's core, apart from the ventricle and from each other
    (so each stays one connected lesion)."""
    out: list[Lesion] = []
    vent = HEAD_RADII_MM * np.array([0.2, 0.32, 0.22])
    for _ in range(10_000):
        if len(out) == n:
            return out
        c = rng.uniform(-1, 1, 3) * HEAD_RADII_MM * 0.5
        r = float(rng.uniform(*radius_mm))
        if np.sum((c / (vent + r)) ** 2) < 1.5:
            continue  # too close to the ventricle
        if any(np.linalg.norm(c - np.asarray(o)) < r + ro + 3.0 for o, ro in out):
            continue
        out.append(((float(c[0]), float(c[1]), float(c[2])), r))
    raise ValueError(f"cannot place {n} lesions of {radius_mm} mm")


def render(
    affine: np.ndarray,
    shape: Sequence[int],
    lesions: Sequence[Lesion],
    rng: np.random.Generator,
    noise: float = 6.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8) of the phantom sampled at the grid's voxel centres."""
    idx = np.indices(tuple(shape)).reshape(3, -1).astype(float)
    world = (affine[:3, :3] @ idx + affine[:3, 3:4]).T.reshape(*shape, 3)
    r = np.sqrt(((world / HEAD_RADII_MM) ** 2).sum(-1))
    image = np.zeros(tuple(shape), np.float32)
    image[r < 1.0] = 250.0
    image[r < 0.88] = 30.0
    image[r < 0.78] = 200.0
    vent = ((world / (HEAD_RADII_MM * np.array([0.2, 0.32, 0.22]))) ** 2).sum(-1) < 1.0
    image[vent] = 60.0
    label = np.zeros(tuple(shape), np.uint8)
    for centre, radius in lesions:
        label[((world - np.asarray(centre)) ** 2).sum(-1) <= radius**2] = 1
    image[label > 0] = 380.0
    image = image + rng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(image, 0, None).astype(np.float32), label


def write_case(
    folder: Path,
    name: str,
    affine: np.ndarray,
    shape: Sequence[int],
    lesions: Sequence[Lesion],
    rng: np.random.Generator,
) -> tuple[Path, Path]:
    """Write ``folder/images/<name>_0000.nii.gz`` and ``folder/labels/<name>.nii.gz``."""
    image, label = render(affine, shape, lesions, rng)
    img_path = folder / "images" / f"{name}_0000.nii.gz"
    lab_path = folder / "labels" / f"{name}.nii.gz"
    img_path.parent.mkdir(parents=True, exist_ok=True)
    lab_path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), str(img_path))
    nib.save(nib.Nifti1Image(label, affine), str(lab_path))
    return img_path, lab_path


def write_run_folder(trained: Any, root: Path) -> Path:
    """``root/run``: a finished run folder (as RunFolder writes it) whose last checkpoint
    is ``trained``'s network (a :class:`fedshift.bundle.io.ModelBundle`)."""
    from fedshift.model.network import get_weights
    from fedshift.record import RunRecord
    from fedshift.runconfig import DataConfig, RunConfig
    from fedshift.runstate import RunFolder, RunState

    run = RunFolder(root / "run")
    # a synthetic federation at the model's spacing: the package reads voxel_mm from it
    data = DataConfig(synth_overrides=(f"voxel_mm={MODEL_SPACING:g}",))
    run.write_config(RunConfig(out=str(run.root), data=data, seg=trained.seg))
    sites = {"a": {"train_num-examples": 5.0, "val_dice": 0.9, "val_n_cases": 1.0}}
    record = RunRecord.from_json(
        {
            "rounds": [{"round": 1, "sites": sites}],
            "final": {"sites": {}, "target": {}, "target_threshold": trained.threshold},
        }
    )
    state = RunState(1, get_weights(trained.network), record)
    run.save_checkpoint(state)
    run.write_record(record)
    return run.root
