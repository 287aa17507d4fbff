"""Evaluation of a site model: sliding-window inference, lesion probability, metrics.

Whole preprocessed volumes are segmented with ``monai.inferers.sliding_window_inference``
using windows of the training patch size; the lesion probability is the softmax's
channel 1, cut at a threshold tuned on the site's validation split.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from fedshift.model.config import SegConfig
from fedshift.model.data import IMAGE_KEY, LABEL_KEY, eval_dataset
from fedshift.model.device import autocast
from fedshift.model.metrics import case_metrics, mean_metrics, pick_threshold, threshold_scores
from fedshift.model.preprocess import PreprocessCache


@dataclass(frozen=True)
class EvalResult:
    """Metrics per case (stay at the site) and their means (may be reported)."""

    per_case: dict[str, dict[str, float]]
    mean: dict[str, float]
    threshold: float


@torch.no_grad()
def predict_proba(
    model: nn.Module, image: torch.Tensor, cfg: SegConfig, device: torch.device
) -> torch.Tensor:
    """Lesion probability of one preprocessed image.

    Parameters
    ----------
    image : (C, X, Y, Z) preprocessed image (any size: windows are padded as needed).

    Returns (X, Y, Z) float32 on the CPU, softmax probability of the lesion class.
    """
    was_training = model.training
    model.eval()
    try:
        plain = torch.as_tensor(image, dtype=torch.float32).as_subclass(torch.Tensor)
        x = plain.unsqueeze(0).to(device)  # (1, C, X, Y, Z), without MONAI metadata
        with autocast(device, cfg.train.amp):
            logits = sliding_window_inference(
                x,
                roi_size=tuple(cfg.train.patch_size),
                sw_batch_size=cfg.eval.sw_batch_size,
                predictor=model,
                overlap=cfg.eval.sw_overlap,
                mode=cfg.eval.sw_mode,
            )
        probs = torch.softmax(torch.as_tensor(logits).float(), dim=1)[0, 1]
        return probs.detach().to("cpu")
    finally:
        model.train(was_training)


def iter_predictions(
    model: nn.Module,
    items: Sequence[dict[str, Any]],
    cache: PreprocessCache,
    cfg: SegConfig,
    device: torch.device,
) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
    """(loaded item, lesion probability (X, Y, Z)) for each item, one volume in memory at a time."""
    dataset = eval_dataset(items, cache)
    for index in range(len(dataset)):
        item = dataset[index]
        yield item, predict_proba(model, item[IMAGE_KEY], cfg, device)


def _truth(item: dict[str, Any]) -> torch.Tensor:
    return torch.as_tensor(item[LABEL_KEY])[0].as_subclass(torch.Tensor) > 0.5


Prediction = tuple[dict[str, Any], torch.Tensor]


def results_from(predictions: Sequence[Prediction], cfg: SegConfig, threshold: float) -> EvalResult:
    """Metrics of already predicted labelled items (from :func:`iter_predictions`)."""
    per_case: dict[str, dict[str, float]] = {}
    for item, prob in predictions:
        pred = (prob >= threshold).numpy()
        zooms = tuple(float(z) for z in item[IMAGE_KEY].pixdim)
        per_case[str(item["case"])] = case_metrics(
            pred, _truth(item).numpy(), zooms, cfg.eval.detection_overlap, cfg.eval.connectivity
        )
    return EvalResult(per_case, mean_metrics(list(per_case.values())), threshold)


def threshold_from(predictions: Sequence[Prediction], cfg: SegConfig) -> tuple[float, float]:
    """The threshold of ``cfg.eval.threshold_grid`` with the best mean Dice over already
    predicted labelled items; (the configured default, NaN) when there are none."""
    grid = cfg.eval.threshold_grid
    if not predictions:
        return cfg.eval.threshold, float(np.nan)
    total = sum(threshold_scores(prob, _truth(item), grid) for item, prob in predictions)
    return pick_threshold(np.asarray(total) / len(predictions), grid)


def predict_labelled(
    model: nn.Module,
    items: Sequence[dict[str, Any]],
    cache: PreprocessCache,
    cfg: SegConfig,
    device: torch.device,
) -> list[Prediction]:
    """Predictions of the labelled ``items`` (unlabelled ones are skipped), all in memory."""
    labelled = [item for item in items if LABEL_KEY in item]
    return list(iter_predictions(model, labelled, cache, cfg, device))


def evaluate_items(
    model: nn.Module,
    items: Sequence[dict[str, Any]],
    cache: PreprocessCache,
    cfg: SegConfig,
    device: torch.device,
    threshold: float,
) -> EvalResult:
    """Metrics of every labelled item (unlabelled ones are skipped) and their means.

    ``mean`` holds dice, lesion_precision, lesion_recall, lesion_f1, avd (mL),
    avd_percent, lesion counts and ``n_cases`` (just ``n_cases = 0`` without labels).
    """
    return results_from(predict_labelled(model, items, cache, cfg, device), cfg, threshold)


def tune_threshold(
    model: nn.Module,
    items: Sequence[dict[str, Any]],
    cache: PreprocessCache,
    cfg: SegConfig,
    device: torch.device,
) -> tuple[float, float]:
    """The threshold of ``cfg.eval.threshold_grid`` with the best mean Dice on labelled
    ``items`` (the validation split). Returns (threshold, mean Dice); (the configured
    default, NaN) when no item has a label."""
    return threshold_from(predict_labelled(model, items, cache, cfg, device), cfg)
