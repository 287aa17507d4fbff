"""fedshift.data.layout: nnU-Net v2 raw layout discovery and the MONAI dataset on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mri_fixtures import make_site, write_nifti

from fedshift.data.layout import discover_site, site_dataset, site_items
from fedshift.errors import UsageError


def _codes(layout: object) -> list[str]:
    return [p.code for p in layout.problems]  # type: ignore[attr-defined]


def test_discovers_cases_of_both_splits_and_raters(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=3, n_test=2, test_labels=True, raters=2)
    layout = discover_site(root)
    assert layout.structured and layout.has_train_labels
    assert [c.case_id for c in layout.split("train")] == ["case_000", "case_001", "case_002"]
    assert [c.case_id for c in layout.split("test")] == ["test_000", "test_001"]
    assert all(c.label is not None for c in layout.cases)
    assert sorted(layout.split("train")[0].raters) == ["rater0", "rater1"]
    assert layout.split("test")[0].raters == {}
    assert layout.problems == ()
    assert layout.modality == "FLAIR"
    assert layout.name == "site"


def test_paths_are_absolute_and_relative_names_are_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_site(tmp_path, n_cases=1)
    monkeypatch.chdir(tmp_path)
    layout = discover_site("site")  # a relative folder
    case = layout.cases[0]
    assert case.image.is_absolute()
    assert layout.rel(case.image) == "imagesTr/case_000_0000.nii.gz"


def test_missing_label_and_missing_image(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=3)
    (root / "labelsTr" / "case_001.nii.gz").unlink()
    (root / "imagesTr" / "case_002_0000.nii.gz").unlink()
    layout = discover_site(root)
    by_code = {p.code: p for p in layout.problems}
    assert by_code["missing_label"].file == "imagesTr/case_001_0000.nii.gz"
    assert by_code["missing_image"].file == "labelsTr/case_002.nii.gz"
    assert [c.case_id for c in layout.cases] == ["case_000", "case_001"]


def test_unstructured_folder(tmp_path: Path) -> None:
    root = tmp_path / "loose"
    write_nifti(root / "scan.nii.gz", np.ones((4, 4, 4)))
    layout = discover_site(root)
    assert not layout.structured
    assert _codes(layout).count("unstructured") == 2  # no dataset.json, no imagesTr/
    assert layout.cases == ()


def test_image_without_channel_suffix_is_unstructured(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=1)
    write_nifti(root / "imagesTr" / "oddname.nii.gz", np.ones((4, 4, 4)))
    (root / "imagesTr" / "notes.txt").write_text("hello")
    codes = _codes(discover_site(root))
    assert "unstructured" in codes and "unexpected_file" in codes


def test_bad_dataset_json(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=1)
    (root / "dataset.json").write_text("{not json")
    assert "unstructured" in _codes(discover_site(root))
    (root / "dataset.json").write_text(json.dumps({"labels": {}}))
    assert any("channel_names" in p.message for p in discover_site(root).problems)


def test_modality_comes_from_channel_names(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=1, contrast="T1")
    assert discover_site(root).modality == "T1"


def test_unlabelled_site(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=2, labelled=False, n_test=1, test_labels=True)
    layout = discover_site(root)
    assert not layout.has_train_labels
    assert "missing_label" not in _codes(layout)
    assert layout.split("test")[0].label is not None


def test_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        discover_site(tmp_path / "nowhere")


def test_site_items_exclude_and_labelled_only(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=3)
    (root / "labelsTr" / "case_001.nii.gz").unlink()
    layout = discover_site(root)
    items = site_items(layout, "train", labelled_only=True, exclude={"case_002"})
    assert [i["case"] for i in items] == ["case_000"]
    assert set(items[0]) == {"case", "split", "image", "label"}


def test_site_dataset_loads_metatensors(tmp_path: Path) -> None:
    import nibabel as nib
    from monai.data import MetaTensor

    from fedshift.data.transforms import LoadVolumed

    root = make_site(tmp_path, n_cases=2, shape=(16, 18, 20))
    # store one case LPS: the loader must give it back in RAS like the others
    image_path = root / "imagesTr" / "case_001_0000.nii.gz"
    original = nib.load(image_path)
    ras, ras_affine = np.asarray(original.dataobj).copy(), original.affine.copy()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = [15, 17, 0]
    write_nifti(image_path, ras[::-1, ::-1], affine)
    dataset = site_dataset(discover_site(root), "train", LoadVolumed(["image", "label"]))
    assert len(dataset) == 2
    item = dataset[1]
    assert isinstance(item["image"], MetaTensor) and isinstance(item["label"], MetaTensor)
    assert tuple(item["image"].shape) == (1, 16, 18, 20)
    assert item["image"].dtype.is_floating_point
    np.testing.assert_array_equal(item["image"][0].numpy(), ras.astype(np.float32))
    assert set(np.unique(item["label"].numpy())) <= {0.0, 1.0}
    assert np.allclose(item["image"].affine.numpy(), ras_affine, atol=1e-5)
