"""fedshift.readiness.runner end to end: a tiny site, one bad file at a time.

Every bad file is made inside the test; the run must finish, flag that file with its code
and leave the other cases usable.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from mri_fixtures import head_phantom, make_site, write_nifti

from fedshift.errors import UsageError
from fedshift.readiness import case_check
from fedshift.readiness.levels import LEVEL_A, LEVEL_B, LEVEL_C, LEVEL_D
from fedshift.readiness.runner import HTML_NAME, JSON_NAME, run_readiness, usable_cases
from fedshift.readiness.site_config import ReadinessConfig

CASE = "case_001"


def _run(root: Path, tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    return run_readiness(root, tmp_path / "out", workers=kwargs.pop("workers", 1), **kwargs)


def _case(report: dict[str, Any], case: str = CASE) -> dict[str, Any]:
    return next(c for c in report["cases"] if c["case"] == case)


def _codes(report: dict[str, Any], case: str = CASE) -> set[str]:
    return {f["code"] for f in _case(report, case)["findings"]}


def _image(root: Path, case: str = CASE) -> Path:
    return root / "imagesTr" / f"{case}_0000.nii.gz"


def _label(root: Path, case: str = CASE) -> Path:
    return root / "labelsTr" / f"{case}.nii.gz"


def _array(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj).copy()


def _tree_state(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_clean_site_is_level_a_and_follows_the_contract(site: Path, tmp_path: Path) -> None:
    report = _run(site, tmp_path)
    assert report["level"] == LEVEL_A
    assert report["n_cases"] == 6 and report["n_usable"] == 6
    assert {"level", "n_cases", "n_usable", "findings", "cases", "iqm"} <= set(report)
    assert report["shareable"] == {"level": "A", "n_cases": 6, "n_usable": 6}
    for case in report["cases"]:
        assert set(case) >= {"case", "split", "usable", "findings"}
        assert case["split"] == "train" and case["usable"]
    for finding in report["findings"]:
        assert set(finding) == {"code", "severity", "message", "file"}
    assert set(report["iqm"]) == {f"case_{i:03d}" for i in range(6)}
    assert set(report["iqm"]["case_000"]) >= {
        "snr",
        "cnr",
        "cjv",
        "efc",
        "fber",
        "wm2max",
        "bias_range",
    }
    assert report["label_stats"]["case_000"]["n_lesions"] >= 1
    written = json.loads((tmp_path / "out" / JSON_NAME).read_text())
    assert written == report
    assert usable_cases(report) == set(report["iqm"])
    assert usable_cases(report, "test") == set()


def test_html_is_self_contained(site: Path, tmp_path: Path) -> None:
    report = _run(site, tmp_path)
    html = (tmp_path / "out" / HTML_NAME).read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script" not in html and "<link" not in html and 'src="http' not in html
    assert f">{report['level']}</span>" in html
    assert "Only the level and the counts" in html
    assert html.count("<svg") == 7 and "data:image/png;base64," in html
    assert "attestation_missing" in html


def test_inputs_are_never_modified(site: Path, tmp_path: Path) -> None:
    before = _tree_state(site)
    _run(site, tmp_path)
    assert _tree_state(site) == before


def test_output_inside_the_site_is_refused(site: Path) -> None:
    with pytest.raises(UsageError, match="inside the site folder"):
        run_readiness(site, site / "readiness", workers=1)


def test_missing_site_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        run_readiness(tmp_path / "nowhere", tmp_path / "out")


def _text_file(root: Path) -> None:
    _image(root).write_text("not a NIfTI file")


def _truncated(root: Path) -> None:
    raw = _image(root).read_bytes()
    _image(root).write_bytes(raw[: len(raw) // 2])


def _corrupt_gzip(root: Path) -> None:
    raw = bytearray(_image(root).read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 32] = bytes(32)
    _image(root).write_bytes(bytes(raw))


def _claims_more(root: Path) -> None:
    img = nib.load(_image(root))
    plain = bytearray(gzip.decompress(_image(root).read_bytes()))
    plain[42:44] = (img.shape[0] * 4).to_bytes(2, "little")  # dim[1] grows 4x
    _image(root).write_bytes(gzip.compress(bytes(plain)))


def _with_nan(root: Path) -> None:
    data = _array(_image(root)).astype(np.float32)
    data[5, 5, 5] = np.nan
    write_nifti(_image(root), data)


def _four_d(root: Path) -> None:
    data = _array(_image(root))
    write_nifti(_image(root), np.stack([data, data], axis=-1))


def _zero_affine(root: Path) -> None:
    write_nifti(_image(root), _array(_image(root)), np.zeros((4, 4)), sform_only=True)


def _thick_slices(root: Path) -> None:
    write_nifti(_image(root), _array(_image(root)), np.diag([0.5, 0.5, 6.0, 1.0]))


def _constant(root: Path) -> None:
    write_nifti(_image(root), np.full((24, 24, 24), 100, dtype=np.int16))


def _label_shape(root: Path) -> None:
    write_nifti(_label(root), _array(_label(root))[:20])


def _label_shifted(root: Path) -> None:
    affine = np.eye(4)
    affine[:3, 3] = [3.0, 0, 0]
    write_nifti(_label(root), _array(_label(root)), affine)


def _label_two(root: Path) -> None:
    write_nifti(_label(root), _array(_label(root)) * 2)


def _label_fraction(root: Path) -> None:
    write_nifti(_label(root), _array(_label(root)).astype(np.float32) * 0.5)


def _label_empty(root: Path) -> None:
    write_nifti(_label(root), np.zeros((24, 24, 24), dtype=np.uint8))


def _label_in_air(root: Path) -> None:
    label = np.zeros((24, 24, 24), dtype=np.uint8)
    label[:3, :3, :3] = 1  # a corner of the volume: air
    write_nifti(_label(root), label)


def _label_unreadable(root: Path) -> None:
    _label(root).write_bytes(b"\x1f\x8b garbage")


def _identifying(root: Path) -> None:
    write_nifti(_image(root), _array(_image(root)), descrip="DOE^JOHN 1970-01-01")


BAD_FILES: list[tuple[Callable[[Path], None], str]] = [
    (_text_file, "unreadable"),
    (_truncated, "unreadable"),
    (_corrupt_gzip, "unreadable"),
    (_claims_more, "unreadable"),
    (_with_nan, "non_finite"),
    (_four_d, "not_3d"),
    (_zero_affine, "bad_affine"),
    (_thick_slices, "bad_spacing"),
    (_constant, "constant_image"),
    (_label_shape, "shape_mismatch"),
    (_label_shifted, "affine_mismatch"),
    (_label_two, "label_values"),
    (_label_fraction, "label_values"),
    (_label_in_air, "label_outside_brain"),
    (_label_unreadable, "unreadable"),
]


@pytest.mark.parametrize(
    "damage,code", BAD_FILES, ids=[f[0].__name__.strip("_") for f in BAD_FILES]
)
def test_a_bad_file_excludes_only_its_case(
    site: Path, tmp_path: Path, damage: Callable[[Path], None], code: str
) -> None:
    damage(site)
    report = _run(site, tmp_path)
    assert code in _codes(report), _case(report)["findings"]
    assert not _case(report)["usable"]
    assert report["n_usable"] == 5
    assert report["level"] == LEVEL_A  # the other cases still make the site ready


def test_empty_label_is_a_warning_only(site: Path, tmp_path: Path) -> None:
    _label_empty(site)
    report = _run(site, tmp_path)
    assert _codes(report) == {"empty_label"} and _case(report)["usable"]


def test_identifying_text_makes_the_site_level_d(site: Path, tmp_path: Path) -> None:
    _identifying(site)
    report = _run(site, tmp_path)
    assert "identifying_text" in _codes(report)
    assert report["level"] == LEVEL_D
    assert "DOE" not in json.dumps(report)


def test_identifying_text_in_a_label_counts_too(site: Path, tmp_path: Path) -> None:
    write_nifti(_label(site), _array(_label(site)), aux_file="Patient Smith")
    assert _run(site, tmp_path)["level"] == LEVEL_D


def test_missing_label_and_missing_image(site: Path, tmp_path: Path) -> None:
    _label(site).unlink()
    shutil.move(_image(site, "case_004"), tmp_path / "elsewhere.nii.gz")
    report = _run(site, tmp_path)
    assert _codes(report) == {"missing_label"} and not _case(report)["usable"]
    assert [f["code"] for f in report["findings"] if f["code"] == "missing_image"] == [
        "missing_image"
    ]
    assert report["n_cases"] == 5 and report["level"] == LEVEL_A


def test_duplicate_names_the_earlier_case(site: Path, tmp_path: Path) -> None:
    shutil.copy(_image(site, "case_000"), _image(site, "case_003"))
    # the same data stored LPS and uncompressed is still a duplicate
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps[:3, 3] = [23, 23, 0]
    data = _array(_image(site, "case_000"))
    _image(site, "case_005").unlink()
    write_nifti(site / "imagesTr" / "case_005_0000.nii", data[::-1, ::-1], lps)
    report = _run(site, tmp_path)
    for later in ("case_003", "case_005"):
        finding = next(f for f in _case(report, later)["findings"] if f["code"] == "duplicate")
        assert "case_000" in finding["message"]
    assert _case(report, "case_000")["usable"]


def test_noisy_case_is_an_iqm_outlier(site: Path, tmp_path: Path) -> None:
    noisy, _ = head_phantom((24, 24, 24), np.random.default_rng(99), noise=45)
    write_nifti(_image(site), np.rint(noisy), dtype=np.int16)
    report = _run(site, tmp_path)
    assert "iqm_outlier" in _codes(report) and not _case(report)["usable"]
    assert any(o["case"] == CASE and o["worse"] for o in report["iqm_outliers"])
    others = [c for c in report["cases"] if c["case"] != CASE]
    assert all(c["usable"] for c in others)


def test_too_few_cases_give_no_outlier(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=4)
    noisy, _ = head_phantom((24, 24, 24), np.random.default_rng(99), noise=45)
    write_nifti(_image(root), np.rint(noisy), dtype=np.int16)
    report = _run(root, tmp_path)
    assert report["iqm_outliers"] == [] and report["n_usable"] == 4


def test_rater_disagreement_and_mean_dice(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=6, raters=2)
    rater = root / "labelsTr_raters" / "rater1" / f"{CASE}.nii.gz"
    write_nifti(rater, np.roll(_array(rater), 5, axis=0))
    report = _run(root, tmp_path)
    finding = next(f for f in _case(report)["findings"] if f["code"] == "rater_disagreement")
    assert finding["severity"] == "warning" and _case(report)["usable"]
    agreement = report["raters"][CASE]
    assert agreement["raters"] == ["labelsTr", "rater0", "rater1"]
    assert agreement["min_dice"] < 0.5
    # labelsTr and rater0 agree (Dice 1), rater1 disagrees with both alike
    assert agreement["mean_dice"] == pytest.approx((1 + 2 * agreement["min_dice"]) / 3)
    assert report["raters"]["case_000"]["mean_dice"] == 1.0


def test_bad_rater_file_does_not_exclude_the_case(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=6, raters=1)
    (root / "labelsTr_raters" / "rater0" / f"{CASE}.nii.gz").write_text("junk")
    report = _run(root, tmp_path)
    finding = next(f for f in _case(report)["findings"] if f["code"] == "unreadable")
    assert finding["severity"] == "warning" and _case(report)["usable"]


def test_valid_unusual_inputs_are_not_errors(site: Path, tmp_path: Path) -> None:
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps[:3, 3] = [23, 23, 0]
    image, label = _array(_image(site, "case_000")), _array(_label(site, "case_000"))
    write_nifti(_image(site, "case_000"), image[::-1, ::-1], lps)  # image and label LPS
    write_nifti(_label(site, "case_000"), label[::-1, ::-1], lps)
    image = _array(_image(site, "case_001"))
    write_nifti(_image(site, "case_001"), image[::-1, ::-1], lps)  # LPS image, RAS label
    data = _array(_image(site, "case_002"))
    _image(site, "case_002").unlink()
    write_nifti(site / "imagesTr" / "case_002_0000.nii", data, nifti2=True)  # plain NIfTI-2
    write_nifti(
        _image(site, "case_003"),
        np.clip(_array(_image(site, "case_003")) // 2, 0, 255),
        dtype=np.uint8,
    )
    write_nifti(_label(site, "case_004"), _array(_label(site, "case_004")), dtype=np.float64)
    report = _run(site, tmp_path)
    errors = [
        (c["case"], f) for c in report["cases"] for f in c["findings"] if f["severity"] == "error"
    ]
    assert errors == []
    assert report["level"] == LEVEL_A and report["n_usable"] == 6


def test_unstructured_folder_is_level_c_and_unreadable_one_level_d(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    image, _ = head_phantom((16, 16, 16), np.random.default_rng(0))
    write_nifti(loose / "scan1.nii.gz", image)
    report = _run(loose, tmp_path)
    assert report["level"] == LEVEL_C and report["n_cases"] == 0
    assert any(f["code"] == "unstructured" for f in report["findings"])
    (loose / "scan1.nii.gz").write_text("junk")
    assert _run(loose, tmp_path)["level"] == LEVEL_D


def test_missing_dataset_json_is_level_c(site: Path, tmp_path: Path) -> None:
    (site / "dataset.json").unlink()
    report = _run(site, tmp_path)
    assert report["level"] == LEVEL_C and report["n_usable"] == 6


def test_no_usable_case_is_level_c_no_readable_is_level_d(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=2)
    for case in ("case_000", "case_001"):
        write_nifti(_image(root, case), np.zeros((24, 24, 24), np.int16))
    assert _run(root, tmp_path)["level"] == LEVEL_C
    for case in ("case_000", "case_001"):
        _image(root, case).write_text("junk")
    assert _run(root, tmp_path)["level"] == LEVEL_D


def test_unlabelled_target_site_is_level_b(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=5, labelled=False, n_test=2, test_labels=True)
    write_nifti(root / "labelsTs" / "test_001.nii.gz", np.full((24, 24, 24), 3, np.uint8))
    report = _run(root, tmp_path)
    assert report["level"] == LEVEL_B
    assert any(
        f["code"] == "unlabelled_site" and f["severity"] == "info" for f in report["findings"]
    )
    assert {c["split"] for c in report["cases"]} == {"train", "test"}
    assert "label_values" in _codes(report, "test_001")
    assert usable_cases(report, "test") == {"test_000"}


def test_attestations_from_the_site_config(site: Path, tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text(
        "attestations:\n  ethics_reference: IRB-2024-117\n  annotation_protocol: consensus\n"
        "  deidentified_by: PACS export\n"
    )
    report = _run(site, tmp_path, config=config)
    assert report["attestations"]["ethics_reference"] == "IRB-2024-117"
    assert not any(f["code"] == "attestation_missing" for f in report["findings"])
    default = _run(site, tmp_path)
    missing = [f for f in default["findings"] if f["code"] == "attestation_missing"]
    assert len(missing) == 3 and default["level"] == LEVEL_A


def test_an_unforeseen_failure_is_a_finding(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = case_check.segment

    def failing(image: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        if image[0, 0, 0] == -12345:
            raise RuntimeError("boom")
        return real(image, *args, **kwargs)

    data = _array(_image(site)).astype(np.int16)
    data[0, 0, 0] = -12345
    write_nifti(_image(site), data)
    monkeypatch.setattr(case_check, "segment", failing)
    report = _run(site, tmp_path)
    finding = next(f for f in _case(report)["findings"] if f["code"] == "check_failed")
    assert "boom" in finding["message"] and report["n_usable"] == 5


def test_process_pool_gives_the_same_report(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=3)
    _label_two(root)
    serial = run_readiness(root, tmp_path / "a", ReadinessConfig(), workers=1)
    pooled = run_readiness(root, tmp_path / "b", ReadinessConfig(), workers=2)
    assert pooled == serial


def test_same_case_id_in_both_splits_gets_distinct_keys(tmp_path: Path) -> None:
    root = make_site(tmp_path, n_cases=2, n_test=0)
    shutil.copytree(root / "imagesTr", root / "imagesTs")
    report = _run(root, tmp_path)
    keys = [c["case"] for c in report["cases"]]
    assert keys == ["case_000", "case_001", "test:case_000", "test:case_001"]
