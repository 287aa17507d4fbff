"""Shared test helpers: tiny NIfTI volumes and a tiny nnU-Net site folder in ``tmp_path``.

Everything here is generic so that any test module can build the files it needs::

    from mri_fixtures import make_site, write_nifti

    write_nifti(tmp_path / "x.nii.gz", data, affine=np.diag([-1, -1, 1, 1]), descrip="hi")
    site = make_site(tmp_path, n_cases=6, shape=(24, 24, 24), labelled=True, seed=0)

Import from this module, not from ``conftest``: with several ``conftest.py`` files in the
tree, ``import conftest`` returns whichever pytest loaded last. ``tests/`` is on
``sys.path`` because ``tests/conftest.py`` is. Randomness always comes from a seeded
:class:`numpy.random.Generator`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

#: phantom intensities (before scaling and noise), dark to bright per contrast
CONTRASTS: dict[str, dict[str, float]] = {
    "FLAIR": {"scalp": 300, "skull": 30, "gm": 260, "wm": 200, "csf": 60, "lesion": 420},
    "T1": {"scalp": 340, "skull": 30, "gm": 200, "wm": 300, "csf": 60, "lesion": 130},
}


def write_nifti(
    path: str | Path,
    data: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    nifti2: bool = False,
    dtype: Any = None,
    sform_only: bool = False,
    **header_fields: Any,
) -> Path:
    """Write ``data`` to ``path`` (``.nii`` or ``.nii.gz``) and return the path.

    Parameters
    ----------
    affine : voxel-to-world matrix, identity (1 mm RAS) when not given.
    nifti2 : write NIfTI-2 instead of NIfTI-1.
    dtype : on-disk data type (default: the array's).
    sform_only : store ``affine`` verbatim as the sform (code 1, no qform), so that a
        zero, NaN or singular affine can be written (nibabel refuses to decompose it).
    header_fields : header fields set verbatim, e.g. ``descrip="DOE^JOHN"``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(data)
    if dtype is not None:
        data = data.astype(dtype)
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=float)
    cls, header_cls = (
        (nib.Nifti2Image, nib.Nifti2Header) if nifti2 else (nib.Nifti1Image, nib.Nifti1Header)
    )
    if sform_only:
        header = header_cls()
        header.set_data_shape(data.shape)
        header.set_sform(affine, code=1)
        header.set_qform(None, code=0)
        img = cls(data, None, header=header)
    else:
        img = cls(data, affine)
    img.header.set_data_dtype(data.dtype)
    for key, value in header_fields.items():
        img.header[key] = value
    nib.save(img, path)
    return path


def patch_bytes(path: str | Path, offset: int, fmt: str, *values: Any) -> Path:
    """Overwrite bytes of an uncompressed ``.nii`` file in place (struct format ``fmt``),
    e.g. ``patch_bytes(p, 80, "<3f", 1, 0, 1)`` for pixdim[1:4] of a NIfTI-1 header."""
    import struct

    raw = bytearray(Path(path).read_bytes())
    struct.pack_into(fmt, raw, offset, *values)
    Path(path).write_bytes(bytes(raw))
    return Path(path)


def _ellipsoid_distance(
    shape: tuple[int, ...], center: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii, strict=True)))


def head_phantom(
    shape: tuple[int, int, int] = (24, 24, 24),
    rng: np.random.Generator | None = None,
    contrast: str = "FLAIR",
    noise: float = 8.0,
    n_lesions: tuple[int, int] = (2, 4),
) -> tuple[np.ndarray, np.ndarray]:
    """A head-like volume and its lesion label, both (X, Y, Z).

    Ellipsoid head: bright scalp, dark skull, grey-matter rim, white matter, a dark
    ventricle and a few lesions in the white matter; Rician-like noise everywhere. Size,
    intensity scale and lesions vary with ``rng``.

    Returns
    -------
    image : float32 intensities (about 0-450).
    label : uint8, 1 on lesions.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    tissue = CONTRASTS[contrast]
    half = np.asarray(shape, dtype=float) / 2
    center = half - 0.5 + rng.uniform(-0.5, 0.5, 3)
    radii = half * np.array([0.84, 0.92, 0.86]) * rng.uniform(0.95, 1.02)
    dist = _ellipsoid_distance(shape, center, radii)
    image = np.zeros(shape, dtype=np.float32)
    image[dist < 1.0] = tissue["scalp"]
    image[dist < 0.86] = tissue["skull"]
    image[dist < 0.76] = tissue["gm"]
    image[dist < 0.6] = tissue["wm"]
    ventricle = _ellipsoid_distance(shape, center, radii * np.array([0.14, 0.3, 0.14]))
    image[ventricle < 1.0] = tissue["csf"]
    label = np.zeros(shape, dtype=np.uint8)
    for _ in range(int(rng.integers(n_lesions[0], n_lesions[1] + 1))):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        where = center + direction * radii * rng.uniform(0.3, 0.45)
        blob = _ellipsoid_distance(shape, where, np.maximum(radii * rng.uniform(0.07, 0.1), 1.1))
        label[blob < 1.0] = 1
    image[label > 0] = tissue["lesion"]
    image *= rng.uniform(0.9, 1.1)
    noisy = np.hypot(image + rng.normal(0, noise, shape), rng.normal(0, noise, shape))
    return noisy.astype(np.float32), label


def make_site(
    tmp_path: str | Path,
    n_cases: int = 6,
    shape: tuple[int, int, int] = (24, 24, 24),
    labelled: bool = True,
    seed: int = 0,
    *,
    name: str = "site",
    n_test: int = 0,
    test_labels: bool = False,
    raters: int = 0,
    contrast: str = "FLAIR",
    dtype: Any = np.int16,
) -> Path:
    """Write a tiny nnU-Net v2 raw site folder and return its path (``tmp_path/name``).

    Cases are ``case_000`` .. in ``imagesTr`` (``n_cases``) and ``test_000`` .. in
    ``imagesTs`` (``n_test``), channel ``_0000``, int16 ``.nii.gz`` at 1 mm RAS. Labels go
    to ``labelsTr`` when ``labelled``, to ``labelsTs`` when ``test_labels``; ``raters``
    extra raters (copies of the label: tests edit them) go to ``labelsTr_raters/rater<i>/``.
    """
    root = Path(tmp_path) / name
    rng = np.random.default_rng(seed)
    channel = "T1" if contrast == "T1" else "FLAIR"
    meta = {
        "channel_names": {"0": channel},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    specs = [("imagesTr", "labelsTr", "case", n_cases, labelled)]
    specs.append(("imagesTs", "labelsTs", "test", n_test, test_labels))
    for images_dir, labels_dir, prefix, count, with_labels in specs:
        for i in range(count):
            image, label = head_phantom(shape, rng, contrast)
            case = f"{prefix}_{i:03d}"
            write_nifti(root / images_dir / f"{case}_0000.nii.gz", np.rint(image), dtype=dtype)
            if with_labels:
                write_nifti(root / labels_dir / f"{case}.nii.gz", label)
            if prefix == "case" and with_labels:
                for r in range(raters):
                    write_nifti(root / "labelsTr_raters" / f"rater{r}" / f"{case}.nii.gz", label)
    return root


def read_png(data: bytes) -> np.ndarray:
    """Decode the PNGs :mod:`fedshift.report.png` writes (8-bit, filter 0) to (H, W, C)."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, color, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8
    channels = {0: 1, 2: 3, 6: 4}[color]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * channels)
    assert np.all(rows[:, 0] == 0)
    return rows[:, 1:].reshape(height, width, channels)
