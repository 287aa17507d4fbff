"""Helpers of tests/adapt (import them from here, never from ``conftest``): phantom sites
in nnU-Net layout on 32^3 grids at 2 mm, built from tests/inference's head phantoms, and
the tiny packages the adaptation tests start from.

The "federation" trains on plain phantoms; the site to adapt sees the same anatomy
through another scanner: a gamma contrast curve and more noise, which z-scoring alone
does not undo.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from inference_phantoms import draw_lesions, grid, render, tiny_seg

from fedshift.bundle import write_bundle
from fedshift.model.config import ModelConfig, SegConfig
from fedshift.model.preprocess import PreprocessCache
from fedshift.model.trainer import SiteTrainer
from fedshift.shift.reference import Reference, build_reference
from fedshift.site.stats import site_statistics

SPACING = 2.0
FOV_MM = 64.0  # 32 voxels per axis
LESION_MM = (5.0, 7.0)


def seg_config(norm: str = "instance") -> SegConfig:
    """tests/inference's tiny network (2 levels, 16^3 patches), with ``norm`` layers."""
    seg = tiny_seg()
    model = ModelConfig(**{**seg.model.__dict__, "norm": norm})
    return replace(seg, model=model)


def phantom(rng: np.random.Generator, gamma: float = 1.0, noise: float = 6.0):
    """(image, label, affine) of one head phantom at 2 mm; ``gamma`` bends the contrast
    curve (a scanner the federation did not see)."""
    affine, shape = grid((SPACING,) * 3, fov_mm=FOV_MM)
    image, label = render(affine, shape, draw_lesions(rng, 3, LESION_MM), rng, noise=noise)
    if gamma != 1.0:
        image = (400.0 * (image / 400.0) ** gamma).astype(np.float32)
    return image, label, affine


def write_site(
    root: Path, n_train: int, n_test: int, seed: int, gamma: float = 1.0, labelled: bool = True
) -> Path:
    """A site folder: imagesTr (+ labelsTr when ``labelled``), imagesTs + labelsTs."""
    rng = np.random.default_rng(seed)
    for split, n in (("Tr", n_train), ("Ts", n_test)):
        for i in range(n):
            image, label, affine = phantom(rng, gamma, noise=6.0 if gamma == 1.0 else 12.0)
            case = f"{root.name}_{split.lower()}{i:02d}"
            (root / f"images{split}").mkdir(parents=True, exist_ok=True)
            nib.save(
                nib.Nifti1Image(image, affine), str(root / f"images{split}" / f"{case}_0000.nii.gz")
            )
            if labelled or split == "Ts":
                (root / f"labels{split}").mkdir(parents=True, exist_ok=True)
                nib.save(
                    nib.Nifti1Image(label, affine), str(root / f"labels{split}" / f"{case}.nii.gz")
                )
    return root


def train(
    seg: SegConfig, site: Path, cache: Path, steps: int
) -> tuple[SiteTrainer, list[dict[str, Any]]]:
    """A trainer after ``steps`` steps on the site's training cases (threshold tuned on
    its test cases), one thread, seeded."""
    from fedshift.data.layout import discover_site, site_items

    layout = discover_site(site)
    items, val = site_items(layout, "train"), site_items(layout, "test")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = SiteTrainer(seg, items, val, cache, device="cpu")
        for index in range(steps // 10):
            trainer.train(10, round_index=index)
        trainer.tune_threshold()
    finally:
        torch.set_num_threads(threads)
    return trainer, items


def reference_of(trainer: SiteTrainer, items: list[dict[str, Any]], cache: Path) -> Reference:
    """The reference a federation of this one site would build under the trainer's model
    (the site's statistics as the secure sum)."""
    local = site_statistics(
        trainer.model,
        items,
        PreprocessCache(cache, trainer.cfg.preprocess),
        trainer.cfg,
        torch.device("cpu"),
        samples_per_class=64,
        seed=0,
        threshold=trainer.threshold,
    )
    return build_reference(local.stats)


def package(trainer: SiteTrainer, out: Path, reference: Reference | None) -> Path:
    """The trainer's model as a package (with the federation's reference when given)."""
    return write_bundle(
        out,
        weights=trainer.get_weights(),
        seg_cfg=trainer.cfg,
        threshold=trainer.threshold,
        sites={"federation": 4},
        val_dice=None,
        run_config_hash="test",
        spacing=(SPACING,) * 3,
        reference=reference,
    )
