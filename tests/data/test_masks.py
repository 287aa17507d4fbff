"""fedshift.data.masks: head and brain masks of phantoms."""

from __future__ import annotations

import numpy as np
import pytest
from mri_fixtures import head_phantom

from fedshift.data.masks import brain_mask, head_mask, otsu_threshold, safe_zooms


@pytest.fixture
def image() -> np.ndarray:
    return head_phantom((32, 32, 32), np.random.default_rng(0))[0]


def test_head_holds_the_brain_and_lesions(image: np.ndarray) -> None:
    _, label = head_phantom((32, 32, 32), np.random.default_rng(0))
    head, brain = head_mask(image), brain_mask(image, (1.0, 1.0, 1.0))
    assert brain.sum() < head.sum() and not (brain & ~head).any()
    assert brain[label > 0].all()
    assert not head[0, 0, 0]  # a corner is air


def test_head_cut_by_the_field_of_view_keeps_its_border(image: np.ndarray) -> None:
    cut = image[:, :, 6:]  # the head now touches the bottom of the volume
    bright = cut[:, :, 0] > otsu_threshold(cut.ravel())
    assert head_mask(cut)[:, :, 0][bright].all()


@pytest.mark.parametrize("zooms", [(0.0, np.nan, -1.0), (0.1, 0.1, 0.1), (3.0, 3.0, 3.0)])
def test_any_voxel_size_gives_a_mask_inside_the_head(image: np.ndarray, zooms: tuple) -> None:
    brain = brain_mask(image, zooms)
    assert brain.any() and not (brain & ~head_mask(image)).any()


def test_blank_image_gives_empty_masks() -> None:
    assert not head_mask(np.zeros((8, 8, 8))).any()
    assert not brain_mask(np.zeros((8, 8, 8)), (1, 1, 1)).any()


def test_safe_zooms() -> None:
    np.testing.assert_array_equal(safe_zooms((2.0, 0.0, np.nan)), [2.0, 1.0, 1.0])
    np.testing.assert_array_equal(safe_zooms((2.0,)), [2.0, 1.0, 1.0])
