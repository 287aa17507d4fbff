"""fedshift evaluate: predict + training's metric code on a site's labelled cases."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from inference_phantoms import LESION_MM, MODEL_SPACING, draw_lesions, grid, rotation, write_case

from fedshift.bundle.io import ModelBundle
from fedshift.cli import main
from fedshift.data.layout import discover_site, site_items
from fedshift.errors import UsageError
from fedshift.inference.evaluate import evaluate_site, hd95
from fedshift.model.evaluate import evaluate_items
from fedshift.model.preprocess import PreprocessCache

LPS = np.diag([-1.0, -1.0, 1.0])


def _site(root: Path, bad_label: bool = False) -> Path:
    """imagesTs/labelsTs: two cases at the model's spacing, one oblique 0.9 x 0.9 x 3 mm."""
    site = root / "site"
    grids = {
        "m0": grid((MODEL_SPACING,) * 3),
        "m1": grid((MODEL_SPACING,) * 3, directions=LPS),
        "obl": grid((0.9, 0.9, 3.0), directions=LPS @ rotation(2, 20)),
    }
    for i, (case, (affine, shape)) in enumerate(grids.items()):
        rng = np.random.default_rng((5, i))
        image, label = write_case(
            root / "tmp", case, affine, shape, draw_lesions(rng, 4, LESION_MM), rng
        )
        for src, dst in ((image, "imagesTs"), (label, "labelsTs")):
            (site / dst).mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), site / dst / src.name)
    (site / "imagesTr").mkdir()
    meta = {"channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "lesion": 1}}
    (site / "dataset.json").write_text(json.dumps(meta))
    if bad_label:
        affine, _ = grids["m0"]
        nib.save(
            nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), affine), site / "labelsTs" / "m0.nii.gz"
        )
    return site


def test_evaluate_scores_like_training_at_the_models_spacing(
    trained: ModelBundle, tmp_path: Path
) -> None:
    site = _site(tmp_path)
    result = evaluate_site(trained, site, "test", device="cpu")
    cases = {c["case"]: c for c in result["cases"]}
    assert set(cases) == {"m0", "m1", "obl"} and all(c["status"] == "ok" for c in cases.values())
    summary = result["summary"]
    for key in ("dice", "lesion_precision", "lesion_recall", "lesion_f1", "avd", "hd95"):
        assert math.isfinite(summary[key])
    assert summary["dice"] == pytest.approx(np.mean([c["dice"] for c in cases.values()]))
    assert summary["n_cases"] == 3 and summary["n_failed"] == 0
    assert all(c["dice"] > 0.8 and c["lesion_recall"] == 1.0 for c in cases.values())

    # at the package's spacing, evaluate is training's evaluation (same metric code, same
    # preprocessing, no resampling): the numbers agree exactly
    items = [i for i in site_items(discover_site(site), "test") if i["case"] in ("m0", "m1")]
    cache = PreprocessCache(tmp_path / "cache", trained.seg.preprocess)
    device = torch.device("cpu")
    training = evaluate_items(trained.network, items, cache, trained.seg, device, trained.threshold)
    for case, metrics in training.per_case.items():
        for key, value in metrics.items():
            assert cases[case][key] == pytest.approx(value, abs=1e-6, nan_ok=True), (case, key)


def test_a_bad_label_fails_its_case_only(trained_package: Path, tmp_path: Path, capsys) -> None:
    site = _site(tmp_path, bad_label=True)
    out = tmp_path / "res" / "eval.json"
    code = main(["evaluate", str(trained_package), str(site), "--out", str(out), "--device", "cpu"])
    assert code == 1
    printed = capsys.readouterr().out
    assert "failed (shape_mismatch)" in printed and "mean" in printed and "MSSEG-2016" in printed
    result = json.loads(out.read_text())
    assert {c["case"]: c["status"] for c in result["cases"]} == {
        "m0": "failed",
        "m1": "ok",
        "obl": "ok",
    }
    assert result["summary"]["n_cases"] == 2 and result["split"] == "test"


def test_a_split_without_labels_is_a_usage_error(trained: ModelBundle, tmp_path: Path) -> None:
    site = _site(tmp_path)
    with pytest.raises(UsageError, match="no labelled train case"):
        evaluate_site(trained, site, "train", device="cpu")


def test_hd95_in_millimetres() -> None:
    a = np.zeros((20, 20, 20), bool)
    a[5:10, 5:10, 5:10] = True
    assert hd95(a, a, (1.0, 1.0, 1.0)) == 0.0
    b = np.roll(a, 3, axis=0)
    assert hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(3.0)
    assert hd95(a, b, (2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert math.isnan(hd95(a, np.zeros_like(a), (1.0, 1.0, 1.0)))
