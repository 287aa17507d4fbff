"""Pooled DeepJDOT (``fed.strategy=centralized_jdot``): the labelled sites' data and the
unlabelled target in one place, the setting DeepJDOT and Seg-JDOT were designed for and no
hospital federation can run. It is the benchmark's reference point for what OT alignment
against *real* source embeddings buys, compared with FedShift's Gaussians from secure sums.

Each step draws a labelled source batch and a target batch. The loss is the source's
Dice + cross-entropy plus ``seg.align.weight`` times the JDOT cost between target
embeddings and the source batch's embeddings (with their labels), both sides keeping the
gradient as in Damodaran et al. (2018). The class mix follows
:mod:`fedshift.shift.jdot`: target voxels per class of the model's own prediction (at the
threshold tuned on the pooled validation cases), source voxels with the same share of
lesions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from fedshift.model.config import SegConfig
from fedshift.model.data import IMAGE_KEY, LABEL_KEY, train_loader, unlabelled_dataset
from fedshift.model.preprocess import MASK_KEY, PreprocessCache
from fedshift.model.trainer import SiteTrainer, batch_to_device
from fedshift.shift.jdot import jdot_loss, matched_lesion_count, sample_by_class


class PooledJDOTTrainer(SiteTrainer):
    """A pooled-source trainer with a DeepJDOT term towards an unlabelled target.

    Parameters
    ----------
    target_items : the target's training images (labels, if any, are dropped)
    target_cache_dir : preprocessing cache of the target's images
    (others as :class:`~fedshift.model.trainer.SiteTrainer`)
    """

    def __init__(
        self,
        cfg: SegConfig,
        items_train: Sequence[dict[str, Any]],
        items_val: Sequence[dict[str, Any]],
        cache_dir: str | os.PathLike[str],
        *,
        target_items: Sequence[dict[str, Any]],
        target_cache_dir: str | os.PathLike[str],
        device: str | torch.device | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(cfg, items_train, items_val, cache_dir, device, seed)
        target_cache = PreprocessCache(target_cache_dir, cfg.preprocess)
        self.target_dataset = unlabelled_dataset(target_items, cfg, target_cache)
        self.target_threshold = 0.5
        self._target_batches: Iterator[dict[str, Any]] | None = None

    def _run_steps(
        self, steps: int, seed: int, anchor: Mapping[str, torch.Tensor] | None, mu: float
    ) -> float:
        pin = self.device.type == "cuda"
        loader = train_loader(self.target_dataset, self.cfg.train, steps, seed + 1, pin)
        self._target_batches = iter(loader)
        try:
            total = super()._run_steps(steps, seed, anchor, mu)
        finally:
            self._target_batches = None
        # the next round reads the target's labels at the threshold of the current model
        self.target_threshold = self.tune_threshold()
        return total

    def loss(
        self, batch: dict[str, Any], features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        supervised = super().loss(batch, features, logits)
        if self._target_batches is None:
            return supervised
        align = self.cfg.align
        target = batch_to_device(next(self._target_batches), self.device)
        t_features = self.model.features(target[IMAGE_KEY])
        t_prob = torch.softmax(self.model.head(t_features).detach(), dim=1)[:, 1:2]
        x, x_classes, x_lesions = sample_by_class(
            t_features,
            (t_prob >= self.target_threshold).float(),
            target[MASK_KEY],
            align.n_voxels,
            align.lesion_fraction,
        )
        n_lesion = matched_lesion_count(align.n_reference, x_lesions, len(x_classes))
        source, source_classes, _ = sample_by_class(
            features,
            batch[LABEL_KEY],
            batch[MASK_KEY],
            align.n_reference,
            n_lesion / align.n_reference,
        )
        head = self.model.f
        term, _ = jdot_loss(
            x,
            head.weight.reshape(head.out_channels, -1),
            head.bias,
            source,
            source_classes,
            align,
        )
        return supervised + align.weight * term
