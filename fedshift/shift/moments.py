"""Moment matching of embeddings to the reference: the FedHarmony-style baseline.

FedHarmony (Dinsdale, Jenkinson & Namburete 2022) harmonises a federation by matching the
mean and standard deviation of each feature across sites. Here a site's loss gains

    mean_k ( (m_k - mu_k)^2 + (s_k - sigma_k)^2 )

over the embedding features k, with ``m, s`` the mean and standard deviation of the
batch's sampled embeddings and ``mu, sigma`` those of the reference Gaussian (background,
or the unconditional one): first and second moments only, where JDOT
(:mod:`fedshift.shift.jdot`) matches whole class-conditional distributions.

References
----------
.. [1] Dinsdale, N. K., Jenkinson, M., & Namburete, A. I. L. (2022). FedHarmony: unlearning
   scanner bias with distributed data. MICCAI.
"""

from __future__ import annotations

import numpy as np
import torch

from fedshift.shift.embeddings import Gaussian


def moment_loss(features: torch.Tensor, reference: Gaussian) -> torch.Tensor:
    """Squared differences of per-feature mean and std, averaged over features.

    Parameters
    ----------
    features : (N, F) sampled embeddings (differentiable), N >= 2
    reference : the reference Gaussian (its diagonal is used)
    """
    if features.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings, got {features.shape[0]}")
    mu = torch.as_tensor(reference.mean, dtype=torch.float32, device=features.device)
    sigma = torch.as_tensor(
        np.sqrt(np.clip(np.diag(reference.cov), 0.0, None)),
        dtype=torch.float32,
        device=features.device,
    )
    x = features.float()
    return ((x.mean(0) - mu) ** 2 + (x.std(0) - sigma) ** 2).mean()
