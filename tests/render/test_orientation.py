"""fedshift.render.orientation: axis letters from the affine, letters at a panel's edges."""

from __future__ import annotations

import numpy as np
import pytest
from mri_fixtures import head_phantom

from fedshift.render.mosaic import render_mosaic
from fedshift.render.orientation import MIN_PANEL, _glyph, axis_codes, mark_edges


@pytest.mark.parametrize(
    ("diagonal", "codes"),
    [((1, 1, 1), ("R", "A", "S")), ((-1, -1, 1), ("L", "P", "S")), ((1, 1, -2), ("R", "A", "I"))],
)
def test_axis_codes_of_diagonal_affines(diagonal: tuple, codes: tuple) -> None:
    assert axis_codes(np.diag([*diagonal, 1.0])) == codes


def test_axis_codes_follow_a_permutation_and_the_nearest_axis() -> None:
    permuted = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    assert axis_codes(permuted) == ("P", "S", "R")
    oblique = np.eye(4)
    oblique[:3, :3] = [[0.9, 0.3, 0], [-0.3, 0.9, 0], [0, 0, 1]]  # 18 degrees about z
    assert axis_codes(oblique) == ("R", "A", "S")


@pytest.mark.parametrize(
    "affine",
    [np.zeros((4, 4)), np.full((4, 4), np.nan), np.diag([1.0, 1.0, 0.0, 1.0]), np.eye(3)],
)
def test_axis_codes_of_unusable_affines_are_none(affine: np.ndarray) -> None:
    assert axis_codes(affine) is None


def _letter_at(panel: np.ndarray, letter: str) -> bool:
    """True when ``letter`` (scale 1 or 2) appears in white somewhere in ``panel``."""
    white = panel[..., 0] == 255
    for scale in (1, 2):
        glyph = _glyph(letter, scale)
        h, w = glyph.shape
        for y in range(white.shape[0] - h + 1):
            for x in range(white.shape[1] - w + 1):
                if np.array_equal(white[y : y + h, x : x + w], glyph):
                    return True
    return False


def test_mark_edges_draws_the_four_letters_where_they_belong() -> None:
    panel = np.zeros((80, 80, 3), np.uint8)
    mark_edges(panel, "A", "P", "L", "R")
    assert _letter_at(panel[:20, 25:55], "A") and _letter_at(panel[-20:, 25:55], "P")
    assert _letter_at(panel[25:55, :20], "L") and _letter_at(panel[25:55, -20:], "R")
    small = np.zeros((MIN_PANEL - 1, 80, 3), np.uint8)
    assert mark_edges(small, "A", "P", "L", "R").max() == 0  # too small: left alone


def test_mosaic_letters_follow_the_affine(rng: np.random.Generator) -> None:
    image, label = head_phantom((48, 48, 48), rng)
    ras = render_mosaic(image, label, height=96, gap=0)
    axial, sagittal = ras[:, :96], ras[:, 192:]
    assert _letter_at(axial[:, 70:], "R") and _letter_at(axial[:, :26], "L")
    assert _letter_at(axial[:20], "A") and _letter_at(axial[-20:], "P")
    assert _letter_at(sagittal[:20], "S") and _letter_at(sagittal[:, 70:], "A")
    flipped = render_mosaic(image, label, height=96, gap=0, affine=np.diag([-1, 1, 1, 1.0]))
    assert _letter_at(flipped[:, 70:96], "L") and _letter_at(flipped[:, :26], "R")
    none = render_mosaic(image, label, height=96, gap=0, affine=np.zeros((4, 4)))
    plain = render_mosaic(image, label, height=96, gap=0, markers=False)
    np.testing.assert_array_equal(none, plain)  # axes that cannot be named: no letters
