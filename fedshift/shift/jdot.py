"""DeepJDOT against the federation's reference: a loss that pulls a site's embeddings onto
class-conditional reference samples with optimal transport.

DeepJDOT (Damodaran et al. 2018) couples target embeddings ``g(x_i)`` with labelled source
embeddings ``(r_j, y_j)`` and minimises

    sum_ij  gamma_ij * ( alpha * |g(x_i) - r_j|^2 / F  +  lam * CE(y_j, f(g(x_i))) )

over the network with the coupling ``gamma`` held fixed (solved on the detached cost).
FedShift has no pooled source: ``r_j`` are drawn from the reference's class-conditional
Gaussians (:mod:`fedshift.shift.reference`, built from secure sums), ``y_j`` their class.
Squared distances are divided by the embedding size F, so ``alpha`` does not depend on it.

The class mix of a coupling is the crux (lesions are ~0.3 % of brain voxels). With a fixed
share of lesion references, surplus references force background voxels to be predicted
lesion: ``docs/results/jdot-offline.md`` measured the final FedAvg model's target Dice
falling from 0.64 to 0.14 (300 predicted lesions per case) after 30 such steps. So the
batch's voxels are drawn per class (:func:`sample_by_class`: the site's labels, or the
model's own prediction on a site without labels, lesions oversampled up to
``lesion_fraction``) and the reference gets the same mix: the coupling refines which voxels
are lesion and pulls each class onto the federation's, instead of imposing a prior.

Couplings (:func:`coupling`, POT): ``emd`` (exact, uniform marginals), ``sinkhorn``
(entropic), ``unbalanced`` (entropic with KL-relaxed marginals: surplus target lesion voxels
need not land on background references) and ``partial`` (exact, moves only ``mass`` of
the total).

References
----------
.. [1] Damodaran, B. B., Kellenberger, B., Flamary, R., Tuia, D., & Courty, N. (2018).
   DeepJDOT: Deep joint distribution optimal transport for unsupervised domain adaptation.
   ECCV.
.. [2] Ackaouy, A., Courty, N., Vallée, E., Commowick, O., Barillot, C., & Galassi, F.
   (2020). Unsupervised domain adaptation with optimal transport in multi-site
   segmentation of multiple sclerosis lesions from MRI data. Frontiers in Computational
   Neuroscience, 14, 19.
.. [3] Flamary, R. et al. (2021). POT: Python Optimal Transport. JMLR 22(78).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import ot
import torch
import torch.nn.functional as F

from fedshift.shift.config import AlignConfig
from fedshift.shift.embeddings import Gaussian


class ReferenceSampler:
    """Draws reference embeddings from the reference's class-conditional Gaussians.

    The means and Cholesky factors are computed once and kept on ``device``, so a
    training step draws there without a host round trip (on a GPU the per-step draw on
    the CPU and its copy weighed on the aligned step's cost: docs/gpu-check.md).

    Parameters
    ----------
    gaussians : class -> Gaussian; a ``"background"`` (or unconditional ``"all"``) one is
        required, a ``"lesion"`` one optional
    device : where the samples are drawn and returned
    """

    def __init__(self, gaussians: Mapping[str, Gaussian], device: torch.device | str = "cpu"):
        background = gaussians.get("background", gaussians.get("all"))
        if background is None:
            raise ValueError("the reference has no background (or unconditional) Gaussian")
        self.device = torch.device(device)
        self._factors = {0: self._factor(background)}
        if gaussians.get("lesion") is not None:
            self._factors[1] = self._factor(gaussians["lesion"])

    def _factor(self, gauss: Gaussian) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.as_tensor(gauss.mean, dtype=torch.float64)
        chol = torch.linalg.cholesky(torch.as_tensor(gauss.cov, dtype=torch.float64))
        return mean.float().to(self.device), chol.T.float().to(self.device)

    @property
    def has_lesion(self) -> bool:
        return 1 in self._factors

    def draw(
        self, n: int, n_lesion: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples, ``n_lesion`` of them from the lesion Gaussian (none without one),
        the rest from the background one.

        ``generator`` None draws from torch's global generator on the device (seeded per
        round by the trainer); a given generator draws where it lives.

        Returns
        -------
        samples : (n, F) float32 tensor on the device
        labels : (n,) int64 tensor on the device
        """
        if not 0 <= n_lesion <= n:
            raise ValueError(f"n_lesion={n_lesion} must lie in [0, {n}]")
        n_lesion = n_lesion if self.has_lesion else 0
        parts, labels = [], []
        for label, count in ((0, n - n_lesion), (1, n_lesion)):
            if count == 0:
                continue
            mean, chol_t = self._factors[label]
            where = self.device if generator is None else generator.device
            z = torch.randn(count, mean.numel(), generator=generator, device=where)
            parts.append(mean + z.to(self.device) @ chol_t)
            labels.append(torch.full((count,), label, dtype=torch.int64, device=self.device))
        return torch.cat(parts), torch.cat(labels)


def sample_reference(
    gaussians: Mapping[str, Gaussian],
    n: int,
    n_lesion: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw of :class:`ReferenceSampler` (a trainer keeps the sampler instead)."""
    return ReferenceSampler(gaussians, device).draw(n, n_lesion, generator)


def coupling(cost: torch.Tensor | np.ndarray, cfg: AlignConfig) -> torch.Tensor:
    """The transport plan (N, M) for a cost (N, M), uniform weights on both sides.

    Returns a float64 tensor on the cost's device. ``sinkhorn`` and ``unbalanced`` run
    where the cost is (POT's torch backend: on the GPU when training there); ``emd`` and
    ``partial`` are CPU linear programs, so their cost goes through host memory.
    """
    cost = torch.as_tensor(cost).detach().to(torch.float64)
    n, m = cost.shape
    if cfg.solver in ("emd", "partial"):
        host = cost.cpu().numpy()
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
        if cfg.solver == "emd":
            plan = ot.emd(a, b, host)
        else:
            plan = ot.partial.partial_wasserstein(a, b, host, m=cfg.mass)
        return torch.as_tensor(plan, dtype=torch.float64, device=cost.device)
    a = torch.full((n,), 1.0 / n, dtype=torch.float64, device=cost.device)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64, device=cost.device)
    scaled = cost / cost.max().clamp_min(1e-12)
    if cfg.solver == "sinkhorn":
        # POT's default (Knopp) solver tests u and v for NaN at every iteration, each test a
        # wait for the GPU (9.7 ms per coupling on an H100, docs/gpu-check.md); the
        # log-domain one tests convergence every 10th iteration and solves the same problem
        method = "sinkhorn_log" if scaled.is_cuda else "sinkhorn"
        return ot.sinkhorn(a, b, scaled, cfg.reg, method=method, stopThr=cfg.tol)
    return ot.unbalanced.sinkhorn_unbalanced(a, b, scaled, cfg.reg, cfg.reg_m, stopThr=cfg.tol)


def jdot_cost(
    features: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    reference: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    lam: float,
) -> torch.Tensor:
    """``alpha * |g_i - r_j|^2 / F + lam * CE(y_j, W g_i + c)``, shape (N, M).

    Parameters
    ----------
    features : (N, F) embeddings g(x_i) (differentiable)
    weight, bias : the 1x1x1 head as a (2, F) matrix and a (2,) vector
    reference, labels : (M, F) reference samples and their (M,) classes
    """
    dist = torch.cdist(features.float(), reference.float()).pow(2) / features.shape[1]
    logp = F.log_softmax(features.float() @ weight.float().T + bias.float(), dim=1)  # (N, 2)
    return alpha * dist + lam * (-logp[:, labels])


def jdot_loss(
    features: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    reference: torch.Tensor,
    labels: torch.Tensor,
    cfg: AlignConfig,
) -> tuple[torch.Tensor, float]:
    """``sum_ij gamma_ij C_ij`` with ``gamma`` solved on the detached cost.

    Returns the loss (0-d, differentiable) and the mass the coupling moved (0-d tensor on
    the cost's device: reading it as a float waits for the device, so callers do that
    only when they report it).
    """
    cost = jdot_cost(features, weight, bias, reference, labels, cfg.alpha, cfg.lam)
    plan = coupling(cost, cfg)
    return (plan.to(cost.dtype) * cost).sum(), plan.sum().detach()


def _random_keys(n: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` uniform keys on ``device``: the ``k`` largest among a set of rows are a uniform
    draw of ``k`` of them without replacement (no host round trip, unlike ``randperm`` of
    the indices that ``nonzero`` returns)."""
    where = device if generator is None else generator.device
    return torch.rand(n, generator=generator, device=where).to(device)


def _rows(features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Embeddings (N, F) of a batch (B, F, D, H, W) at flat voxel indices (N,) (batch-major,
    as ``mask.reshape(-1)`` counts them), gathered without copying the whole batch."""
    b, f = features.shape[:2]
    view = features.reshape(b, f, -1)
    return view[index // view.shape[2], :, index % view.shape[2]]


def _pick(keys: torch.Tensor, where: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` random rows among those where ``where`` is set (``k`` at most their
    count)."""
    return torch.topk(torch.where(where, keys, -1.0), k, sorted=False).indices


def sample_embeddings(
    features: torch.Tensor, mask: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Up to ``n`` embeddings (rows) of a batch (B, F, D, H, W) where ``mask`` (B, 1, ...)
    is set (all of them when none is), uniformly without replacement (``generator`` None:
    torch's global one on the features' device); keeps the gradient."""
    inside = mask.reshape(-1).to(features.device) > 0.5
    count = int(inside.sum())  # the one wait for the device
    if count == 0:
        inside, count = torch.ones_like(inside), inside.numel()
    keys = _random_keys(inside.numel(), features.device, generator)
    return _rows(features, _pick(keys, inside, min(n, count)))


def sample_by_class(
    features: torch.Tensor,
    classes: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    lesion_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Up to ``n`` embeddings of a batch (B, F, D, H, W) inside ``mask``, per class:
    lesion voxels (``classes`` (B, 1, ...) set) up to ``round(n * lesion_fraction)`` of
    them, background for the rest; uniformly without replacement within each class
    (``generator`` None: torch's global one on the features' device); keeps the gradient.

    One host round trip (the two class counts), so a GPU step waits only once.

    Returns the rows (N, F), their classes (N,) int64 (lesions first) and the number of
    lesion rows.
    """
    device = features.device
    inside = mask.reshape(-1).to(device) > 0.5
    lesion = classes.reshape(-1).to(device) > 0.5
    n_inside, n_lesion_inside = torch.stack([inside.sum(), (inside & lesion).sum()]).tolist()
    if n_inside == 0:
        inside = torch.ones_like(inside)
        n_inside, n_lesion_inside = inside.numel(), int(lesion.sum())
    keys = _random_keys(inside.numel(), device, generator)
    n_lesion = min(n_lesion_inside, round(n * lesion_fraction))
    n_background = min(n_inside - n_lesion_inside, n - n_lesion)
    index = torch.cat(
        [_pick(keys, inside & lesion, n_lesion), _pick(keys, inside & ~lesion, n_background)]
    )
    labels = torch.zeros(n_lesion + n_background, dtype=torch.int64, device=device)
    labels[:n_lesion] = 1
    return _rows(features, index), labels, n_lesion


def matched_lesion_count(n_reference: int, n_lesion: int, n_drawn: int) -> int:
    """Lesion references for a coupling whose batch side drew ``n_lesion`` lesion rows of
    ``n_drawn``: the same share."""
    return round(n_reference * n_lesion / n_drawn) if n_drawn else 0
