"""A site's statistics under the global model: what it puts into secure aggregation.

For each usable training case the site runs the global model's feature extractor ``g``
over the preprocessed volume (sliding windows of the training patch size, blended as in
evaluation, so the embeddings are those the model sees at inference), samples voxel
embeddings per class inside the brain mask (lesion / background where the case has a
label, unconditional otherwise), and adds the case's brain-intensity histogram (of the
z-scored image) and, for labelled cases, its lesion load. The sum over cases is one
:class:`~fedshift.shift.stats.SiteStatistics`: it leaves the site only masked, inside a
secure sum over >= 3 sites.

Alongside, for labelled cases, the site measures how well the global model agrees with its
labels (mean Dice, signed volume bias): two scalars it may report for shift diagnosis
(:func:`fedshift.shift.diagnosis.measure`); they are not summed.

Scale: every entry is a count or a sum over sampled voxels, at most
``n_cases * 2 * samples_per_class`` embeddings with values of order 1 (normalised and
activated features) and ``n_cases * brain voxels`` intensity counts (~1.5e6 per 1 mm case):
far below the default clip of 2**30 of :class:`~fedshift.secagg.config.SecAggConfig`
with 24 fractional bits (511 sites of headroom). :func:`clip_headroom` says how close a
vector comes.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from fedshift.data.masks import head_mask
from fedshift.data.nifti import read_volume
from fedshift.model.config import PreprocessConfig, SegConfig
from fedshift.model.data import derive_seed
from fedshift.model.metrics import dice
from fedshift.model.network import SegNet
from fedshift.model.preprocess import PreprocessCache, n4_correct
from fedshift.secagg.config import SecAggConfig
from fedshift.shift import descriptors as desc
from fedshift.shift.diagnosis import signed_volume_bias
from fedshift.shift.intensity import apply as apply_intensity_map
from fedshift.shift.stats import SiteStatistics, StatsLayout, case_statistics, sample_voxels


@dataclass(frozen=True, eq=False)
class LocalStatistics:
    """A site's statistics and its agreement with the global model. Stays at the site.

    Attributes
    ----------
    stats : SiteStatistics
        Sum over the site's usable training cases; only its secure sum leaves the site.
    dice : float or None
        Mean voxel Dice of the global model (at ``eval.threshold``) on labelled cases;
        ``None`` without labelled cases. A diagnosis scalar the site may report.
    volume_bias : float or None
        ``(label volume - predicted volume) / predicted volume`` over labelled cases (NaN
        when nothing is predicted); ``None`` without labelled cases.
    rows : family -> one dict of descriptors per case (:mod:`fedshift.shift.descriptors`),
        for the site's own report; never sent.
    samples : (N, F) a few sampled embeddings per class per case, for the site's own
        report (2-D projection); never sent.
    sample_labels : (N,) int, 1 lesion, 0 background, -1 unlabelled case
    """

    stats: SiteStatistics
    dice: float | None
    volume_bias: float | None
    rows: dict[str, list[dict[str, float]]]
    samples: np.ndarray
    sample_labels: np.ndarray


@torch.no_grad()
def case_features(
    model: SegNet, image: np.ndarray, cfg: SegConfig, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and lesion probability of one preprocessed volume.

    Sliding windows of ``cfg.train.patch_size`` (multiples of the network's divisor;
    smaller volumes are padded) blended with ``cfg.eval`` settings; ``f`` is affine, so the
    head applied to the blended embeddings gives the blended logits of evaluation.

    Parameters
    ----------
    image : np.ndarray, shape (X, Y, Z), the preprocessed (z-scored) image

    Returns
    -------
    features : np.ndarray, shape (F, X, Y, Z), float32
    prob : np.ndarray, shape (X, Y, Z), float32, softmax probability of the lesion class
    """
    was_training = model.training
    model.eval()
    try:
        x = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)[None, None]
        feats = sliding_window_inference(
            x.to(device),
            roi_size=tuple(cfg.train.patch_size),
            sw_batch_size=cfg.eval.sw_batch_size,
            predictor=model.features,
            overlap=cfg.eval.sw_overlap,
            mode=cfg.eval.sw_mode,
            device=torch.device("cpu"),
        )
        feats = torch.as_tensor(feats).as_subclass(torch.Tensor).float()
        logits = model.head(feats.to(device)).float()
        prob = torch.softmax(logits, dim=1)[0, 1].to("cpu")
        return feats[0].numpy(), prob.numpy()
    finally:
        model.train(was_training)


