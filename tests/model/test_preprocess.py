"""Preprocessing: z-score inside the mask, N4 against a planted bias, the per-site cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedshift.data.masks import head_mask
from fedshift.errors import ConfigError
from fedshift.model.config import PreprocessConfig
from fedshift.model.preprocess import (
    MASK_KEY,
    PreprocessCache,
    PreprocessVolumed,
    n4_correct,
    preprocess_array,
    zscore,
)


def test_zscore_inside_mask() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(300.0, 40.0, (16, 16, 16)).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[3:13, 3:13, 3:13] = True
    out = zscore(image, mask, clip=0.0, zero_background=True)
    assert abs(out[mask].mean()) < 1e-4
    assert out[mask].std() == pytest.approx(1.0, abs=1e-4)
    assert np.all(out[~mask] == 0)
    clipped = zscore(image, mask, clip=1.0, zero_background=False)
    assert clipped.max() <= 1.0 and clipped.min() >= -1.0 and np.any(clipped[~mask] != 0)


def _brain_cv(image: np.ndarray, brain: np.ndarray) -> float:
    values = image[brain]
    return float(values.std() / values.mean())


def test_n4_reduces_a_planted_smooth_bias(make_phantom: Callable, make_bias: Callable) -> None:
    shape = (32, 32, 32)
    clean, _ = make_phantom(shape, np.random.default_rng(1), n_lesions=0)
    biased = clean * make_bias(shape, 0.5)
    brain = (clean > 150) & (clean < 260)  # brain tissue of the phantom (no lesions)
    cfg = PreprocessConfig(n4_shrink=2)
    corrected = n4_correct(biased, head_mask(biased), (3.0, 3.0, 3.0), cfg)
    before, after = _brain_cv(biased, brain), _brain_cv(corrected, brain)
    assert after < 0.6 * before, (before, after)


def test_preprocess_array_zscores_in_brain_and_zeroes_outside(make_phantom: Callable) -> None:
    image, _ = make_phantom((24, 24, 24), np.random.default_rng(2), bias=0.3)
    out, mask = preprocess_array(image, (3.0, 3.0, 3.0), PreprocessConfig(clip=0.0))
    assert out.dtype == np.float32 and mask.dtype == bool and mask.shape == image.shape
    assert 0.1 < mask.mean() < 0.7
    assert abs(out[mask].mean()) < 1e-3 and out[mask].std() == pytest.approx(1.0, abs=1e-3)
    assert np.all(out[~mask] == 0)
    raw, _ = preprocess_array(image, (3.0, 3.0, 3.0), PreprocessConfig(n4=False, zscore=False))
    assert np.array_equal(raw, image)


def test_cache_hit_on_second_call_and_site_untouched(tmp_path: Path, make_site: Callable) -> None:
    site = make_site(tmp_path / "S", n_cases=1, shape=(16, 16, 16))
    before = sorted(p.relative_to(site) for p in site.rglob("*"))
    image_path = str(site / "imagesTr" / "case000_0000.nii.gz")
    cfg = PreprocessConfig(n4_iterations=(10,))
    first = PreprocessCache(tmp_path / "cache", cfg)
    a = first.get(image_path)
    assert (first.hits, first.misses) == (0, 1)
    second = PreprocessCache(tmp_path / "cache", cfg)  # a new run
    b = second.get(image_path)
    assert (second.hits, second.misses) == (1, 0)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert np.allclose(a.affine, b.affine) and a.zooms == b.zooms
    other = PreprocessCache(tmp_path / "cache", replace(cfg, zscore=False))
    assert other.key(image_path) != first.key(image_path)
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1


def test_transform_gives_channel_first_image_and_mask(tmp_path: Path, make_site: Callable) -> None:
    site = make_site(tmp_path / "S", n_cases=1, shape=(16, 16, 16))
    cache = PreprocessCache(tmp_path / "cache", PreprocessConfig(n4=False))
    item = {"case": "case000", "image": str(site / "imagesTr" / "case000_0000.nii.gz")}
    out = PreprocessVolumed("image", cache)(item)
    assert out["image"].shape == (1, 16, 16, 16) and out[MASK_KEY].shape == (1, 16, 16, 16)
    assert tuple(out["image"].pixdim.tolist()) == (3.0, 3.0, 3.0)
    assert set(np.unique(out[MASK_KEY].numpy())) <= {0.0, 1.0}


def test_bad_preprocess_config_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="preprocess.n4_shrink"):
        PreprocessCache(tmp_path, PreprocessConfig(n4_shrink=0))
