"""Lesion detection, Dice (MONAI), volume difference and threshold choice on hand-made masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedshift.model.metrics import (
    best_threshold,
    case_metrics,
    dice,
    lesion_counts,
    mean_metrics,
    volume_difference,
)


def _two_lesions() -> np.ndarray:
    truth = np.zeros((20, 20, 20), bool)
    truth[2:7, 2:4, 2:4] = True  # lesion A: 5 x 2 x 2 = 20 voxels
    truth[12:16, 12:16, 12:16] = True  # lesion B: 64 voxels
    return truth


def test_one_lesion_detected_at_20_percent_one_missed() -> None:
    truth = _two_lesions()
    pred = np.zeros_like(truth)
    pred[2:3, 2:4, 2:4] = True  # 4 of lesion A's 20 voxels: 20 % overlap
    counts = lesion_counts(pred, truth, overlap=0.1)
    assert (counts.n_true, counts.n_pred, counts.n_detected) == (2, 1, 1)
    assert counts.recall == 0.5
    assert counts.precision == 1.0
    assert counts.f1 == pytest.approx(2 / 3)


def test_overlap_below_ten_percent_is_a_miss_and_a_false_positive() -> None:
    truth = _two_lesions()
    pred = np.zeros_like(truth)
    pred[12, 12, 12] = True  # 1 of 64 voxels of lesion B ...
    pred[11, 11:14, 11:14] = True  # ... in a 10-voxel component: 1/64 < 10 %, 1/10 >= 10 %
    counts = lesion_counts(pred, truth, overlap=0.1)
    assert counts.n_detected == 0 and counts.recall == 0.0
    assert counts.n_pred == 1 and counts.precision == 1.0
    far = np.zeros_like(truth)
    far[18, 18, 18] = True
    assert lesion_counts(far, truth).precision == 0.0


def test_connectivity_changes_what_is_one_lesion() -> None:
    diagonal = np.zeros((5, 5, 5), bool)
    diagonal[1, 1, 1] = diagonal[2, 2, 2] = True
    assert lesion_counts(diagonal, diagonal, connectivity=26).n_true == 1
    assert lesion_counts(diagonal, diagonal, connectivity=6).n_true == 2


def test_empty_cases_are_defined() -> None:
    empty = np.zeros((4, 4, 4), bool)
    counts = lesion_counts(empty, empty)
    assert counts.precision == counts.recall == counts.f1 == 1.0
    assert dice(empty, empty) == 1.0


def test_dice_matches_its_definition() -> None:
    truth = _two_lesions()
    pred = np.zeros_like(truth)
    pred[2:7, 2:4, 2:4] = True  # all of A (20 voxels), none of B (64)
    assert dice(pred, truth) == pytest.approx(2 * 20 / (20 + 84))


def test_volume_difference_in_ml_and_percent() -> None:
    truth = np.zeros((10, 10, 10), bool)
    truth[:5, :4] = True  # 200 voxels of 27 mm^3 = 5.4 mL
    pred = np.zeros_like(truth)
    pred[:5, :2] = True  # 100 voxels
    ml, percent = volume_difference(pred, truth, (3.0, 3.0, 3.0))
    assert ml == pytest.approx(2.7)
    assert percent == pytest.approx(50.0)
    assert math.isnan(volume_difference(pred, np.zeros_like(truth), (1, 1, 1))[1])


def test_case_metrics_and_means_skip_nan() -> None:
    truth = _two_lesions()
    m = case_metrics(truth, truth, (1.0, 1.0, 1.0))
    assert m["dice"] == pytest.approx(1.0) and m["lesion_f1"] == 1.0 and m["avd"] == 0.0
    means = mean_metrics([{"avd_percent": 10.0}, {"avd_percent": math.nan}])
    assert means == {"avd_percent": 10.0, "n_cases": 2.0}


def test_threshold_tuning_picks_a_cut_between_background_and_lesion() -> None:
    rng = np.random.default_rng(0)
    truth = torch.as_tensor(_two_lesions())
    noise = torch.as_tensor(rng.uniform(-0.04, 0.04, truth.shape), dtype=torch.float32)
    prob = torch.where(truth, 0.35, 0.15) + noise  # lesion ~0.35, background ~0.15
    grid = [round(0.05 * i, 2) for i in range(1, 20)]
    cut, score = best_threshold([prob], [truth], grid)
    assert 0.2 <= cut <= 0.3
    assert score == pytest.approx(1.0)
    assert best_threshold([prob], [truth], [0.5])[1] == pytest.approx(0.0)
