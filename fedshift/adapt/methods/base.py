"""What every adaptation method shares: its context, one step at a time, a record.

A method is built once per adaptation from an :class:`AdaptContext` and called with
:meth:`Method.step` for each step; the loop (:mod:`fedshift.adapt.run`) does the rest
(guard, progress, the package). A gradient method overrides one hook,
:meth:`GradientMethod.loss` (and, to update fewer parameters,
:meth:`GradientMethod.parameters`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fedshift.adapt.config import AdaptConfig
from fedshift.adapt.data import Patches, SiteImage
from fedshift.bundle.io import ModelBundle
from fedshift.model.device import autocast, grad_scaler


@dataclass(frozen=True, eq=False)
class AdaptContext:
    """What a method works with.

    Attributes
    ----------
    model : a copy of the package's network on ``device``, adapted in place.
    bundle : the package adapted from (its settings, threshold, reference).
    images : the site's images on the model grid (:mod:`fedshift.adapt.data`).
    patches : patch sampler over ``images``.
    cfg : the adaptation settings.
    batch_size : patches per step.
    device : where the model runs.
    rng : the seeded generator of every numpy draw (patches, images).
    """

    model: nn.Module
    bundle: ModelBundle
    images: list[SiteImage]
    patches: Patches
    cfg: AdaptConfig
    batch_size: int
    device: torch.device
    rng: np.random.Generator


class Method:
    """One adaptation method. Subclasses set :attr:`name` and implement :meth:`step`."""

    name = ""

    @classmethod
    def refuse(cls, bundle: ModelBundle) -> str | None:
        """Why this method cannot adapt ``bundle`` (one line), or None. Asked before the
        site's images are read."""
        return None

    def __init__(self, ctx: AdaptContext) -> None:
        self.ctx = ctx

    def step(self, step: int) -> float:
        """Do step ``step`` (1-based); return its loss (NaN where there is none)."""
        raise NotImplementedError

    def finish(self) -> None:
        """Called once after the last step (or the guard's stop)."""

    def record(self) -> dict[str, Any]:
        """Method-specific aggregate values for the package's metadata (JSON values)."""
        return {}

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of brain-centred patches: images and brain masks (B, 1, D, H, W)."""
        windows = self.ctx.patches.draw(self.ctx.rng, self.ctx.batch_size)
        return self.ctx.patches.batch(windows, self.ctx.device)


class GradientMethod(Method):
    """A method that minimises a loss over the site's patches with Adam (no weight decay:
    it would pull normalisation scales towards 0), with AMP on cuda as training does."""

    def __init__(self, ctx: AdaptContext) -> None:
        super().__init__(ctx)
        params = list(self.parameters())
        trainable = {id(p) for p in params}
        for p in ctx.model.parameters():
            p.requires_grad_(id(p) in trainable)
        self.optimizer = torch.optim.Adam(params, lr=ctx.cfg.lr)
        self.amp = ctx.bundle.seg.train.amp
        self.scaler = grad_scaler(ctx.device, self.amp)

    def parameters(self) -> Iterable[nn.Parameter]:
        """The parameters updated (all of the network's by default)."""
        return self.ctx.model.parameters()

    def loss(self, step: int) -> torch.Tensor:
        """The loss of step ``step``, differentiable (0-d)."""
        raise NotImplementedError

    def step(self, step: int) -> float:
        self.ctx.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.ctx.device, self.amp):
            loss = self.loss(step)
        loss = loss.float()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def finish(self) -> None:
        for p in self.ctx.model.parameters():
            p.requires_grad_(True)
