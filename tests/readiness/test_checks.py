"""fedshift.readiness.checks: integrity of one image and agreement of two grids.

Every bad file is made here, in ``tmp_path``, then read with the safe reader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mri_fixtures import patch_bytes, write_nifti

from fedshift.data.nifti import read_volume
from fedshift.readiness.checks import grid_findings, integrity_findings, spacing_problem


@pytest.fixture
def data(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(100, 10, (16, 16, 16)).astype(np.float32)


def _codes(path: Path) -> list[str]:
    return [f.code for f in integrity_findings(read_volume(path), path.name)]


def _errors(path: Path) -> list[str]:
    found = integrity_findings(read_volume(path), path.name)
    return [f.code for f in found if f.severity == "error"]


def test_clean_image_has_no_finding(tmp_path: Path, data: np.ndarray) -> None:
    assert _codes(write_nifti(tmp_path / "ok.nii.gz", data)) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(tmp_path: Path, data: np.ndarray, bad: float) -> None:
    data[3, 4, 5] = bad
    assert _errors(write_nifti(tmp_path / "nf.nii.gz", data)) == ["non_finite"]


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 16, 2), (16, 16, 1)])
def test_not_3d(tmp_path: Path, shape: tuple[int, ...]) -> None:
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    assert "not_3d" in _errors(write_nifti(tmp_path / "n.nii.gz", data))


@pytest.mark.parametrize(
    "affine",
    [
        np.zeros((4, 4)),
        np.where(np.eye(4) > 0, np.nan, 0.0),
        np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1.0]]),
    ],
    ids=["zero", "nan", "singular"],
)
def test_bad_affine(tmp_path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    path = write_nifti(tmp_path / "a.nii.gz", data, affine, sform_only=True)
    assert _errors(path) == ["bad_affine"]


@pytest.mark.parametrize(
    "zooms",
    [(25.0, 25.0, 25.0), (0.01, 0.01, 0.01), (0.5, 0.5, 6.0)],
    ids=["absurd", "tiny", "anisotropic"],
)
def test_bad_spacing_from_affine(
    tmp_path: Path, data: np.ndarray, zooms: tuple[float, ...]
) -> None:
    path = write_nifti(tmp_path / "s.nii.gz", data, np.diag([*zooms, 1.0]))
    assert _errors(path) == ["bad_spacing"]


@pytest.mark.parametrize("pixdim", [(-1.0, 1.0, 1.0), (1.0, 0.0, 1.0)], ids=["negative", "zero"])
def test_bad_spacing_in_header(tmp_path: Path, data: np.ndarray, pixdim: tuple[float, ...]) -> None:
    """nibabel silently repairs these; the reader keeps its note and readiness reports it."""
    path = patch_bytes(write_nifti(tmp_path / "p.nii", data), 80, "<3f", *pixdim)
    assert _errors(path) == ["bad_spacing"]


@pytest.mark.parametrize("value", [0, 7])
def test_constant_image(tmp_path: Path, value: int) -> None:
    path = write_nifti(tmp_path / "c.nii.gz", np.full((8, 8, 8), value, dtype=np.int16))
    assert _errors(path) == ["constant_image"]


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("plain.nii", {}),
        ("nifti2.nii.gz", {"nifti2": True}),
        ("int16.nii.gz", {"dtype": np.int16}),
        ("uint8.nii.gz", {"dtype": np.uint8}),
        ("lps.nii.gz", {"affine": np.diag([-1.0, -1.0, 1.0, 1.0])}),
        (
            "pir.nii.gz",
            {"affine": np.array([[0, 0, -1.0, 0], [-1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])},
        ),
        (
            "oblique.nii.gz",
            {
                "affine": np.array(
                    [[0.98, -0.17, 0, 0], [0.17, 0.98, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]]
                )
            },
        ),
        ("scaled.nii.gz", {"affine": np.diag([0.9, 0.9, 3.0, 1.0])}),
    ],
)
def test_valid_unusual_inputs_are_not_errors(
    tmp_path: Path, data: np.ndarray, name: str, kwargs: dict
) -> None:
    values = np.clip(data, 0, 255)
    assert _errors(write_nifti(tmp_path / name, values, **kwargs)) == []


def test_unusual_inputs_get_an_info_note(tmp_path: Path, data: np.ndarray) -> None:
    lps = write_nifti(tmp_path / "lps.nii.gz", data, np.diag([-1.0, -1.0, 1.0, 1.0]))
    two = write_nifti(tmp_path / "two.nii.gz", data, nifti2=True)
    assert _codes(lps) == ["unusual_input"] and _codes(two) == ["unusual_input"]


def test_shape_mismatch(tmp_path: Path, data: np.ndarray) -> None:
    image = read_volume(write_nifti(tmp_path / "i.nii.gz", data))
    label = read_volume(write_nifti(tmp_path / "l.nii.gz", np.zeros((16, 16, 12), np.uint8)))
    assert [f.code for f in grid_findings(image, label, "l")] == ["shape_mismatch"]


@pytest.mark.parametrize("shift", [np.array([5.0, 0, 0]), np.array([0, 0, 0.5])])
def test_affine_mismatch(tmp_path: Path, data: np.ndarray, shift: np.ndarray) -> None:
    affine = np.eye(4)
    affine[:3, 3] = shift
    image = read_volume(write_nifti(tmp_path / "i.nii.gz", data))
    label = read_volume(write_nifti(tmp_path / "l.nii.gz", np.zeros(data.shape, np.uint8), affine))
    assert [f.code for f in grid_findings(image, label, "l")] == ["affine_mismatch"]


def test_same_grid_in_other_orientations_agrees(tmp_path: Path, data: np.ndarray) -> None:
    """Image and label both LPS, or image LPS and label RAS on the same world grid."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps[:3, 3] = [15, 15, 0]
    label = (data > 100).astype(np.uint8)
    image_lps = read_volume(write_nifti(tmp_path / "i.nii.gz", data[::-1, ::-1], lps))
    label_lps = read_volume(write_nifti(tmp_path / "l.nii.gz", label[::-1, ::-1], lps))
    label_ras = read_volume(write_nifti(tmp_path / "r.nii.gz", label))
    assert grid_findings(image_lps, label_lps, "l") == []
    assert grid_findings(image_lps, label_ras, "r") == []
    np.testing.assert_array_equal(label_lps.data, label_ras.data)


def test_float_rounding_of_the_affine_is_tolerated(tmp_path: Path, data: np.ndarray) -> None:
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-90.00001, 126.00002, -72.0]
    nudged = affine.copy()
    nudged[0, 3] += 1e-4
    image = read_volume(write_nifti(tmp_path / "i.nii.gz", data, affine))
    label = read_volume(write_nifti(tmp_path / "l.nii.gz", np.zeros(data.shape, np.uint8), nudged))
    assert grid_findings(image, label, "l") == []


@pytest.mark.parametrize(
    "zooms,ok",
    [
        ((1, 1, 1), True),
        ((0.5, 0.5, 5.0), True),
        ((0.4, 0.4, 5.0), False),
        ((0, 1, 1), False),
        ((1, -1, 1), False),
        ((np.nan, 1, 1), False),
        ((21, 1, 5), False),
        ((0.04, 0.1, 0.1), False),
    ],
)
def test_spacing_problem(zooms: tuple[float, ...], ok: bool) -> None:
    assert (spacing_problem(zooms) is None) is ok
