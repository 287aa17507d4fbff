"""Rater calibration: a site's labels of shared cases against the reference standard."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from mri_fixtures import make_site

from fedshift.data.layout import discover_site, scan_calibration
from fedshift.data.synth.annotation import rater_style
from fedshift.data.synth.config import SiteSpec
from fedshift.errors import DataError
from fedshift.model.config import SegConfig
from fedshift.shift.descriptors import FAMILIES
from fedshift.site.calibration import measure_calibration
from fedshift.site.worker import SiteWorker

SCALES = dict(FAMILIES["annotation"])
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])  # 2 mm voxels: 8 mm^3 each


def _reference(rng: np.random.Generator, shape=(32, 32, 32)) -> np.ndarray:
    """Eight ball lesions, radius 1-3.5 voxels, apart from each other."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    truth = np.zeros(shape, dtype=np.uint8)
    centres = [(x, y, z) for x in (8, 23) for y in (8, 23) for z in (8, 23)]
    for centre, radius in zip(centres, rng.uniform(1.0, 3.5, size=8), strict=True):
        truth[np.linalg.norm(grid - np.array(centre), axis=-1) <= radius] = 1
    return truth


def _site(tmp_path: Path, rater, n_cases: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root = tmp_path / "site"
    for sub in ("reference", "labels"):
        (root / "calibration" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        truth = _reference(rng)
        for sub, mask in (("reference", truth), ("labels", rater(truth, rng))):
            nib.save(nib.Nifti1Image(mask, AFFINE), root / "calibration" / sub / f"cal{i}.nii.gz")
    return root


def _protocol(**knobs):
    return lambda truth, rng: rater_style(truth, SiteSpec(**knobs), 8.0)


def test_faithful_rater_matches_the_reference(tmp_path: Path) -> None:
    cal = measure_calibration(_site(tmp_path, _protocol()))
    assert cal is not None and cal.cases == 3
    assert cal.volume == 0.0 and cal.count == 0.0 and cal.dice == pytest.approx(1.0)


def test_dilating_rater_draws_larger_lesions(tmp_path: Path) -> None:
    cal = measure_calibration(_site(tmp_path, _protocol(rater_dilation=1)))
    assert cal.volume / SCALES["volume_agreement"] > 1.0
    assert abs(cal.count) / SCALES["count_agreement"] < 1.0
    assert cal.dice < 0.8


def test_rater_who_misses_small_lesions_annotates_fewer(tmp_path: Path) -> None:
    # balls of radius < ~2.2 voxels hold < 50 voxels = 400 mm^3
    cal = measure_calibration(_site(tmp_path, _protocol(missed_below_mm3=400.0)))
    assert cal.count / SCALES["count_agreement"] < -1.0


def test_a_rater_who_misses_the_smallest_lesion_of_each_case_stays_within_a_scale(
    tmp_path: Path,
) -> None:
    """Ordinary rater variability (one small lesion in eight overlooked) is not an
    annotation shift. (Missing a random one of the eight, large ones included, took the
    volume to -1.0 scale in this geometry: the volume bound is tight for that.)"""

    def sloppy(truth, rng):
        from scipy import ndimage

        components, n = ndimage.label(truth)
        sizes = np.bincount(components.ravel())[1:]
        return (truth * (components != 1 + int(np.argmin(sizes)))).astype(np.uint8)

    cal = measure_calibration(_site(tmp_path, sloppy, n_cases=4))
    assert -1.0 < cal.count / SCALES["count_agreement"] < 0
    assert -1.0 < cal.volume / SCALES["volume_agreement"] < 0


def test_no_calibration_folder_is_none(tmp_path: Path) -> None:
    assert measure_calibration(tmp_path) is None
    assert scan_calibration(tmp_path) == ([], [])


def test_a_label_without_its_reference_is_refused(tmp_path: Path) -> None:
    root = _site(tmp_path, _protocol())
    (root / "calibration" / "reference" / "cal1.nii.gz").unlink()
    with pytest.raises(DataError, match="'cal1' has no reference standard") as err:
        measure_calibration(root)
    assert err.value.file == "calibration/labels/cal1.nii.gz"
    (root / "imagesTr").mkdir()
    (finding,) = [p for p in discover_site(root).problems if p.code == "calibration"]
    assert finding.severity == "warning" and finding.file == "calibration/labels/cal1.nii.gz"


def test_a_label_on_another_grid_is_refused(tmp_path: Path) -> None:
    root = _site(tmp_path, _protocol())
    path = root / "calibration" / "labels" / "cal0.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.uint8), AFFINE), path)
    with pytest.raises(DataError, match="'cal0' is on another grid"):
        measure_calibration(root)


def test_site_worker_reports_its_calibration_and_logs_a_broken_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = make_site(tmp_path, n_cases=2, shape=(16, 16, 16), labelled=True, seed=0, name="s")
    worker = SiteWorker(data, tmp_path / "work", SegConfig())
    assert worker.calibration() is None
    cal_root = _site(tmp_path, _protocol(rater_dilation=1))
    (cal_root / "calibration").rename(data / "calibration")
    assert worker.calibration().volume > 0
    (data / "calibration" / "reference" / "cal2.nii.gz").unlink()
    with caplog.at_level(logging.WARNING):
        assert worker.calibration() is None
    assert "calibration cases not used" in caplog.text and "cal2" in caplog.text
