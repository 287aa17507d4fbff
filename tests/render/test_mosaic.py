"""fedshift.render.mosaic: orthogonal slices, aspect, windowing, label overlay."""

from __future__ import annotations

import numpy as np
import pytest
from mri_fixtures import head_phantom, read_png

from fedshift.render.mosaic import label_center, render_mosaic, window
from fedshift.render.png import png_bytes


def test_mosaic_is_rgb_uint8_with_three_panels(rng: np.random.Generator) -> None:
    image, label = head_phantom((24, 24, 24), rng)
    rgb = render_mosaic(image, label, (1.0, 1.0, 1.0), height=48, gap=2)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape == (48, 3 * 48 + 2 * 2, 3)
    assert read_png(png_bytes(rgb)).shape == rgb.shape


def test_label_is_drawn_in_colour(rng: np.random.Generator) -> None:
    image, label = head_phantom((24, 24, 24), rng)
    center = label_center(label)
    assert center is not None and label[center] == 1
    with_label = render_mosaic(image, label, center=center, color=(255, 0, 0), alpha=1.0)
    without = render_mosaic(image, None, center=center)
    red = (with_label[..., 0] == 255) & (with_label[..., 1] == 0) & (with_label[..., 2] == 0)
    assert red.any()
    gray = without[..., 0] == without[..., 1]
    assert gray.all()


def test_voxel_aspect_is_respected() -> None:
    image = np.ones((20, 20, 10), dtype=np.float32)
    full = np.ones(image.shape, dtype=np.uint8)  # paint every voxel: panels show as red

    def coronal_rows(zooms: tuple[float, float, float]) -> tuple[int, int]:
        rgb = render_mosaic(image, full, zooms, height=None, color=(255, 0, 0), alpha=1.0)
        coronal = rgb[:, 22:42, 0] == 255  # axial panel: 20 px wide, then a 2 px gap
        return rgb.shape[0], int(coronal.any(axis=1).sum())

    # the axial panel is 20 mm tall in both; coronal 10 mm with 1 mm slices, 20 mm with 2 mm
    assert coronal_rows((1, 1, 1)) == (20, 10)
    assert coronal_rows((1, 1, 2)) == (20, 20)


def test_window_clips_to_percentiles() -> None:
    values = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    values[0, 0, 0] = 1e9  # one extreme voxel does not darken the rest
    windowed = window(values, (1, 99))
    assert windowed.max() == 255 and windowed[5, 5, 5] > 100


@pytest.mark.parametrize("image", [np.zeros((8, 8, 8)), np.full((8, 8, 8), np.nan)])
def test_blank_images_render_black(image: np.ndarray) -> None:
    assert render_mosaic(image, zooms=(0, -1, np.nan), markers=False).max() == 0
    marked = render_mosaic(image, zooms=(0, -1, np.nan))  # only the letters: white on black
    assert set(np.unique(marked).tolist()) == {0, 255}


def test_refuses_non_3d_and_mismatched_label() -> None:
    with pytest.raises(ValueError, match="3D"):
        render_mosaic(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="label shape"):
        render_mosaic(np.zeros((8, 8, 8)), np.zeros((8, 8, 7)))


def test_label_center_of_empty_label_is_none() -> None:
    assert label_center(np.zeros((4, 4, 4))) is None
