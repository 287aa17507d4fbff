"""fedshift.readiness.labels: label values, position, raters' agreement, statistics."""

from __future__ import annotations

import numpy as np
import pytest

from fedshift.readiness.labels import (
    bounding_box,
    dice,
    label_stats,
    label_value_findings,
    outside_findings,
    outside_fraction,
    pairwise_dice,
    rater_summary,
)


def _label(*values: float, dtype: type = np.float32) -> np.ndarray:
    label = np.zeros((8, 8, 8), dtype=dtype)
    for i, v in enumerate(values):
        label[i, i, i] = v
    return label


@pytest.mark.parametrize(
    "label",
    [_label(1, 2, dtype=np.uint8), _label(1, 0.5), _label(1, -1), _label(255, dtype=np.uint8)],
    ids=["two", "fraction", "negative", "255"],
)
def test_label_values(label: np.ndarray) -> None:
    found = label_value_findings(label, "l")
    assert [f.code for f in found] == ["label_values"] and found[0].severity == "error"


def test_label_values_lists_a_few_values() -> None:
    label = np.arange(512, dtype=np.int16).reshape(8, 8, 8)
    message = label_value_findings(label, "l")[0].message
    assert "2, 3, 4, 5, 6 and 505 more" in message


def test_empty_label_is_a_warning() -> None:
    found = label_value_findings(np.zeros((4, 4, 4), np.uint8), "l")
    assert [(f.code, f.severity) for f in found] == [("empty_label", "warning")]


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_binary_labels_of_any_dtype_pass(dtype: type) -> None:
    assert label_value_findings(_label(1, 1, dtype=dtype), "l") == []


def test_outside_fraction_on_strided_mask() -> None:
    label = np.zeros((8, 8, 8), bool)
    label[0:2, 0:2, 0:2] = True  # 8 voxels, all in the mask's first strided voxel
    label[6, 6, 6] = True
    mask = np.zeros((4, 4, 4), bool)
    mask[0, 0, 0] = True
    assert outside_fraction(label, mask, step=2) == pytest.approx(1 / 9)
    assert outside_fraction(np.zeros((8, 8, 8), bool), mask, step=2) == 0.0
    assert [f.code for f in outside_findings(0.5, "l")] == ["label_outside_brain"]
    assert outside_findings(0.04, "l") == []


def test_dice_properties(rng: np.random.Generator) -> None:
    a = rng.random((8, 8, 8)) > 0.5
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    b = rng.random((8, 8, 8)) > 0.5
    assert dice(a, b) == pytest.approx(dice(b, a))


def test_rater_summary_flags_disagreement() -> None:
    a = np.zeros((8, 8, 8), bool)
    a[2:5, 2:5, 2:5] = True
    shifted = np.roll(a, 2, axis=0)
    pairs = pairwise_dice({"main": a, "r1": a.copy(), "r2": shifted})
    assert set(pairs) == {"main|r1", "main|r2", "r1|r2"}
    summary, found = rater_summary(pairs, ["main", "r1", "r2"], "l", min_dice=0.5)
    assert summary["min_dice"] == pytest.approx(1 / 3)
    assert summary["mean_dice"] == pytest.approx((1 + 2 / 3) / 3)
    assert [(f.code, f.severity) for f in found] == [("rater_disagreement", "warning")]
    _, none = rater_summary({"main|r1": 0.8}, ["main", "r1"], "l")
    assert none == []


def test_label_stats_counts_lesions_and_volume() -> None:
    label = np.zeros((10, 10, 10), bool)
    label[1:3, 1:3, 1:3] = True  # 8 voxels
    label[6, 6, 6] = True
    label[7, 7, 7] = True  # touches the previous one diagonally: same lesion (26-connected)
    stats = label_stats(label, (2.0, 1.0, 1.0))
    assert stats["n_lesions"] == 2
    assert stats["lesion_volume_ml"] == pytest.approx(10 * 2 / 1000)
    assert stats["max_lesion_ml"] == pytest.approx(0.016)
    assert stats["lesion_to_nawm"] is None


def test_label_stats_contrast_to_white_matter() -> None:
    image = np.full((8, 8, 8), 100.0, dtype=np.float32)
    label = np.zeros((8, 8, 8), bool)
    label[3:5, 3:5, 3:5] = True
    image[label] = 250.0
    stats = label_stats(label, (1, 1, 1), image, np.ones((8, 8, 8), bool))
    assert stats["lesion_to_nawm"] == pytest.approx(2.5)


def test_bounding_box() -> None:
    mask = np.zeros((6, 7, 8), bool)
    assert bounding_box(mask) is None
    mask[1, 2, 3] = mask[4, 2, 5] = True
    assert bounding_box(mask) == (slice(1, 5), slice(2, 3), slice(3, 6))
