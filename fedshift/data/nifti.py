"""Safe NIfTI reading: refuse bad files before allocating, reorient to RAS on load.

Every part of FedShift that opens an image goes through :func:`read_volume` (readiness,
training, evaluation), so a file is judged the same way everywhere.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation

from fedshift.errors import DataError

#: a header may not claim more than this many bytes of voxel data (2 GiB)
MAX_DATA_BYTES = 2**31

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Volume:
    """A 3D image as FedShift sees it.

    Attributes
    ----------
    data : array (X, Y, Z) in RAS+ orientation, in the file's data type after scaling.
    affine : 4x4 voxel-to-world (mm) matrix matching ``data``.
    zooms : voxel sizes in mm, matching ``data``'s axes.
    header : the file's header (text fields are checked by readiness).
    path : the file read.
    orientation : the axis codes the file was stored in, e.g. ``('L', 'P', 'S')``.
    """

    data: np.ndarray
    affine: np.ndarray
    zooms: tuple[float, ...]
    header: nib.Nifti1Header | nib.Nifti2Header
    path: Path
    orientation: tuple[str, ...]

    def as_float32(self) -> np.ndarray:
        return np.asarray(self.data, dtype=np.float32)


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _gzip_isize(path: Path) -> int | None:
    """Uncompressed size mod 2**32 from a gzip trailer, or None when it cannot be read."""
    size = path.stat().st_size
    if size < 18:
        return None
    with path.open("rb") as fh:
        fh.seek(size - 4)
        return int.from_bytes(fh.read(4), "little")


def _check_claimed_size(path: Path, img: nib.Nifti1Image) -> None:
    """Refuse a file whose header claims more voxel data than the file holds."""
    header = img.header
    shape = header.get_data_shape()
    if any(int(n) <= 0 for n in shape):
        raise DataError("unreadable", f"header has a non-positive dimension {tuple(shape)}")
    itemsize = header.get_data_dtype().itemsize
    claimed = int(header.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * itemsize
    if claimed > MAX_DATA_BYTES:
        raise DataError(
            "unreadable", f"header claims {claimed:,} bytes of data, over the {MAX_DATA_BYTES:,} limit"
        )
    if path.name.endswith(".gz"):
        isize = _gzip_isize(path)
        if isize is not None and claimed < 2**32 and isize < claimed:
            raise DataError(
                "unreadable",
                f"header claims {claimed:,} bytes but the gzip stream holds {isize:,} (truncated?)",
            )
    else:
        held = path.stat().st_size
        if held < claimed:
            raise DataError(
                "unreadable", f"header claims {claimed:,} bytes but the file holds {held:,}"
            )


def load_image(path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
    """Open a NIfTI-1 or NIfTI-2 file and check its claimed size. Reads the header only."""
    path = Path(path)
    if not path.is_file():
        raise DataError("unreadable", f"{path} is not a file", str(path))
    try:
        img = nib.load(path, mmap=False)
    except (ImageFileError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise DataError("unreadable", f"not a readable NIfTI file: {exc}", str(path)) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError("unreadable", f"{type(img).__name__} is not a NIfTI image", str(path))
    _check_claimed_size(path, img)
    return img


def _squeeze_to_3d(data: np.ndarray) -> np.ndarray:
    """Drop trailing singleton dimensions (a 4D file with one volume is 3D)."""
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return data


def reorient_to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Permute/flip a 3D array to RAS+; returns (data, affine, ornt_of_file)."""
    ornt = io_orientation(affine)
    ras = axcodes2ornt(("R", "A", "S"))
    if np.array_equal(ornt, ras):
        return data, affine, ornt
    new = apply_orientation(data, ornt)
    new_affine = affine @ inv_ornt_aff(ornt, data.shape)
    return np.ascontiguousarray(new), new_affine, ornt


def affine_is_valid(affine: np.ndarray) -> bool:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        return False
    return abs(np.linalg.det(a[:3, :3])) > 1e-6


def read_volume(path: str | os.PathLike[str], *, reorient: bool = True) -> Volume:
    """Read a NIfTI file into a :class:`Volume`, reoriented to RAS+ when its affine allows.

    Raises
    ------
    DataError
        code ``unreadable`` for anything that is not a complete NIfTI file. Content
        problems (NaN, 4D, bad affine) are left to readiness, which reports them.
    """
    path = Path(path)
    img = load_image(path)
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, zlib.error, ValueError, gzip.BadGzipFile) as exc:
        raise DataError("unreadable", f"voxel data cannot be read: {exc}", str(path)) from exc
    data = _squeeze_to_3d(data)
    affine = np.asarray(img.affine, dtype=np.float64)
    zooms = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
    axcodes: tuple[str, ...] = ("?", "?", "?")
    if data.ndim == 3 and affine_is_valid(affine):
        axcodes = tuple(nib.aff2axcodes(affine))
        if reorient:
            data, affine, ornt = reorient_to_ras(data, affine)
            permuted = [0.0] * 3
            for axis, (new_axis, _flip) in enumerate(ornt):
                permuted[int(new_axis)] = zooms[axis]
            zooms = tuple(permuted)
    return Volume(data, affine, zooms, img.header, path, axcodes)
