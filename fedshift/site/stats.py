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

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from fedshift.data.nifti import read_volume
from fedshift.errors import DataError
from fedshift.model.config import SegConfig
from fedshift.model.data import derive_seed
from fedshift.model.metrics import dice
from fedshift.model.network import SegNet
from fedshift.model.preprocess import PreprocessCache, Preprocessed
from fedshift.secagg.config import SecAggConfig
from fedshift.shift.descriptors import FAMILIES
from fedshift.shift.diagnosis import signed_volume_bias
from fedshift.shift.embeddings import sample_voxels
from fedshift.shift.intensity import apply as apply_intensity_map
from fedshift.shift.stats import SiteStatistics, StatsLayout, case_statistics
from fedshift.site.descriptors import case_descriptors


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
    rows : family -> one dict of descriptors per case (:mod:`fedshift.shift.case_descriptors`),
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
        raise DataError(
            "shape_mismatch",
            f"case {item.get('case')!r}: label shape {label.shape} differs from image {shape}; "
            "run `fedshift readiness` on the site folder",
            str(item["label"]),
        )
    return label


@dataclass(frozen=True, eq=False)
class CaseContribution:
    """What one case adds to its site's :class:`LocalStatistics`. Stays at the site.

    Attributes
    ----------
    stats : SiteStatistics
        This case's statistics alone (:func:`~fedshift.shift.stats.case_statistics`).
    descriptors : family -> this case's descriptors
        (:func:`~fedshift.site.descriptors.case_descriptors`)
    samples : (n, F) sampled embeddings kept for the site's own report
    sample_labels : (n,) int, 1 lesion, 0 background, -1 unlabelled case
    dice : Dice of the prediction against the label; ``None`` without a label
    label_ml, pred_ml : lesion volume (mL) of the label and of the prediction (0 without
        a label)
    """

    stats: SiteStatistics
    descriptors: dict[str, dict[str, float]]
    samples: np.ndarray
    sample_labels: np.ndarray
    dice: float | None
    label_ml: float
    pred_ml: float


def model_input(pre: Preprocessed, cache: PreprocessCache) -> np.ndarray:
    """The image the model sees, shape (X, Y, Z): the preprocessed (z-scored) image
    ``pre.image``, mapped in memory through ``cache.intensity_map`` when the cache has
    one (what training sees), not loaded again."""
    if cache.intensity_map is None:
        return pre.image
    return apply_intensity_map(cache.intensity_map, pre.image, pre.mask).astype(np.float32)


def case_rng(seed: int, case: object) -> np.random.Generator:
    """The sampling stream of one case: ``derive_seed(seed, crc32(str(case)))``, so a
    case draws the same voxels whatever the order of the site's items."""
    return np.random.default_rng(derive_seed(seed, zlib.crc32(str(case).encode())))


def report_samples(
    samples: tuple[np.ndarray, np.ndarray | None],
) -> tuple[np.ndarray, np.ndarray]:
    """The sampled embeddings kept for the site's own report.

    Parameters
    ----------
    samples : (embeddings (N, F), labels (N,) or None) as :func:`sample_voxels` draws them

    Returns
    -------
    embeddings : (n, F) the first :data:`REPORT_SAMPLES` of each class (of an unlabelled
        case, twice as many)
    labels : (n,) int, 1 lesion, 0 background, -1 unlabelled case
    """
    embeddings, labels = samples
    keep = _report_subset(labels, len(embeddings), REPORT_SAMPLES)
    return embeddings[keep], np.full(keep.size, -1) if labels is None else labels[keep]


def label_agreement(
    pred: np.ndarray, label: np.ndarray, zooms: tuple[float, ...]
) -> tuple[float, float, float]:
    """How the global model's prediction agrees with one case's label.

    Parameters
    ----------
    pred, label : (X, Y, Z) bool, the predicted and the labelled lesion voxels
    zooms : voxel sizes (mm)

    Returns
    -------
    dice : voxel Dice
    label_ml, pred_ml : lesion volume (mL) of the label and of the prediction
    """
    voxel_ml = float(np.prod(zooms[:3])) / 1000.0
    return dice(pred, label), float(label.sum()) * voxel_ml, float(pred.sum()) * voxel_ml


