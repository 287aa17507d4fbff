"""Safe NIfTI reading: refuse bad files before allocating, reorient to RAS on load.

Every part of FedShift that opens an image goes through :func:`read_volume` (readiness,
training, evaluation), so a file is judged the same way everywhere.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.imageglobals import logger as _nibabel_logger
from nibabel.orientations import (
    OrientationError,
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
)
from nibabel.spatialimages import HeaderDataError, HeaderTypeError, ImageDataError
from nibabel.wrapstruct import WrapStructError

from fedshift.errors import DataError

#: a header may not claim more than this many bytes of voxel data (2 GiB)
MAX_DATA_BYTES = 2**31

#: deflate cannot compress better than about 1032:1, so a gzip file of n bytes holds at
#: most this many times n bytes: a header claiming more is refused before reading
MAX_GZIP_RATIO = 1100

NIFTI_SUFFIXES = (".nii.gz", ".nii")

#: bytes read from a gzip file at a time
_CHUNK = 1 << 20
#: a gzip file may hold this much more than its header claims (NIfTI extensions, padding)
_GZIP_SLACK = 1 << 20

#: what nibabel raises on a malformed file (header, gzip stream or data)
_READ_ERRORS = (
    ImageFileError,
    HeaderDataError,
    HeaderTypeError,
    ImageDataError,
    WrapStructError,
    OSError,
    EOFError,
    zlib.error,
    struct.error,
    ValueError,
    OverflowError,
)


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
    header_fixes : what nibabel fixed in the header while reading it (e.g. a zero or
        negative pixdim), one message each.
    """

    data: np.ndarray
    affine: np.ndarray
    zooms: tuple[float, ...]
    header: nib.Nifti1Header | nib.Nifti2Header
    path: Path
    orientation: tuple[str, ...]
    header_fixes: tuple[str, ...] = ()

    def as_float32(self) -> np.ndarray:
        return np.asarray(self.data, dtype=np.float32)


def is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def claimed_bytes(img: nib.Nifti1Image) -> int:
    """Bytes a single-file NIfTI must hold by its header: data offset + voxel data."""
    header = img.header
    shape = header.get_data_shape()
    itemsize = header.get_data_dtype().itemsize
    # the loaded header's vox_offset is reset to 0; the array proxy keeps the file's
    offset = int(getattr(img.dataobj, "offset", header.get_data_offset()))
    # Python ints: a NIfTI-2 header's int64 dimensions must not overflow the product
    return offset + math.prod(int(n) for n in shape) * itemsize


def _gunzip(path: Path, limit: int) -> bytes:
    """Decompress a whole gzip file (every member), verifying each CRC-32 and length.

    nibabel stops reading once it has the voxel data, so the trailer checksum of a
    corrupt stream would never be verified. Output over ``limit`` bytes is refused while
    decompressing, so a gzip bomb is never held in memory. Zero padding between or after
    members is skipped, as Python's gzip module does.
    """
    out: list[bytes] = []
    total = 0
    decomp, in_member = zlib.decompressobj(wbits=31), False
    with path.open("rb") as fh:
        pending = fh.read(_CHUNK)
        while pending:
            if not in_member:
                pending = pending.lstrip(b"\x00")
                if not pending:
                    pending = fh.read(_CHUNK)
                    continue
            in_member = True
            piece = decomp.decompress(pending, limit + 1 - total)
            total += len(piece)
            out.append(piece)
            if total > limit:
                raise DataError("unreadable", f"gzip stream holds more than {limit:,} bytes")
            if decomp.eof:  # the next member, if any (multi-member gzip, e.g. bgzip)
                pending = decomp.unused_data
                decomp, in_member = zlib.decompressobj(wbits=31), False
            else:
                pending = decomp.unconsumed_tail
            if not pending:
                pending = fh.read(_CHUNK)
    if in_member:
        raise DataError("unreadable", "gzip stream ends early (truncated file)")
    return b"".join(out)


def _check_claimed_size(path: Path, img: nib.Nifti1Image) -> None:
    """Refuse a file whose header claims more voxel data than the file holds (for gzip:
    more than its size could hold; :func:`_gunzip` checks the exact length later)."""
    header = img.header
    shape = header.get_data_shape()
    if any(int(n) <= 0 for n in shape):
        raise DataError("unreadable", f"header has a non-positive dimension {tuple(shape)}")
    claimed = claimed_bytes(img)
    if claimed > MAX_DATA_BYTES:
        raise DataError(
            "unreadable",
            f"header claims {claimed:,} bytes of data, over the {MAX_DATA_BYTES:,} limit",
        )
    if path.name.endswith(".gz"):
        held = path.stat().st_size
        if claimed > MAX_GZIP_RATIO * held:
            raise DataError(
                "unreadable",
                f"header claims {claimed:,} bytes, more than a {held:,}-byte gzip file can hold",
            )
    else:
        held = path.stat().st_size
        if held < claimed:
            raise DataError(
                "unreadable", f"header claims {claimed:,} bytes but the file holds {held:,}"
            )