def _label(item: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray | None:
    if "label" not in item:
        return None
    label = read_volume(item["label"]).as_float32() > 0.5
    if label.shape != shape:
        raise ValueError(
            f"case {item.get('case')!r}: label shape {label.shape} differs from image {shape}"
        )
    return label


def appearance_of(
    item: dict[str, Any],
    image_brain: np.ndarray,
    zooms: tuple[float, ...],
    preprocess: PreprocessConfig,
) -> dict[str, float]:
    """Acquisition descriptors of one case's raw image (``item["image"]``, read again:
    acquisition is measured before any correction) within the preprocessing brain mask.
    The contrast is read after N4 with ``preprocess``'s N4 settings, whether or not the
    preprocessing itself applies N4 (``preprocess.n4``)."""
    raw = read_volume(item["image"]).as_float32()
    if raw.shape != image_brain.shape:
        raise ValueError(
            f"case {item.get('case')!r}: image shape {raw.shape} differs from its "
            f"preprocessed mask {image_brain.shape}"
        )
    head = head_mask(raw)
    corrected = n4_correct(raw, head, zooms, preprocess)
    return desc.appearance(raw, corrected, image_brain, head, zooms)


def cached_appearance(
    item: dict[str, Any],
    image_brain: np.ndarray,
    zooms: tuple[float, ...],
    cache: PreprocessCache,
) -> dict[str, float]:
    """:func:`appearance_of`, kept beside the preprocessing cache (an image does not
    change between statistics rounds; its key covers its content and the preprocessing
    settings that made the brain mask)."""
    name = f"{cache.key(item['image'])}-v{desc.APPEARANCE_VERSION}.json"
    path = cache.cache_dir / "descriptors" / name
    if path.is_file():
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    values = appearance_of(item, image_brain, zooms, cache.cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(values))
    tmp.replace(path)
    return values


def case_descriptors(
    item: dict[str, Any],
    image_brain: np.ndarray,
    predicted: np.ndarray,
    label: np.ndarray | None,
    zooms: tuple[float, ...],
    cache: PreprocessCache,
) -> dict[str, dict[str, float]]:
    """Shift descriptors of one case, per family (annotation only with a label).

    ``image_brain`` is the preprocessing brain mask; acquisition descriptors come from
    the raw image (:func:`cached_appearance`: computed once per image and settings).
    """
    out = {
        "acquisition": cached_appearance(item, image_brain, zooms, cache),
        "population": desc.population(predicted, zooms),
    }
    if label is not None:
        out["annotation"] = desc.annotation(label, predicted, zooms)
    return out


def site_statistics(
    model: SegNet,
    items: Sequence[dict[str, Any]],
    cache: PreprocessCache,
    cfg: SegConfig,
    device: torch.device,
    *,
    samples_per_class: int,
    seed: int,
    layout: StatsLayout | None = None,
    threshold: float | None = None,
) -> LocalStatistics:
    """The site's statistics over ``items`` under ``model`` (the global weights).

    Parameters
    ----------
    model : SegNet holding the global weights (its mode is restored afterwards)
    items : the site's usable training items (``{"case", "image", "label"?}``)
    cache : the site's preprocessing cache (the same images training sees)
    cfg : the site's segmentation settings (patch size, sliding window, threshold)
    device : where ``model`` runs
    samples_per_class : embeddings sampled per class per case, without replacement
    seed : the site's seed for this round; case ``c`` samples with
        ``derive_seed(seed, crc32(c))``, so the result does not depend on item order
    layout : the federation's vector layout (default: ``StatsLayout(cfg.model.feat_dim)``)
    threshold : where the model's lesion probability becomes a predicted lesion (the
        population and annotation descriptors, Dice, volume bias): the federation's tuned
        decision threshold; ``cfg.eval.threshold`` when None (before any round tuned one)

    The intensity histogram is of the standard preprocessing; the model sees what training
    sees (intensity-mapped when ``cache`` has a map).

    Returns
    -------
    LocalStatistics (stays at the site)
    """
    if samples_per_class < 1:
        raise ValueError(f"samples_per_class must be >= 1, got {samples_per_class}")
    layout = layout or StatsLayout(cfg.model.feat_dim)
    cut = cfg.eval.threshold if threshold is None else float(threshold)
    total = SiteStatistics.zeros(layout)
    dices, label_ml, pred_ml = [], 0.0, 0.0
    rows: dict[str, list[dict[str, float]]] = {family: [] for family in desc.FAMILIES}
    kept: list[np.ndarray] = []
    kept_labels: list[np.ndarray] = []
    for item in sorted(items, key=lambda i: str(i["case"])):
        pre = cache.get(item["image"], aligned=False)
        seen = pre.image  # what the model sees: mapped in memory, not loaded again
        if cache.intensity_map is not None:
            seen = apply_intensity_map(cache.intensity_map, pre.image, pre.mask).astype(np.float32)
        label = _label(item, pre.image.shape)
        feats, prob = case_features(model, seen, cfg, device)
        rng = np.random.default_rng(derive_seed(seed, zlib.crc32(str(item["case"]).encode())))
        samples = sample_voxels(feats, label, pre.mask, samples_per_class, rng)
        keep = _report_subset(samples[1], len(samples[0]), REPORT_SAMPLES)
        kept.append(samples[0][keep])
        kept_labels.append(np.full(keep.size, -1) if samples[1] is None else samples[1][keep])
        pred = (prob >= cut) & pre.mask
        described = case_descriptors(item, pre.mask, pred, label, pre.zooms, cache)
        for family, values in described.items():
            rows[family].append(values)
        total = total + case_statistics(
            layout, pre.image, pre.mask, label, pre.zooms, samples, described
        )
        if label is not None:
            dices.append(dice(pred, label))
            voxel_ml = float(np.prod(pre.zooms[:3])) / 1000.0
            label_ml += float(label.sum()) * voxel_ml
            pred_ml += float(pred.sum()) * voxel_ml
    feat_dim = layout.feat_dim
    sampled = np.concatenate(kept) if kept else np.zeros((0, feat_dim))
    sampled_labels = np.concatenate(kept_labels) if kept_labels else np.zeros(0, np.int64)
    if not dices:
        return LocalStatistics(total, None, None, rows, sampled, sampled_labels)
    bias = signed_volume_bias(label_ml, pred_ml)
    return LocalStatistics(total, float(np.mean(dices)), bias, rows, sampled, sampled_labels)


#: sampled embeddings per class per case kept for the site's own report
REPORT_SAMPLES = 32


def _report_subset(labels: np.ndarray | None, n: int, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` samples of each class (the samples are already in
    random order); ``2 * per_class`` of an unlabelled case."""
    if labels is None:
        return np.arange(min(n, 2 * per_class))
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in (0, 1)])


def clip_headroom(vector: np.ndarray, config: SecAggConfig) -> float:
    """``max |x| / clip`` of a statistics vector: clipping starts above 1."""
    return float(np.max(np.abs(np.asarray(vector, dtype=np.float64)), initial=0.0) / config.clip)
