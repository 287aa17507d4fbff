"""The data part of local training: items -> MONAI transforms, datasets and loaders.

Items are the dicts of :func:`fedshift.data.layout.site_items` (``{"case", "split",
"image", "label"?}``). Training and evaluation share the deterministic head of the chain
(cached preprocessing, label loading); training adds lesion/background-balanced patch
sampling, intensity augmentation and flips. All randomness is reseeded from one integer
per round (:func:`derive_seed`), so the same calls give the same patches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandBiasFieldd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    SpatialPadd,
)
from torch.utils.data import RandomSampler

from fedshift.data.transforms import LoadVolumed
from fedshift.errors import UsageError
from fedshift.model.config import AugmentConfig, SegConfig, TrainConfig
from fedshift.model.preprocess import MASK_KEY, PreprocessCache, PreprocessVolumed

IMAGE_KEY = "image"
LABEL_KEY = "label"
SPATIAL_KEYS = (IMAGE_KEY, LABEL_KEY, MASK_KEY)


def derive_seed(seed: int, *keys: int) -> int:
    """A 31-bit seed for one use (e.g. ``(cfg.seed, round)``), independent across keys."""
    state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(1)
    return int(state[0]) & 0x7FFFFFFF


def split_train_val(
    items: Sequence[dict[str, Any]], val_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out ``round(n * val_fraction)`` cases (at least 1 when 0 < fraction and n >= 2),
    chosen by a seeded permutation of the case ids. Returns (train, val), each by case id."""
    ordered = sorted(items, key=lambda item: str(item["case"]))
    n = len(ordered)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx = set(perm[:n_val].tolist())
    train = [item for i, item in enumerate(ordered) if i not in val_idx]
    val = [item for i, item in enumerate(ordered) if i in val_idx]
    return train, val


def load_transforms(cache: PreprocessCache, pad_to: Sequence[int] | None = None) -> list[Any]:
    """Deterministic head: preprocessed image + mask from the cache, label from its file,
    all (1, X, Y, Z); zero-padded to at least ``pad_to`` voxels when given."""
    chain: list[Any] = [
        PreprocessVolumed(IMAGE_KEY, cache, mask_key=MASK_KEY),
        LoadVolumed(LABEL_KEY, allow_missing_keys=True),
    ]
    if pad_to is not None:
        chain.append(SpatialPadd(SPATIAL_KEYS, spatial_size=tuple(pad_to), allow_missing_keys=True))
    return chain


def sampling_transforms(cfg: TrainConfig) -> list[Any]:
    """One patch per case, centred on a lesion voxel with probability
    ``pos / (pos + neg)``, otherwise on a lesion-free voxel inside the mask."""
    return [
        RandCropByPosNegLabeld(
            keys=SPATIAL_KEYS,
            label_key=LABEL_KEY,
            spatial_size=tuple(cfg.patch_size),
            pos=cfg.pos_ratio,
            neg=cfg.neg_ratio,
            num_samples=1,
            image_key=MASK_KEY,
            image_threshold=0.5,
        )
    ]


def augment_transforms(cfg: AugmentConfig) -> list[Any]:
    """Intensity augmentation of the image (MONAI) and flips of image, label and mask.
    Augmentations with probability 0 are left out."""
    chain: list[Any] = []
    if cfg.bias_field_prob > 0:
        chain.append(
            RandBiasFieldd(
                IMAGE_KEY, coeff_range=tuple(cfg.bias_field_coeff), prob=cfg.bias_field_prob
            )
        )
    if cfg.contrast_prob > 0:
        chain.append(
            RandAdjustContrastd(IMAGE_KEY, gamma=tuple(cfg.contrast_gamma), prob=cfg.contrast_prob)
        )
    if cfg.noise_prob > 0:
        chain.append(RandGaussianNoised(IMAGE_KEY, std=cfg.noise_std, prob=cfg.noise_prob))
    if cfg.smooth_prob > 0:
        sigma = tuple(cfg.smooth_sigma)
        chain.append(
            RandGaussianSmoothd(
                IMAGE_KEY, sigma_x=sigma, sigma_y=sigma, sigma_z=sigma, prob=cfg.smooth_prob
            )
        )
    if cfg.flip_prob > 0:
        chain.extend(
            RandFlipd(SPATIAL_KEYS, prob=cfg.flip_prob, spatial_axis=axis) for axis in cfg.flip_axes
        )
    return chain


def train_transform(cfg: SegConfig, cache: PreprocessCache) -> Compose:
    """Load (cached) -> pad to the patch size -> balanced patch -> augmentation."""
    return Compose(
        load_transforms(cache, pad_to=cfg.train.patch_size)
        + sampling_transforms(cfg.train)
        + augment_transforms(cfg.augment)
    )


def eval_transform(cache: PreprocessCache) -> Compose:
    """Load (cached) whole volumes: image, mask and, when present, label (1, X, Y, Z)."""
    return Compose(load_transforms(cache))


def train_dataset(
    items: Sequence[dict[str, Any]], cfg: SegConfig, cache: PreprocessCache
) -> CacheDataset:
    """Labelled cases with their deterministic head cached in memory.

    Raises
    ------
    UsageError
        no item has a label.
    """
    labelled = [dict(item) for item in items if LABEL_KEY in item]
    if not labelled:
        raise UsageError(
            "local training needs labelled cases, but none of the training items has a label"
        )
    return CacheDataset(
        labelled, transform=train_transform(cfg, cache), num_workers=0, progress=False
    )


def unlabelled_dataset(
    items: Sequence[dict[str, Any]], cfg: SegConfig, cache: PreprocessCache
) -> CacheDataset:
    """Cases without labels (a target site adapting): one patch per case centred on a
    brain voxel, the same intensity augmentation; no label key."""
    chain = load_transforms(cache, pad_to=cfg.train.patch_size) + [
        RandCropByPosNegLabeld(
            keys=[IMAGE_KEY, MASK_KEY],
            label_key=MASK_KEY,
            spatial_size=tuple(cfg.train.patch_size),
            pos=1.0,
            neg=0.0,
            num_samples=1,
        )
    ]
    augment = [t for t in augment_transforms(cfg.augment) if not isinstance(t, RandFlipd)]
    if cfg.augment.flip_prob > 0:
        augment += [
            RandFlipd([IMAGE_KEY, MASK_KEY], prob=cfg.augment.flip_prob, spatial_axis=axis)
            for axis in cfg.augment.flip_axes
        ]
    items = [{k: v for k, v in item.items() if k != LABEL_KEY} for item in items]
    if not items:
        raise UsageError("adaptation needs at least one usable image, got none")
    return CacheDataset(items, transform=Compose(chain + augment), num_workers=0, progress=False)


def eval_dataset(items: Sequence[dict[str, Any]], cache: PreprocessCache) -> Dataset:
    """Whole volumes for inference (preprocessing comes from the on-disk cache)."""
    return Dataset([dict(item) for item in items], transform=eval_transform(cache))


def train_loader(
    dataset: Dataset, cfg: TrainConfig, num_steps: int, seed: int, pin_memory: bool = False
) -> DataLoader:
    """Exactly ``num_steps`` batches of ``batch_size`` patches, cases drawn with replacement.

    The sampler and every random transform are reseeded from ``seed`` (the loader's
    generator seeds the transforms, in the main process or in each worker).
    """
    sampler = RandomSampler(
        dataset,
        replacement=True,
        num_samples=num_steps * cfg.batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.num_workers,
        generator=torch.Generator().manual_seed(derive_seed(seed, 1)),
        pin_memory=pin_memory,
        drop_last=True,
    )
