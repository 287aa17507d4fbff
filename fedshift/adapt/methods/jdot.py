"""DeepJDOT at the site alone: pull the site's voxel embeddings onto the federation's.

DeepJDOT (Damodaran et al. 2018) couples target embeddings ``g(x_i)`` with labelled
source samples ``(r_j, y_j)`` and minimises, over the network, with the coupling
``gamma`` solved on the detached cost,

    sum_ij  gamma_ij * ( alpha * |g(x_i) - r_j|^2 / F  +  lam * CE(y_j, f(g(x_i))) ).

Here, as in a federated run (:class:`fedshift.model.aligned.AlignedTrainer` on a site
without labels), the source is the package's reference: samples of the federation's
class-conditional Gaussians of the embeddings under this very model (secure sums over
>= 3 sites). The site's voxels are drawn per class of the model's own prediction at the
package's threshold, lesions oversampled up to ``jdot.lesion_fraction``, and the reference
with the same class mix (:func:`fedshift.shift.jdot.sample_by_class`), so the coupling
refines which voxels are lesion instead of imposing a prior. Without labels the loss is
the alignment term alone, as in-federation; the coupling code is
:mod:`fedshift.shift.jdot`'s own.

References
----------
.. [1] Damodaran, B. B., Kellenberger, B., Flamary, R., Tuia, D., & Courty, N. (2018).
   DeepJDOT: Deep joint distribution optimal transport for unsupervised domain adaptation.
   ECCV.
.. [2] Ackaouy, A. et al. (2020). Unsupervised domain adaptation with optimal transport in
   multi-site segmentation of multiple sclerosis lesions from MRI data. Front. Comput.
   Neurosci. 14, 19.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ot
import torch

from fedshift.adapt.methods.base import AdaptContext, GradientMethod
from fedshift.bundle.io import ModelBundle
from fedshift.shift.jdot import (
    ReferenceSampler,
    jdot_loss,
    matched_lesion_count,
    sample_by_class,
    sample_embeddings,
)
from fedshift.shift.reference import Reference


def missing_reference(bundle: ModelBundle, method: str) -> str | None:
    """Why ``method`` cannot run on ``bundle`` for want of the federation's reference."""
    if bundle.reference is None:
        return (
            f"--method {method} needs the federation's reference (models/reference.npz: the "
            f"class-conditional embedding Gaussians and lesion-load histograms), and the "
            f"package {bundle.root} has none; it comes with packages of runs with "
            f"fed.secure_stats=true written by this FedShift (or use --method pseudo)"
        )
    return None


class SiteJdot(GradientMethod):
    """The DeepJDOT alignment term on the site's patches, against the package's reference."""

    name = "jdot"

    @classmethod
    def refuse(cls, bundle: ModelBundle) -> str | None:
        missing = missing_reference(bundle, cls.name)
        if missing or bundle.reference is None:
            return missing
        gaussians = bundle.reference.gaussians
        if "background" not in gaussians and "all" not in gaussians:
            return (
                f"--method jdot: the reference in {bundle.root} holds no background (or "
                "unconditional) embedding Gaussian to align to"
            )
        return None

    def __init__(self, ctx: AdaptContext) -> None:
        super().__init__(ctx)
        assert ctx.bundle.reference is not None
        self.align = ctx.cfg.jdot.align()
        self.sampler = ReferenceSampler(ctx.bundle.reference.gaussians, ctx.device)
        self.classes = sorted(ctx.bundle.reference.gaussians)

    def loss(self, step: int) -> torch.Tensor:
        image, brain = self.batch()
        model, align = self.ctx.model, self.align
        features = model.features(image)
        logits = model.head(features)
        prob = torch.softmax(logits.detach().float(), dim=1)[:, 1:2]
        classes = (prob >= self.ctx.bundle.threshold).float()
        x, x_classes, x_lesions = sample_by_class(
            features, classes, brain, align.n_voxels, align.lesion_fraction
        )
        n_lesion = matched_lesion_count(align.n_reference, x_lesions, len(x_classes))
        r, y = self.sampler.draw(align.n_reference, n_lesion)
        head = model.f
        loss, _ = jdot_loss(x, head.weight.reshape(head.out_channels, -1), head.bias, r, y, align)
        return loss

    def record(self) -> dict[str, Any]:
        return {"reference_classes": self.classes}


@torch.no_grad()
def alignment_cost(
    model: torch.nn.Module,
    image: torch.Tensor,
    brain: torch.Tensor,
    reference: Reference,
    n: int,
    seed: int,
) -> float:
    """Squared 2-Wasserstein distance per feature between ``n`` embeddings of a batch
    (inside the brain) and ``n`` samples of the reference's background (or unconditional)
    Gaussian: ``ot.emd2`` on ``|g(x_i) - r_j|^2 / F``, both draws seeded by ``seed``.

    A measure of how far the site's embeddings lie from the federation's, for a fixed
    batch (B, 1, D, H, W) and seed: what the JDOT term lowers.
    """
    was_training = model.training
    model.eval()
    try:
        generator = torch.Generator().manual_seed(seed)
        features = model.features(image).float().cpu()
        x = sample_embeddings(features, brain.cpu(), n, generator)
        background = {
            "background": reference.gaussians.get("background", reference.gaussians.get("all"))
        }
        r, _ = ReferenceSampler(background).draw(n, 0, generator)  # type: ignore[arg-type]
    finally:
        model.train(was_training)
    cost = torch.cdist(x.double(), r.double()).pow(2).numpy() / x.shape[1]
    weights = np.full(len(x), 1.0 / len(x)), np.full(len(r), 1.0 / len(r))
    return float(ot.emd2(weights[0], weights[1], cost))
