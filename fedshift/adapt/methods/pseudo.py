"""Self-training on pseudo labels: the model's confident voxels become its targets.

Every ``pseudo.refresh_every`` steps the current model segments each adaptation image
whole (sliding window, as ``fedshift predict``); a voxel whose lesion probability is above
``pseudo.hi`` becomes a lesion label, below ``pseudo.lo`` a background label, and the
voxels in between are left out. Steps train on patches centred on pseudo-lesion voxels or
on confident background in the brain, in the package's ``pos_ratio : neg_ratio``, with
the package's loss (Dice + cross-entropy, as :class:`monai.losses.DiceCELoss` with
softmax) restricted to the labelled voxels: MONAI's ``MaskedDiceLoss`` plus the masked
mean cross-entropy. Self-training can confirm its own mistakes (all background is a fixed
point): the collapse guard (:mod:`fedshift.adapt.guard`) watches the lesion load.

References
----------
.. [1] Lee, D.-H. (2013). Pseudo-label: the simple and efficient semi-supervised learning
   method for deep neural networks. ICML Workshop on Challenges in Representation
   Learning.
.. [2] Zou, Y., Yu, Z., Kumar, B. V. K., & Wang, J. (2018). Unsupervised domain adaptation
   for semantic segmentation via class-balanced self-training. ECCV.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import MaskedDiceLoss

from fedshift.adapt.data import Window
from fedshift.adapt.methods.base import AdaptContext, GradientMethod
from fedshift.model.evaluate import predict_proba

#: label value of a voxel left out of the loss
IGNORE = -1


class PseudoLabels(GradientMethod):
    """Confident-voxel self-training with the package's Dice + CE loss."""

    name = "pseudo"

    def __init__(self, ctx: AdaptContext) -> None:
        super().__init__(ctx)
        self.labels: list[np.ndarray] = []
        self.lesion: list[np.ndarray] = []
        self.background: list[np.ndarray] = []
        self.dice = MaskedDiceLoss(to_onehot_y=True, softmax=True)
        train = ctx.bundle.seg.train
        self.pos_share = train.pos_ratio / (train.pos_ratio + train.neg_ratio)
        self.refreshes: list[dict[str, float]] = []

    def refresh(self) -> None:
        """New labels from the current model, image by image."""
        cfg, seg = self.ctx.cfg.pseudo, self.ctx.bundle.seg
        self.labels, self.lesion, self.background = [], [], []
        lesion_voxels = labelled = total = 0
        for im in self.ctx.images:
            prob = predict_proba(
                self.ctx.model, torch.from_numpy(im.image[None]), seg, self.ctx.device
            )
            prob = prob.numpy()
            label = np.full(prob.shape, IGNORE, dtype=np.int8)
            label[prob < cfg.lo] = 0
            label[prob > cfg.hi] = 1
            self.labels.append(label)
            self.lesion.append(np.flatnonzero(label == 1))
            self.background.append(np.flatnonzero((label == 0) & im.brain))
            lesion_voxels += int(self.lesion[-1].size)
            labelled += int(np.count_nonzero(label != IGNORE))
            total += label.size
        self.refreshes.append(
            {"lesion_voxels": float(lesion_voxels), "labelled_share": labelled / max(total, 1)}
        )

    def windows(self) -> list[Window]:
        """Patches centred on a pseudo-lesion voxel (with the package's positive share) or
        on confident background in the brain; brain voxels where an image has neither."""
        out = []
        patches, rng = self.ctx.patches, self.ctx.rng
        for _ in range(self.ctx.batch_size):
            index = int(rng.integers(len(self.ctx.images)))
            pool = self.lesion[index] if rng.random() < self.pos_share else self.background[index]
            if pool.size == 0:
                pool = self.lesion[index] if self.lesion[index].size else patches.brain_index[index]
            if pool.size == 0:
                pool = np.arange(self.ctx.images[index].image.size)
            out.append(patches.window(rng, index, pool))
        return out

    def loss(self, step: int) -> torch.Tensor:
        if (step - 1) % self.ctx.cfg.pseudo.refresh_every == 0:
            self.refresh()
        windows = self.windows()
        image, _ = self.ctx.patches.batch(windows, self.ctx.device)
        target = self.ctx.patches.stack(windows, self.labels, IGNORE, self.ctx.device).long()
        logits = self.ctx.model(image)
        return masked_dice_ce(logits, target, self.dice)

    def record(self) -> dict[str, Any]:
        return {"refreshes": self.refreshes}


def masked_dice_ce(
    logits: torch.Tensor, target: torch.Tensor, dice: MaskedDiceLoss
) -> torch.Tensor:
    """Dice + cross-entropy of logits (B, 2, D, H, W) against labels (B, 1, D, H, W) in
    {0, 1, IGNORE}, over the labelled voxels only; 0 (with a gradient) when there are none."""
    mask = (target != IGNORE).float()
    if not bool(mask.any()):
        return logits.sum() * 0.0
    labels = target.clamp(min=0)
    ce = F.cross_entropy(logits.float(), labels[:, 0], reduction="none")
    ce = (ce * mask[:, 0]).sum() / mask.sum()
    return dice(logits.float(), labels.float(), mask=mask) + ce
