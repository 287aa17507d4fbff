"""Adaptation sees exactly the arrays fedshift predict feeds the network; patches lie in
the brain and are padded where they leave the image."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from adapt_phantoms import phantom

from fedshift.adapt.data import Patches, crop, load_site_images, model_input, site_scans
from fedshift.bundle import load_bundle
from fedshift.errors import UsageError
from fedshift.inference.segment import segment_scan
from fedshift.model.evaluate import predict_proba

CPU = torch.device("cpu")


@pytest.mark.parametrize("zoom", [1.0, 1.25])
def test_the_arrays_are_those_predict_segments(federation, tmp_path: Path, zoom: float) -> None:
    """At the package's spacing (used as read) and at another one (resampled)."""
    bundle = load_bundle(federation["with_reference"])
    image, _, affine = phantom(np.random.default_rng(11), gamma=1.3)
    scan = tmp_path / "scan.nii.gz"
    scaled = affine.copy()
    scaled[:3, :3] *= zoom
    nib.save(nib.Nifti1Image(image, scaled), str(scan))
    seen = model_input(bundle, scan, "scan")
    seg = segment_scan(bundle, bundle.network, scan, CPU)
    assert seen.image.shape == seg.model_shape and seen.brain.any()
    prob = predict_proba(bundle.network, torch.from_numpy(seen.image[None]), bundle.seg, CPU)
    assert np.array_equal((prob.numpy() >= bundle.threshold).astype(np.uint8), seg.model_mask)
    assert seen.voxel_ml == pytest.approx(np.prod(bundle.spacing) / 1000)


def test_a_bad_scan_is_skipped_and_none_left_refused(federation, tmp_path: Path) -> None:
    bundle = load_bundle(federation["with_reference"])
    bad = tmp_path / "bad_0000.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(bad))
    good = site_scans(federation["site"], "train")[:1]
    images, skipped = load_site_images(bundle, [*good, ("bad", bad)], 0, np.random.default_rng(0))
    assert [im.case for im in images] == [good[0][0]] and skipped == 1
    with pytest.raises(UsageError, match="none of the 1 scans passed its checks"):
        load_site_images(bundle, [("bad", bad)], 0, np.random.default_rng(0))


def test_a_split_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(UsageError, match="has no test image"):
        site_scans(tmp_path, "test")


def test_crop_pads_where_the_window_leaves_the_array() -> None:
    array = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    out = crop(array, (-1, 1, 2), (3, 3, 3), fill=-5)
    assert out.shape == (3, 3, 3)
    assert np.all(out[0] == -5) and np.all(out[:, 2] == -5) and np.all(out[:, :, 1:] == -5)
    assert out[1, 0, 0] == array[0, 1, 2] and out[2, 1, 0] == array[1, 2, 2]


def test_patches_are_centred_in_the_brain(federation) -> None:
    bundle = load_bundle(federation["with_reference"])
    images, _ = load_site_images(
        bundle, site_scans(federation["site"], "train")[:2], 0, np.random.default_rng(0)
    )
    patches = Patches(images, (16, 16, 16))
    windows = patches.draw(np.random.default_rng(1), 8)
    image, brain = patches.batch(windows, CPU)
    assert image.shape == brain.shape == (8, 1, 16, 16, 16)
    assert bool((brain.reshape(8, -1).amax(dim=1) > 0).all())  # every patch holds brain
    assert {w.index for w in windows} == {0, 1}
