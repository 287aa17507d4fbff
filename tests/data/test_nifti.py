"""fedshift.data.nifti: safe reading, refusal of bad files, reorientation to RAS."""

from __future__ import annotations

import contextlib
import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from mri_fixtures import patch_bytes, write_nifti

from fedshift.data.nifti import (
    MAX_DATA_BYTES,
    affine_is_valid,
    load_image,
    read_volume,
    strip_nifti_suffix,
)
from fedshift.errors import DataError

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@pytest.fixture
def volume(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(100, 10, (16, 20, 24)).astype(np.float32)


def test_reads_gz_and_plain_nii_alike(tmp_path: Path, volume: np.ndarray) -> None:
    gz = read_volume(write_nifti(tmp_path / "a.nii.gz", volume))
    plain = read_volume(write_nifti(tmp_path / "a.nii", volume))
    np.testing.assert_array_equal(gz.data, plain.data)
    assert gz.zooms == plain.zooms == (1.0, 1.0, 1.0)
    assert gz.orientation == ("R", "A", "S")


def test_nifti2_reads_like_nifti1(tmp_path: Path, volume: np.ndarray) -> None:
    one = read_volume(write_nifti(tmp_path / "one.nii.gz", volume))
    two = read_volume(write_nifti(tmp_path / "two.nii.gz", volume, nifti2=True))
    assert isinstance(two.header, nib.Nifti2Header)
    np.testing.assert_array_equal(one.data, two.data)


def test_lps_file_is_reoriented_to_ras(tmp_path: Path, volume: np.ndarray) -> None:
    ras = read_volume(write_nifti(tmp_path / "ras.nii.gz", volume))
    # the same world grid stored LPS: flip x and y, affine moves the origin accordingly
    affine = LPS.copy()
    affine[:3, 3] = [volume.shape[0] - 1, volume.shape[1] - 1, 0]
    lps = read_volume(write_nifti(tmp_path / "lps.nii.gz", volume[::-1, ::-1], affine))
    assert lps.orientation == ("L", "P", "S")
    np.testing.assert_array_equal(lps.data, ras.data)
    np.testing.assert_allclose(lps.affine, ras.affine, atol=1e-5)


def test_permuted_axes_permute_zooms(tmp_path: Path) -> None:
    data = np.zeros((4, 6, 8), dtype=np.int16)
    affine = np.array([[0, 0, 3.0, 0], [2.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])  # PIR-ish
    vol = read_volume(write_nifti(tmp_path / "p.nii.gz", data, affine))
    assert vol.data.shape == (8, 4, 6)
    assert vol.zooms == (3.0, 2.0, 1.0)


def test_trailing_singleton_dimension_is_dropped(tmp_path: Path, volume: np.ndarray) -> None:
    vol = read_volume(write_nifti(tmp_path / "t.nii.gz", volume[..., None]))
    assert vol.data.shape == volume.shape


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float64])
def test_integer_and_double_images_keep_their_values(tmp_path: Path, dtype: type) -> None:
    data = (np.arange(16 * 16 * 16) % 200).reshape(16, 16, 16).astype(dtype)
    vol = read_volume(write_nifti(tmp_path / "i.nii.gz", data))
    np.testing.assert_array_equal(vol.data, data)


def _expect_unreadable(path: Path) -> DataError:
    with pytest.raises(DataError) as info:
        read_volume(path)
    assert info.value.code == "unreadable"
    return info.value


def test_text_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "x.nii.gz"
    path.write_text("not an image")
    _expect_unreadable(path)


def test_empty_and_missing_files_are_unreadable(tmp_path: Path) -> None:
    empty = tmp_path / "e.nii"
    empty.write_bytes(b"")
    _expect_unreadable(empty)
    _expect_unreadable(tmp_path / "missing.nii.gz")


def test_truncated_gzip_is_unreadable(tmp_path: Path, volume: np.ndarray) -> None:
    path = write_nifti(tmp_path / "t.nii.gz", volume)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    _expect_unreadable(path)


def test_corrupt_gzip_is_unreadable(tmp_path: Path, volume: np.ndarray) -> None:
    path = write_nifti(tmp_path / "c.nii.gz", volume)
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 64] = bytes(b ^ 0xFF for b in raw[middle : middle + 64])
    path.write_bytes(bytes(raw))
    _expect_unreadable(path)


def test_truncated_plain_file_is_refused_by_size(tmp_path: Path, volume: np.ndarray) -> None:
    path = write_nifti(tmp_path / "t.nii", volume)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])
    assert "file holds" in str(_expect_unreadable(path))