def case_contribution(
    model: SegNet,
    item: dict[str, Any],
    cache: PreprocessCache,
    cfg: SegConfig,
    device: torch.device,
    *,
    layout: StatsLayout,
    samples_per_class: int,
    seed: int,
    threshold: float,
) -> CaseContribution:
    """One case's statistics, descriptors, report samples and label agreement.

    Parameters are those of :func:`site_statistics`; ``threshold`` is the decision
    threshold itself (not None). Stays at the site.
    """
    pre = cache.get(item["image"], aligned=False)
    label = _label(item, pre.image.shape)
    seen = model_input(pre, cache)
    feats, prob = case_features(model, seen, cfg, device)
    samples = sample_voxels(feats, label, pre.mask, samples_per_class, case_rng(seed, item["case"]))
    kept, kept_labels = report_samples(samples)
    pred = (prob >= threshold) & pre.mask
    mapped = None if cache.intensity_map is None else seen
    described = case_descriptors(
        item, pre.image, pre.mask, pred, label, pre.zooms, cache, mapped=mapped
    )
    stats = case_statistics(layout, pre.image, pre.mask, label, pre.zooms, samples, described)
    if label is None:
        return CaseContribution(stats, described, kept, kept_labels, None, 0.0, 0.0)
    return CaseContribution(
        stats, described, kept, kept_labels, *label_agreement(pred, label, pre.zooms)
    )


def combine_cases(parts: Sequence[CaseContribution], layout: StatsLayout) -> LocalStatistics:
    """A site's :class:`LocalStatistics` from its cases' contributions, in order.

    The statistics are summed (from zeros, case by case), the descriptor rows and report
    samples gathered; Dice is the mean over labelled cases and the volume bias is that of
    the summed volumes (:func:`~fedshift.shift.diagnosis.signed_volume_bias`), both
    ``None`` without a labelled case. Stays at the site.
    """
    total = SiteStatistics.zeros(layout)
    rows: dict[str, list[dict[str, float]]] = {family: [] for family in FAMILIES}
    dices, label_ml, pred_ml = [], 0.0, 0.0
    for part in parts:
        total = total + part.stats
        for family, values in part.descriptors.items():
            rows[family].append(values)
        if part.dice is not None:
            dices.append(part.dice)
            label_ml += part.label_ml
            pred_ml += part.pred_ml
    sampled = (
        np.concatenate([p.samples for p in parts]) if parts else np.zeros((0, layout.feat_dim))
    )
    sampled_labels = (
        np.concatenate([p.sample_labels for p in parts]) if parts else np.zeros(0, np.int64)
    )
    if not dices:
        return LocalStatistics(total, None, None, rows, sampled, sampled_labels)
    bias = signed_volume_bias(label_ml, pred_ml)
    return LocalStatistics(total, float(np.mean(dices)), bias, rows, sampled, sampled_labels)


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
    sees (intensity-mapped when ``cache`` has a map). Each case is one
    :func:`case_contribution`, in case order; :func:`combine_cases` adds them up.

    Returns
    -------
    LocalStatistics (stays at the site)
    """
    if samples_per_class < 1:
        raise ValueError(f"samples_per_class must be >= 1, got {samples_per_class}")
    layout = layout or StatsLayout(cfg.model.feat_dim)
    cut = cfg.eval.threshold if threshold is None else float(threshold)
    parts = [
        case_contribution(
            model,
            item,
            cache,
            cfg,
            device,
            layout=layout,
            samples_per_class=samples_per_class,
            seed=seed,
            threshold=cut,
        )
        for item in sorted(items, key=lambda i: str(i["case"]))
    ]
    return combine_cases(parts, layout)


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
