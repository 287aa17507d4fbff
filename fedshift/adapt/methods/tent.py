"""Entropy minimisation with a class-ratio prior: TENT, kept from collapsing.

TENT (Wang et al. 2021) adapts a model at test time by minimising the entropy of its
predictions, updating only the normalisation layers' scale and shift. On a segmentation
task whose foreground is rare (lesions are well under 1 % of the brain), entropy alone is
lowest when nothing is lesion. Bateson et al. (2022) guide it with a prior on the class
ratio of each image, a KL divergence between the prior ratio and the predicted one. Per
step, over the brain voxels of the batch's patches (brain-centred, so the patch's ratio
estimates the brain's),

    loss = mean_i H(p_i)  +  w * KL(tau || tau_hat),
    tau_hat = mean_i p_i(lesion),   KL over the two classes (lesion, background).

``KL(tau || tau_hat)`` grows without bound as ``tau_hat`` goes to 0, so it resists the
all-background solution. **The prior** ``tau`` is the federation's median lesion volume
per case (mL, from the package's reference: the secure lesion-volume histogram of the
labelled sites' cases) divided by this site's mean brain volume (mL, its own brain masks
on the model grid, computed here and never sent): the federation's typical lesion load
relative to this site's brains. The median, not the mean: the histogram's log-spaced bins
up to 200 mL make its mean follow a few heavy cases.

References
----------
.. [1] Wang, D., Shelhamer, E., Liu, S., Olshausen, B., & Darrell, T. (2021). Tent: Fully
   test-time adaptation by entropy minimization. ICLR.
.. [2] Bateson, M., Kervadec, H., Dolz, J., Lombaert, H., & Ben Ayed, I. (2022).
   Source-free domain adaptation for image segmentation. Medical Image Analysis, 82,
   102617.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from fedshift.adapt.methods.base import AdaptContext, GradientMethod
from fedshift.adapt.methods.jdot import missing_reference
from fedshift.bundle.io import ModelBundle
from fedshift.errors import UsageError
from fedshift.shift.intensity import histogram_quantiles
from fedshift.shift.reference import Reference

#: layers whose affine parameters TENT updates
NORM_LAYERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)
#: the prior ratio is kept in [EPS, 1 - EPS] (log of 0)
EPS = 1e-6


def median_lesion_ml(reference: Reference) -> float | None:
    """The federation's median lesion volume per case (mL); None without labelled cases."""
    pmf = np.asarray(reference.lesion_volume_pmf, dtype=np.float64)
    if reference.labelled_cases <= 0 or not pmf.sum() > 0:
        return None
    edges = np.asarray(reference.volume_edges, dtype=np.float64)
    return float(histogram_quantiles(pmf, edges, np.array([0.5]))[0])


def norm_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The scale and shift of every normalisation layer that has them."""
    return [
        p
        for module in model.modules()
        if isinstance(module, NORM_LAYERS)
        for p in module.parameters(recurse=False)
    ]


def entropy_and_ratio(
    logits: torch.Tensor, brain: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean entropy (nats) of the softmax of logits (B, 2, D, H, W) over the voxels where
    ``brain`` (B, 1, D, H, W) is set, and the mean lesion probability there."""
    logp = torch.log_softmax(logits.float(), dim=1)
    p = logp.exp()
    inside = brain[:, 0] > 0.5
    if not bool(inside.any()):
        inside = torch.ones_like(inside)
    entropy = -(p * logp).sum(dim=1)[inside].mean()
    return entropy, p[:, 1][inside].mean()


def ratio_kl(prior: float, ratio: torch.Tensor) -> torch.Tensor:
    """``KL(prior || ratio)`` of two Bernoulli distributions (lesion, background)."""
    q = ratio.clamp(EPS, 1 - EPS)
    return prior * torch.log(prior / q) + (1 - prior) * torch.log((1 - prior) / (1 - q))


class Tent(GradientMethod):
    """TENT's entropy loss plus the class-ratio prior of Bateson et al. 2022."""

    name = "tent"

    @classmethod
    def refuse(cls, bundle: ModelBundle) -> str | None:
        missing = missing_reference(bundle, cls.name)
        if missing or bundle.reference is None:
            return missing
        if median_lesion_ml(bundle.reference) is None:
            return (
                f"--method tent: the reference in {bundle.root} has no lesion-volume "
                "histogram (no labelled case contributed one): no class-ratio prior"
            )
        return None

    def __init__(self, ctx: AdaptContext) -> None:
        assert ctx.bundle.reference is not None
        lesion_ml = median_lesion_ml(ctx.bundle.reference) or 0.0
        self.brain_ml = float(np.mean([im.brain_ml for im in ctx.images]))
        self.prior = float(np.clip(lesion_ml / max(self.brain_ml, EPS), EPS, 1 - EPS))
        self.lesion_ml = lesion_ml
        super().__init__(ctx)
        if not any(True for _ in self.parameters()):
            raise UsageError(
                "--method tent: the network has no normalisation scale or shift to update; "
                "use tent.params=all"
            )

    def parameters(self) -> Iterable[nn.Parameter]:
        if self.ctx.cfg.tent.params == "all":
            return self.ctx.model.parameters()
        return norm_parameters(self.ctx.model)

    def loss(self, step: int) -> torch.Tensor:
        image, brain = self.batch()
        entropy, ratio = entropy_and_ratio(self.ctx.model(image), brain)
        return entropy + self.ctx.cfg.tent.prior_weight * ratio_kl(self.prior, ratio)

    def record(self) -> dict[str, Any]:
        return {
            "prior_lesion_ratio": self.prior,
            "prior_from": "federation's median lesion volume per case / this site's mean "
            "brain volume",
            "federation_median_lesion_ml": self.lesion_ml,
            "site_mean_brain_ml": self.brain_ml,
            "parameters": self.ctx.cfg.tent.params,
        }