class _Collect(logging.Handler):
    """Keeps the messages nibabel logs while it fixes a header."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _nibabel_notes() -> Iterator[list[str]]:
    """Collect (instead of print) nibabel's notes on header fixes, e.g. a zero pixdim it
    replaced by 1: readiness reports them as findings."""
    handler = _Collect()
    saved = (_nibabel_logger.handlers[:], _nibabel_logger.propagate, _nibabel_logger.level)
    _nibabel_logger.handlers = [handler]
    _nibabel_logger.propagate = False
    _nibabel_logger.setLevel(1)
    try:
        yield handler.messages
    finally:
        _nibabel_logger.handlers, _nibabel_logger.propagate = saved[0], saved[1]
        _nibabel_logger.setLevel(saved[2])


def load_image(path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
    """Open a NIfTI-1 or NIfTI-2 file and check its claimed size. Reads the header only."""
    path = Path(path)
    if not path.is_file():
        raise DataError("unreadable", f"{path} is not a file", str(path))
    try:
        with _nibabel_notes() as notes:
            img = nib.load(path, mmap=False)
    except _READ_ERRORS as exc:
        raise DataError("unreadable", f"not a readable NIfTI file: {exc}", str(path)) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError("unreadable", f"{type(img).__name__} is not a NIfTI image", str(path))
    try:
        _check_claimed_size(path, img)
    except DataError as exc:
        raise DataError(exc.code, str(exc), str(path)) from None
    img.extra["fedshift_header_fixes"] = tuple(notes)
    return img


def _squeeze_to_3d(data: np.ndarray) -> np.ndarray:
    """Drop trailing singleton dimensions (a 4D file with one volume is 3D)."""
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return data


def reorient_to_ras(
    data: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Permute/flip a 3D array to RAS+; returns (data, affine, ornt_of_file)."""
    ornt = io_orientation(affine)
    ras = axcodes2ornt(("R", "A", "S"))
    if np.array_equal(ornt, ras):
        return data, affine, ornt
    new = apply_orientation(data, ornt)
    new_affine = affine @ inv_ornt_aff(ornt, data.shape)
    return np.ascontiguousarray(new), new_affine, ornt


def affine_is_valid(affine: np.ndarray) -> bool:
    """True for a finite, non-singular 4x4 affine whose axes map onto distinct world axes."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        return False
    with np.errstate(all="ignore"):
        norms = np.sqrt((a[:3, :3] ** 2).sum(axis=0))
        if not np.all(norms > 0):
            return False
        # scale-free: |det| / product of column lengths is 1 for orthogonal axes, 0 when
        # they are collinear (tiny voxels are judged by the spacing check, not here)
        det = np.linalg.det(a[:3, :3]) / np.prod(norms)
        if not np.isfinite(det) or abs(det) <= 1e-6:
            return False
        try:
            ornt = io_orientation(a)
        except (OrientationError, ValueError, np.linalg.LinAlgError):
            return False
    return bool(np.all(np.isfinite(ornt)))


def _voxel_data(path: Path, img: nib.Nifti1Image | nib.Nifti2Image) -> np.ndarray:
    """The scaled voxel array; a gzip file is decompressed whole, checksum verified."""
    if path.name.endswith(".gz"):
        claimed = claimed_bytes(img)
        raw = _gunzip(path, claimed + _GZIP_SLACK)
        if len(raw) < claimed:  # a lying gzip trailer: refuse before nibabel allocates
            raise DataError(
                "unreadable",
                f"header claims {claimed:,} bytes but the gzip stream holds {len(raw):,}",
            )
        with _nibabel_notes():
            img = type(img).from_bytes(raw)
    with np.errstate(all="ignore"):  # overflowing scale factors give inf: a finding
        return np.asanyarray(img.dataobj)


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
    fixes = tuple(img.extra.get("fedshift_header_fixes", ()))
    try:
        data = _voxel_data(path, img)
    except DataError as exc:
        raise DataError(exc.code, str(exc), str(path)) from None
    except (*_READ_ERRORS, gzip.BadGzipFile, MemoryError) as exc:
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
    return Volume(data, affine, zooms, img.header, path, axcodes, fixes)


def ras_voxel_sizes(path: Path) -> tuple[float, float, float]:
    """Voxel sizes (mm) of an image along its RAS-reoriented axes, from the header only."""
    affine = np.asarray(load_image(path).affine, dtype=np.float64)
    sizes, out = np.sqrt((affine[:3, :3] ** 2).sum(axis=0)), [0.0, 0.0, 0.0]
    for axis, (ras_axis, _flip) in enumerate(io_orientation(affine)):
        out[int(ras_axis)] = float(sizes[axis])
    return out[0], out[1], out[2]