def test_header_claiming_more_than_gzip_holds_is_refused(
    tmp_path: Path, volume: np.ndarray
) -> None:
    plain = write_nifti(tmp_path / "h.nii", volume)
    patch_bytes(plain, 42, "<3h", 64, 64, 64)  # dim[1:4]: claims 64^3 float32
    gz = tmp_path / "h.nii.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert "gzip" in str(_expect_unreadable(gz))


def test_gzip_with_a_lying_trailer_is_refused(tmp_path: Path, volume: np.ndarray) -> None:
    """The trailer says the stream is long enough, the stream itself is not."""
    plain = write_nifti(tmp_path / "l.nii", volume)
    patch_bytes(plain, 42, "<3h", 32, 40, 48)
    packed = bytearray(gzip.compress(plain.read_bytes()))
    packed[-4:] = (10**7).to_bytes(4, "little")
    gz = tmp_path / "l.nii.gz"
    gz.write_bytes(bytes(packed))
    _expect_unreadable(gz)


def test_multi_member_gzip_is_read(tmp_path: Path, volume: np.ndarray) -> None:
    raw = write_nifti(tmp_path / "m.nii", volume).read_bytes()
    gz = tmp_path / "m.nii.gz"
    gz.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    np.testing.assert_array_equal(read_volume(gz).data, volume)


def test_huge_claim_is_refused_before_reading(tmp_path: Path, volume: np.ndarray) -> None:
    plain = write_nifti(tmp_path / "h.nii", volume)
    patch_bytes(plain, 42, "<3h", 30000, 30000, 30000)
    assert f"{MAX_DATA_BYTES:,}" in str(_expect_unreadable(plain))


def test_huge_claim_in_small_gzip_is_refused_by_ratio(tmp_path: Path) -> None:
    """A compressible header can claim up to 2 GiB; the gzip size bounds what it holds."""
    plain = write_nifti(tmp_path / "z.nii", np.zeros((8, 8, 8), dtype=np.uint8))
    patch_bytes(plain, 42, "<3h", 1000, 1000, 1000)  # 1 GB of uint8
    gz = tmp_path / "z.nii.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert "can hold" in str(_expect_unreadable(gz))


def test_nifti2_dimensions_do_not_overflow(tmp_path: Path, volume: np.ndarray) -> None:
    plain = write_nifti(tmp_path / "n2.nii", volume, nifti2=True)
    patch_bytes(plain, 16, "<3q", 2**40, 2**40, 2**40)  # NIfTI-2 dim[1:4] are int64
    _expect_unreadable(plain)


@pytest.mark.parametrize("offset,fmt,value", [(70, "<h", 999), (108, "<f", -1000.0)])
def test_malformed_header_fields_are_unreadable(
    tmp_path: Path, volume: np.ndarray, offset: int, fmt: str, value: float
) -> None:
    """Unknown datatype code, negative vox_offset: nibabel refuses, we report."""
    path = patch_bytes(write_nifti(tmp_path / "m.nii", volume), offset, fmt, value)
    _expect_unreadable(path)


def test_random_header_damage_never_escapes_as_another_exception(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    raw = write_nifti(tmp_path / "f.nii", np.ones((6, 6, 6), np.int16)).read_bytes()
    target = tmp_path / "g.nii"
    for _ in range(300):
        damaged = bytearray(raw)
        for i in rng.integers(0, 348, size=3):
            damaged[i] = int(rng.integers(0, 256))
        target.write_bytes(bytes(damaged))
        with contextlib.suppress(DataError):  # any other exception fails the test
            read_volume(target)


def test_load_image_reads_header_only(tmp_path: Path, volume: np.ndarray) -> None:
    img = load_image(write_nifti(tmp_path / "h.nii.gz", volume, descrip="FSL5.0"))
    assert img.shape == volume.shape


def test_header_fixes_are_recorded(tmp_path: Path, volume: np.ndarray) -> None:
    path = patch_bytes(write_nifti(tmp_path / "p.nii", volume), 80, "<3f", 1.0, 0.0, 1.0)
    vol = read_volume(path)
    assert any("pixdim" in m for m in vol.header_fixes)


@pytest.mark.parametrize(
    "affine,valid",
    [
        (np.eye(4), True),
        (np.diag([0.01, 0.01, 0.01, 1.0]), True),  # tiny voxels: a spacing problem, not this
        (LPS, True),
        (np.zeros((4, 4)), False),
        (np.where(np.eye(4) > 0, np.nan, 0.0), False),
        (np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1.0]]), False),
    ],
)
def test_affine_is_valid(affine: np.ndarray, valid: bool) -> None:
    assert affine_is_valid(affine) is valid


def test_strip_nifti_suffix() -> None:
    assert strip_nifti_suffix("case_0000.nii.gz") == "case_0000"
    assert strip_nifti_suffix("case.nii") == "case"
    assert strip_nifti_suffix("notes.txt") == "notes.txt"
