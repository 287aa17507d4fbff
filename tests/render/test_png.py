"""fedshift.render.png: a PNG encoder checked by decoding its output."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from mri_fixtures import read_png

from fedshift.render.png import PNG_SIGNATURE, png_bytes, write_png


@pytest.mark.parametrize("shape", [(7, 5), (7, 5, 3), (3, 9, 4), (1, 1, 3)])
def test_round_trip(rng: np.random.Generator, shape: tuple[int, ...]) -> None:
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    decoded = read_png(png_bytes(image))
    np.testing.assert_array_equal(decoded, image.reshape(shape[0], shape[1], -1))


def test_bool_image_becomes_black_and_white() -> None:
    mask = np.eye(4, dtype=bool)
    np.testing.assert_array_equal(read_png(png_bytes(mask))[..., 0], mask.astype(np.uint8) * 255)


def test_write_png_and_compression_levels(tmp_path: Path) -> None:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    path = write_png(tmp_path / "x.png", image)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(png_bytes(image, compression=0)) > len(data)
    # the IDAT payload is a valid zlib stream of height * (1 + 3 * width) bytes
    start = data.index(b"IDAT") + 4
    assert len(zlib.decompressobj().decompress(data[start:])) == 64 * (1 + 64 * 3)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((0, 4), np.uint8),
        np.zeros((2, 2, 2, 3), np.uint8),
    ],
)
def test_refuses_what_it_cannot_encode(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        png_bytes(bad)


def test_refuses_bad_compression() -> None:
    with pytest.raises(ValueError, match="compression"):
        png_bytes(np.zeros((2, 2), np.uint8), compression=11)
