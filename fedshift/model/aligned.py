"""Training with an alignment term against the federation's reference
(``seg.align.method`` ``jdot`` or ``moments``).

:class:`AlignedTrainer` is a :class:`~fedshift.model.trainer.SiteTrainer` whose loss gains
a term on the batch's embeddings: the JDOT cost to samples of the reference's
class-conditional Gaussians (:mod:`fedshift.shift.jdot`) or the per-feature moment
mismatch (:mod:`fedshift.shift.moments`). A site without labels (a target hospital)
trains on that term alone, on brain-centred patches of its own images: unsupervised
domain adaptation, and its update is averaged with everyone else's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from fedshift.model.config import SegConfig
from fedshift.model.data import LABEL_KEY, unlabelled_dataset
from fedshift.model.preprocess import MASK_KEY
from fedshift.model.trainer import SiteTrainer
from fedshift.shift.intensity import IntensityMap
from fedshift.shift.jdot import (
    ReferenceSampler,
    jdot_loss,
    matched_lesion_count,
    sample_by_class,
    sample_embeddings,
)
from fedshift.shift.moments import moment_loss
from fedshift.shift.reference import Reference


class AlignedTrainer(SiteTrainer):
    """A site trainer with an alignment term.

    Parameters
    ----------
    reference : the federation's reference (the latest broadcast)
    method : ``"jdot"`` or ``"moments"``
    threshold : lesion-probability threshold of the model's own labels on a site without
        labels: the decision threshold the federation tuned (the one its evaluation uses);
        0.5 reads them off a model tuned elsewhere (docs/results/jdot-offline.md: seed 1's
        federation tuned 0.26, and self-training at 0.5 erased the target's lesions, Dice
        0.34 -> 0.04)
    (others as :class:`~fedshift.model.trainer.SiteTrainer`; ``items_train`` may be
    unlabelled)
    """

    def __init__(
        self,
        cfg: SegConfig,
        items_train: Sequence[dict[str, Any]],
        items_val: Sequence[dict[str, Any]],
        cache_dir: str | os.PathLike[str],
        *,
        reference: Reference,
        method: str,
        device: str | torch.device | None = None,
        seed: int | None = None,
        intensity_map: IntensityMap | None = None,
        threshold: float = 0.5,
    ) -> None:
        if method not in ("jdot", "moments"):
            raise ValueError(f"method must be 'jdot' or 'moments', got {method!r}")
        background = reference.gaussians.get("background", reference.gaussians.get("all"))
        if background is None:
            raise ValueError("the reference holds no embedding Gaussian to align to")
        self.reference, self.method, self.background = reference, method, background
        self.labelled = any(LABEL_KEY in item for item in items_train)
        self._last_mass: torch.Tensor | float = 0.0
        self.steps_seen = 0  # labelled steps, for seg.align.every
        self.label_threshold = float(threshold)
        super().__init__(
            cfg, items_train, items_val, cache_dir, device, seed, intensity_map=intensity_map
        )
        self.sampler = ReferenceSampler(reference.gaussians, self.device)

    @property
    def last_mass(self) -> float:
        """Mass the last JDOT coupling moved (read on demand: it waits for the device)."""
        return float(self._last_mass)

    def make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW; at ``seg.align.unlabelled_lr_scale`` times the rate without labels."""
        optimizer = super().make_optimizer()
        if not self.labelled:
            for group in optimizer.param_groups:
                group["lr"] *= self.cfg.align.unlabelled_lr_scale
        return optimizer

    def build_dataset(self, items: Sequence[dict[str, Any]]) -> Any:
        if self.labelled:
            return super().build_dataset(items)
        return unlabelled_dataset(items, self.cfg, self.cache)

    def alignment(
        self, batch: dict[str, Any], features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        """The alignment term of one batch (sampled embeddings inside the brain).

        JDOT draws the batch's voxels per class (the site's labels; without labels, the
        model's own prediction) and the reference with the same class mix."""
        align = self.cfg.align
        if self.method == "moments":
            x = sample_embeddings(features, batch[MASK_KEY], align.n_voxels)
            return moment_loss(x, self.background)
        if self.labelled:
            classes = batch[LABEL_KEY]
        else:
            prob = torch.softmax(logits.detach(), dim=1)[:, 1:2]
            classes = (prob >= self.label_threshold).float()
        x, x_classes, x_lesions = sample_by_class(
            features, classes, batch[MASK_KEY], align.n_voxels, align.lesion_fraction
        )
        n_lesion = matched_lesion_count(align.n_reference, x_lesions, len(x_classes))
        r, y = self.sampler.draw(align.n_reference, n_lesion)
        head = self.model.f
        loss, self._last_mass = jdot_loss(
            x, head.weight.reshape(head.out_channels, -1), head.bias, r, y, align
        )
        return loss

    def loss(
        self, batch: dict[str, Any], features: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        align = self.cfg.align
        if not self.labelled:
            return align.weight * self.alignment(batch, features, logits)
        supervised = super().loss(batch, features, logits)
        if not align.labelled:
            return supervised  # seg.align.labelled=false: only sites without labels align
        self.steps_seen += 1
        if (self.steps_seen - 1) % align.every:
            return supervised  # seg.align.every: no coupling at this step
        return supervised + align.every * align.weight * self.alignment(batch, features, logits)
