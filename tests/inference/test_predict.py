"""fedshift predict: masks on each scan's own grid, bad scans reported, nothing half-written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from inference_phantoms import (
    LESION_MM,
    MODEL_SPACING,
    draw_lesions,
    grid,
    render,
    rotation,
    write_case,
    write_run_folder,
)

from fedshift.bundle import load_bundle, site_bundle
from fedshift.bundle.io import ModelBundle
from fedshift.cli import main
from fedshift.errors import UsageError
from fedshift.inference.predict import ScanInput, find_inputs, predict_one
from fedshift.inference.segment import segment_scan
from fedshift.model.metrics import dice
from fedshift.shift.intensity import IntensityMap

LPS = np.diag([-1.0, -1.0, 1.0])
#: name -> (voxel sizes in mm, voxel axis directions)
SCANS = {
    "lps_model_spacing": ((MODEL_SPACING,) * 3, LPS),
    "lps_aniso": ((0.9, 0.9, 3.0), LPS),
    "oblique_aniso": ((0.9, 0.9, 3.0), LPS @ rotation(2, 25) @ rotation(0, 15)),
}


def _true_volume_ml(lesions) -> float:
    return sum(4 / 3 * np.pi * r**3 for _, r in lesions) / 1000


@pytest.mark.parametrize("name", list(SCANS))
def test_mask_is_on_the_scans_grid_and_scores_as_in_model_space(
    name: str, trained: ModelBundle, tmp_path: Path
) -> None:
    spacing, directions = SCANS[name]
    rng = np.random.default_rng((7, list(SCANS).index(name)))
    lesions = draw_lesions(rng, 5, LESION_MM)
    affine, shape = grid(spacing, directions=directions)
    image_path, label_path = write_case(tmp_path, name, affine, shape, lesions, rng)
    out = tmp_path / "out"
    out.mkdir()
    record, seg = predict_one(
        trained, trained.network, ScanInput(name, image_path), out, torch.device("cpu"), False
    )
    assert record["status"] == "ok" and seg is not None
    written = nib.load(out / f"{name}.nii.gz")
    label = nib.load(label_path)
    assert written.shape == label.shape == tuple(shape)
    np.testing.assert_allclose(written.affine, label.affine, atol=1e-5)
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(label.affine)
    mask = np.asarray(written.dataobj)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert np.array_equal(mask, seg.mask)

    dice_scan = dice(mask > 0, np.asarray(label.dataobj) > 0)
    _, truth_model = render(seg.model_affine, seg.model_mask.shape, lesions, rng)
    dice_model = dice(seg.model_mask > 0, truth_model > 0)
    assert dice_model > 0.8, f"the tiny model did not learn the task ({dice_model:.3f})"
    if spacing == (MODEL_SPACING,) * 3:
        assert seg.model_mask.shape == tuple(shape)  # no resampling at the model's spacing
        assert dice_scan == pytest.approx(dice_model, abs=1e-6)
    # the way back loses at most 0.02; it may gain: boundaries land between model voxels
    # where the probability crosses the threshold, finer than the model grid
    assert dice_model - 0.02 <= dice_scan <= dice_model + 0.05, (dice_scan, dice_model)

    # each true lesion is found where it is, in scanner millimetres
    centroids = np.array([lesion["centroid_mm"] for lesion in record["lesions"]])
    for centre, _radius in lesions:
        assert np.min(np.linalg.norm(centroids - np.asarray(centre), axis=1)) < 2.0
    assert record["volume_ml"] == pytest.approx(_true_volume_ml(lesions), rel=0.2)


def _good_scan(folder: Path, name: str, seed: int) -> Path:
    rng = np.random.default_rng((8, seed))
    affine, shape = grid((MODEL_SPACING,) * 3, directions=LPS)
    image_path, _ = write_case(
        folder / "work", name, affine, shape, draw_lesions(rng, 3, LESION_MM), rng
    )
    target = folder / "scans" / image_path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    image_path.rename(target)
    return target


def test_bad_scans_are_reported_the_good_ones_written(
    trained_package: Path, trained: ModelBundle, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good = _good_scan(tmp_path, "good", 0)
    scans = good.parent
    raw = good.read_bytes()
    (scans / "truncated_0000.nii.gz").write_bytes(raw[: len(raw) // 2])
    img = nib.load(good)
    data = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(np.stack([data, data], axis=-1), img.affine), scans / "fourd.nii.gz")
    nan = data.astype(np.float32)
    nan[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(nan, img.affine), scans / "nan.nii.gz")
    out = tmp_path / "out"

    code = main(["predict", str(trained_package), str(scans), "--out", str(out), "--probabilities"])
    assert code == 1
    printed = capsys.readouterr().out
    assert "truncated: FAILED (unreadable)" in printed and "fourd: FAILED (not_3d)" in printed

    summary = json.loads((out / "predict.json").read_text())
    status = {c["case"]: (c["status"], c.get("code")) for c in summary["cases"]}
    assert status == {
        "good": ("ok", None),
        "truncated": ("failed", "unreadable"),
        "fourd": ("failed", "not_3d"),
        "nan": ("failed", "non_finite"),
    }
    assert summary["n_failed"] == 3 and summary["model"]["threshold"] == trained.threshold
    good_case = next(c for c in summary["cases"] if c["case"] == "good")
    assert set(good_case["timings_s"]) >= {"read", "n4", "sliding_window", "write"}
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "good.nii.gz", "good_prob.nii.gz", "lesions.csv", "predict.json", "report.html"
    ]  # fmt: skip
    mask = np.asarray(nib.load(out / "good.nii.gz").dataobj)
    prob = np.asarray(nib.load(out / "good_prob.nii.gz").dataobj)
    assert prob.dtype == np.float32 and prob.min() >= 0 and prob.max() <= 1
    assert np.array_equal(mask, (prob >= trained.threshold).astype(np.uint8))  # same grid

    rows = list(csv.DictReader((out / "lesions.csv").open()))
    assert {r["case"] for r in rows} == {"good"}
    total = [r for r in rows if r["lesion"] == "total"]
    assert len(total) == 1 and int(total[0]["n_lesions"]) == len(rows) - 1
    assert float(total[0]["volume_ml"]) == pytest.approx(
        sum(float(r["volume_ml"]) for r in rows if r["lesion"] != "total"), abs=1e-3
    )
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "non_finite" in html


def test_inputs_from_files_folders_and_nnunet_layout(tmp_path: Path) -> None:
    site = tmp_path / "site"
    for name in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii"):
        (site / "imagesTs").mkdir(parents=True, exist_ok=True)
        (site / "imagesTs" / name).write_bytes(b"x")
    (tmp_path / "scan.nii.gz").write_bytes(b"x")
    found = find_inputs([site, tmp_path / "scan.nii.gz"])
    assert [(s.case, s.path.name) for s in found] == [
        ("a", "a_0000.nii.gz"), ("b", "b_0000.nii"), ("scan", "scan.nii.gz")
    ]  # fmt: skip
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.nii.gz").write_bytes(b"x")
    with pytest.raises(UsageError, match="both be written as a.nii.gz"):
        find_inputs([site, tmp_path / "other"])
    with pytest.raises(UsageError, match="does not exist"):
        find_inputs([tmp_path / "missing"])
    with pytest.raises(UsageError, match="no .nii"):
        find_inputs([_empty(tmp_path)])


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_output_may_not_overwrite_an_input(trained_package: Path, tmp_path: Path) -> None:
    scan = _good_scan(tmp_path, "scan", 1)
    plain = scan.with_name("scan.nii.gz")
    scan.rename(plain)
    code = main(["predict", str(trained_package), str(plain), "--out", str(plain.parent)])
    assert code == 2 and plain.is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_usage_error(
    trained_package: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    scan = _good_scan(tmp_path, "scan", 2)
    code = main(
        [
            "predict",
            str(trained_package),
            str(scan),
            "--out",
            str(tmp_path / "o"),
            "--device",
            "cuda",
        ]
    )
    assert code == 2 and "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_finished_run_folder_is_a_model_too(
    trained: ModelBundle, trained_package: Path, tmp_path: Path
) -> None:
    run = write_run_folder(trained, tmp_path)
    scan = _good_scan(tmp_path, "scan", 3)
    assert main(["predict", str(run), str(scan), "--out", str(tmp_path / "a"), "--no-report"]) == 0
    assert main(["predict", str(trained_package), str(scan), "--out", str(tmp_path / "b")]) == 0
    a, b = (np.asarray(nib.load(tmp_path / x / "scan.nii.gz").dataobj) for x in "ab")
    assert np.array_equal(a, b) and a.any()
    summary = json.loads((tmp_path / "a" / "predict.json").read_text())
    assert summary["model"]["package"] == str(run.resolve())
    assert not (tmp_path / "a" / "report.html").exists()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml", "metrics.json"]


def test_a_site_package_applies_its_intensity_map(trained_package: Path, tmp_path: Path) -> None:
    scan = _good_scan(tmp_path, "scan", 4)
    cpu = torch.device("cpu")
    plain = load_bundle(trained_package)
    same = IntensityMap(x=np.array([-10.0, 10.0]), y=np.array([-10.0, 10.0]))
    flat = IntensityMap(x=np.array([-10.0, 10.0]), y=np.array([0.0, 0.0]))
    masks = {}
    for name, mapping in (("none", None), ("identity", same), ("flat", flat)):
        bundle = (
            plain
            if mapping is None
            else load_bundle(site_bundle(trained_package, tmp_path / name, mapping, site=name))
        )
        masks[name] = segment_scan(bundle, bundle.network, scan, cpu).mask
    assert masks["none"].any() and np.array_equal(masks["none"], masks["identity"])
    assert not masks["flat"].any()  # a brain mapped to one intensity shows no lesion
