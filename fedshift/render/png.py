"""A dependency-free PNG encoder (zlib + struct) for report mosaics.

Writes 8-bit grayscale ``(H, W)``, RGB ``(H, W, 3)`` or RGBA ``(H, W, 4)`` images, one
IDAT chunk, no interlacing, filter type 0 on every row (PNG specification, ISO/IEC
15948). Enough for reports and README figures without Pillow or matplotlib.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: channels -> PNG colour type
_COLOR_TYPE = {1: 0, 3: 2, 4: 6}

#: the PNG format's limit on width and height
_MAX_SIDE = 2**31 - 1


def _chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type + data."""
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _as_hwc(image: np.ndarray) -> np.ndarray:
    """Check an image array and return it as (H, W, C) uint8."""
    array = np.asarray(image)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise ValueError(f"PNG image must be uint8 (or bool), got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in _COLOR_TYPE:
        raise ValueError(f"PNG image must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    height, width = array.shape[:2]
    if not (0 < height <= _MAX_SIDE and 0 < width <= _MAX_SIDE):
        raise ValueError(f"PNG image must have a positive size, got {height}x{width}")
    return np.ascontiguousarray(array)


def png_bytes(image: np.ndarray, compression: int = 6) -> bytes:
    """Encode an image as PNG.

    Parameters
    ----------
    image : uint8 (or bool) array, (H, W) grayscale, (H, W, 3) RGB or (H, W, 4) RGBA.
    compression : zlib level, 0 (none) to 9 (smallest).

    Returns
    -------
    The bytes of a complete PNG file.
    """
    if not 0 <= compression <= 9:
        raise ValueError(f"compression must be 0..9, got {compression}")
    array = _as_hwc(image)
    height, width, channels = array.shape
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # column 0: filter 0
    rows[:, 1:] = array.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[channels], 0, 0, 0)
    return b"".join(
        [
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), compression)),
            _chunk(b"IEND", b""),
        ]
    )


def write_png(path: str | os.PathLike[str], image: np.ndarray, compression: int = 6) -> Path:
    """Write ``image`` (see :func:`png_bytes`) to ``path`` and return the path."""
    path = Path(path)
    path.write_bytes(png_bytes(image, compression))
    return path
