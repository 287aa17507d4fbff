"""AdaBN: the batch-normalisation statistics of the site's own images.

A network with batch normalisation normalises, at inference, with the running mean and
variance it accumulated on the training sites' patches. AdaBN (Li et al. 2016) replaces
them with those of the target domain: every BN layer's running statistics are reset and
re-estimated as the plain average over ``steps`` batches of the site's brain-centred
patches (``momentum=None``: a cumulative average), the network otherwise in eval mode
(dropout off). Nothing else changes: no weight, no scale or shift, not even the layers'
batch counters (put back afterwards). A network with instance normalisation, FedShift's
default, normalises every patch with its own statistics and keeps none: there is nothing
to re-estimate, and AdaBN is refused rather than run as a no-op.

References
----------
.. [1] Li, Y., Wang, N., Shi, J., Liu, J., & Hou, X. (2016). Revisiting batch
   normalization for practical domain adaptation. arXiv:1603.04779 (ICLR 2017 workshop;
   Pattern Recognition 80, 2018).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fedshift.adapt.methods.base import AdaptContext, Method
from fedshift.bundle.io import ModelBundle


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-normalisation layers that keep running statistics."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


class AdaBN(Method):
    """Re-estimate every BN layer's running mean and variance on the site's patches."""

    name = "adabn"

    @classmethod
    def refuse(cls, bundle: ModelBundle) -> str | None:
        if not batch_norms(bundle.network):
            return (
                f"--method adabn: the network of {bundle.root} uses "
                f"{bundle.seg.model.norm} normalisation (seg.model.norm={bundle.seg.model.norm}),"
                " which keeps no running statistics: AdaBN has nothing to re-estimate; use "
                "--method jdot, tent or pseudo"
            )
        return None

    def __init__(self, ctx: AdaptContext) -> None:
        super().__init__(ctx)
        self.layers = batch_norms(ctx.model)
        self.saved = [(m.momentum, m.num_batches_tracked.clone()) for m in self.layers]
        for m in self.layers:
            m.reset_running_stats()
            m.momentum = None

    @torch.no_grad()
    def step(self, step: int) -> float:
        model = self.ctx.model
        model.eval()
        for m in self.layers:
            m.train()
        image, _ = self.batch()
        model(image)
        model.eval()
        return math.nan

    def finish(self) -> None:
        for m, (momentum, batches) in zip(self.layers, self.saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(batches)

    def record(self) -> dict[str, int]:
        return {"batch_norm_layers": len(self.layers)}
