"""Segmentation metrics of one case: voxel Dice, lesion-wise detection, volume difference.

Dice comes from ``monai.metrics.compute_dice`` only (the one Dice of the project).
Lesions are connected components (``scipy.ndimage.label``); a true lesion is detected
when at least ``overlap`` of its voxels are predicted, and a predicted lesion is a true
positive when at least ``overlap`` of its voxels are lesion. Per-case metrics stay at
the site; only means over cases are reported to the federation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_dice
from scipy import ndimage

_RANK = {6: 1, 18: 2, 26: 3}


@dataclass(frozen=True)
class LesionCounts:
    """Lesion-wise detection of one case.

    ``precision`` is 1 when nothing is predicted and ``recall`` is 1 when there is no
    true lesion (nothing was missed), so both are always defined; ``f1`` is their
    harmonic mean (0 when both are 0).
    """

    n_true: int
    n_pred: int
    n_detected: int  # true lesions hit by >= overlap of their voxels
    n_pred_correct: int  # predicted lesions with >= overlap of their voxels on true lesion

    @property
    def precision(self) -> float:
        return self.n_pred_correct / self.n_pred if self.n_pred else 1.0

    @property
    def recall(self) -> float:
        return self.n_detected / self.n_true if self.n_true else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def components(mask: np.ndarray, connectivity: int = 26) -> tuple[np.ndarray, int]:
    """Connected components of a (X, Y, Z) bool mask with 6, 18 or 26 neighbours."""
    if connectivity not in _RANK:
        raise ValueError(f"connectivity={connectivity!r} is invalid: expected 6, 18 or 26")
    structure = ndimage.generate_binary_structure(3, _RANK[connectivity])
    labels, n = ndimage.label(mask, structure=structure)
    return labels, int(n)


def _hit_count(labels: np.ndarray, n: int, other: np.ndarray, overlap: float) -> int:
    """How many of the ``n`` components of ``labels`` have >= ``overlap`` of their voxels
    in ``other``."""
    if n == 0:
        return 0
    size = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    inside = np.bincount(labels[other].ravel(), minlength=n + 1)[1:]
    return int(np.sum(inside >= overlap * size))


def lesion_counts(
    pred: np.ndarray, truth: np.ndarray, overlap: float = 0.1, connectivity: int = 26
) -> LesionCounts:
    """Lesion-wise detection of binary (X, Y, Z) masks ``pred`` and ``truth``."""
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    true_labels, n_true = components(truth, connectivity)
    pred_labels, n_pred = components(pred, connectivity)
    return LesionCounts(
        n_true=n_true,
        n_pred=n_pred,
        n_detected=_hit_count(true_labels, n_true, pred, overlap),
        n_pred_correct=_hit_count(pred_labels, n_pred, truth, overlap),
    )


def dice(pred: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> float:
    """Voxel Dice of binary (X, Y, Z) masks by ``monai.metrics.compute_dice``; 1 when both
    are empty, 0 when only one is."""
    return float(
        dice_batch(torch.as_tensor(np.asarray(pred))[None], torch.as_tensor(np.asarray(truth)))[0]
    )


def dice_batch(preds: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Dice of K binary predictions (K, X, Y, Z) against one truth (X, Y, Z) -> (K,)
    (``monai.metrics.compute_dice``, empty-vs-empty = 1)."""
    y_pred = preds.to(torch.float32).unsqueeze(1)
    y = truth.to(torch.float32).expand_as(preds).unsqueeze(1)
    return compute_dice(y_pred, y, include_background=True, ignore_empty=False)[:, 0]


def volume_difference(
    pred: np.ndarray, truth: np.ndarray, zooms: Sequence[float]
) -> tuple[float, float]:
    """Absolute lesion-volume difference: (mL, percent of the true volume; NaN when the
    truth is empty)."""
    voxel_ml = float(np.prod(np.asarray(zooms[:3], dtype=np.float64))) / 1000.0
    v_pred = float(np.count_nonzero(pred)) * voxel_ml
    v_true = float(np.count_nonzero(truth)) * voxel_ml
    diff = abs(v_pred - v_true)
    return diff, (100.0 * diff / v_true if v_true > 0 else math.nan)


def case_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    zooms: Sequence[float],
    overlap: float = 0.1,
    connectivity: int = 26,
) -> dict[str, float]:
    """All metrics of one case from binary (X, Y, Z) masks; voxel sizes in mm."""
    counts = lesion_counts(pred, truth, overlap, connectivity)
    avd_ml, avd_percent = volume_difference(pred, truth, zooms)
    return {
        "dice": dice(pred, truth),
        "lesion_precision": counts.precision,
        "lesion_recall": counts.recall,
        "lesion_f1": counts.f1,
        "avd": avd_ml,
        "avd_percent": avd_percent,
        "n_true_lesions": float(counts.n_true),
        "n_pred_lesions": float(counts.n_pred),
    }


def mean_metrics(per_case: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over cases (NaNs skipped; NaN if all are), plus ``n_cases``."""
    out: dict[str, float] = {}
    if per_case:
        for key in per_case[0]:
            values = np.asarray([case[key] for case in per_case], dtype=np.float64)
            finite = values[np.isfinite(values)]
            out[key] = float(finite.mean()) if finite.size else math.nan
    out["n_cases"] = float(len(per_case))
    return out


def threshold_scores(prob: torch.Tensor, truth: torch.Tensor, grid: Sequence[float]) -> np.ndarray:
    """Dice of ``prob >= t`` against ``truth`` for each ``t`` in ``grid``.

    Parameters
    ----------
    prob : (X, Y, Z) lesion probabilities in [0, 1].
    truth : (X, Y, Z) binary truth.

    Returns (len(grid),) float64.
    """
    return np.asarray(
        [float(dice_batch((prob >= float(cut)).unsqueeze(0), truth)[0]) for cut in grid],
        dtype=np.float64,
    )


def pick_threshold(mean_scores: Sequence[float], grid: Sequence[float]) -> tuple[float, float]:
    """The grid value with the highest score; ties go to the one closest to 0.5.
    Returns (threshold, score)."""
    if len(mean_scores) != len(grid) or not len(grid):
        raise ValueError(f"need one score per threshold, got {len(mean_scores)} and {len(grid)}")
    best = min(range(len(grid)), key=lambda i: (-float(mean_scores[i]), abs(float(grid[i]) - 0.5)))
    return float(grid[best]), float(mean_scores[best])


def best_threshold(
    probs: Sequence[torch.Tensor], truths: Sequence[torch.Tensor], grid: Sequence[float]
) -> tuple[float, float]:
    """The cut of lesion probability that maximises the mean Dice over cases.

    Parameters
    ----------
    probs : per case, (X, Y, Z) lesion probabilities in [0, 1].
    truths : per case, (X, Y, Z) binary truth.
    grid : candidate thresholds; ties go to the one closest to 0.5.

    Returns (threshold, mean Dice at it).
    """
    if not probs or len(probs) != len(truths):
        raise ValueError(f"need one truth per probability map, got {len(probs)} and {len(truths)}")
    total = sum(threshold_scores(p, t, grid) for p, t in zip(probs, truths, strict=True))
    return pick_threshold(np.asarray(total) / len(probs), grid)
