"""Site-level differential privacy of the model updates (``fed.dp_epsilon``), from Flower's
own parts: each site clips its update (``flwr.supercore.differential_privacy``), the
coordinator adds Gaussian noise to the sites' equally weighted mean and counts what it
spent with Flower's RDP accountant (``flwr.supercore.privacy_accounting``, backed by
Google's dp-accounting), as in DP-FedAvg (McMahan et al. 2018; Geyer et al. 2017).

The guarantee: the sequence of global models is (epsilon, delta)-differentially private
with respect to adding or removing one *site's* whole contribution, every site taking part
in every round (no sampling amplification). What it protects against: anyone who sees the
models (the other sites, whoever receives the model package). What it does not: the
coordinator, which sees the mean before it adds the noise (even with secure updates), and
the scalar metrics each site reports (training loss, validation Dice, case counts).

The noise is drawn from the operating system's random source, not from the run's seed:
noise that anyone holding the run config could replay would protect nothing. A DP run is
therefore not reproducible bit for bit, and a resumed run continues with fresh noise.
"""

from __future__ import annotations

import logging
import secrets

import numpy as np
from flwr.supercore.differential_privacy import compute_clip_model_update, compute_stdv
from flwr.supercore.privacy_accounting import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from fedshift.errors import ConfigError
from fedshift.record import PrivacyRecord
from fedshift.runconfig import FedConfig

log = logging.getLogger("fedshift.coordinator")

ACCOUNTANT = (
    "RDP (Flower's RdpAccountant on dp-accounting): Gaussian mechanism, no sampling "
    "amplification, neighbours differ by one site"
)


def epsilon_after(noise_multiplier: float, releases: int, sites: int, delta: float) -> float:
    """The epsilon at ``delta`` that ``releases`` noised means over ``sites`` spend."""
    if releases == 0:
        return 0.0
    config = PrivacyConfig(
        target_delta=delta,
        population_size=sites,
        neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
        sampling_method=SamplingMethod.NO_AMPLIFICATION,
    )
    accountant = RdpAccountant(config)
    accountant.compose(GaussianPrivacyEvent(noise_multiplier, sites, sites), count=releases)
    return float(accountant.get_epsilon(delta))


def noise_multiplier_for(epsilon: float, releases: int, sites: int, delta: float) -> float:
    """The smallest noise multiplier (to 0.1 %) whose ``releases`` spend at most
    ``epsilon`` at ``delta``: bisection, epsilon falls as the noise grows."""
    low, high = 1e-3, 1e4
    if epsilon_after(high, releases, sites, delta) > epsilon:
        raise ConfigError(
            f"fed.dp_epsilon={epsilon:g} cannot be reached in {releases} rounds at "
            f"fed.dp_delta={delta:g} with any noise multiplier up to {high:g}"
        )
    while high / low > 1.001:
        mid = float(np.sqrt(low * high))
        if epsilon_after(mid, releases, sites, delta) > epsilon:
            low = mid
        else:
            high = mid
    return high


def clip_update(
    weights: list[np.ndarray], sent: list[np.ndarray], clip_norm: float
) -> list[np.ndarray]:
    """``sent`` plus the site's update (``weights - sent``) scaled down to L2 norm
    ``clip_norm`` over all weights where it is longer (Flower's flat clipping); integer
    arrays (counters) are left as trained."""
    floats = [i for i, w in enumerate(weights) if np.issubdtype(w.dtype, np.floating)]
    trained = [np.array(weights[i], np.float64) for i in floats]
    compute_clip_model_update(trained, [np.asarray(sent[i], np.float64) for i in floats], clip_norm)
    clipped = list(weights)
    for i, w in zip(floats, trained, strict=True):
        clipped[i] = w.astype(weights[i].dtype)
    return clipped


class SiteLevelDP:
    """The coordinator's side: the noise multiplier for the run's budget, the noise, and
    the account.

    Parameters
    ----------
    fed : the run's ``fed`` settings (``dp_epsilon``, ``dp_delta``, ``dp_clip_norm``,
        ``rounds``: the number of releases the budget is spread over)
    sites : the sites that train, the population the guarantee counts
    """

    def __init__(self, fed: FedConfig, sites: int) -> None:
        self.clip_norm = fed.dp_clip_norm
        self.delta = fed.dp_delta
        self.sites = sites
        self.noise_multiplier = noise_multiplier_for(fed.dp_epsilon, fed.rounds, sites, self.delta)
        self.releases = 0  # noised means released so far (a resumed run sets its rounds)

    def noised(self, mean: list[np.ndarray], n_averaged: int) -> list[np.ndarray]:
        """``mean`` (of ``n_averaged`` clipped updates, equally weighted) plus Gaussian noise
        of standard deviation ``noise_multiplier * clip_norm / n_averaged`` on every float
        weight; counts one release."""
        std = compute_stdv(self.noise_multiplier, self.clip_norm, n_averaged)
        rng = np.random.default_rng(secrets.randbits(128))
        noised = [
            (w + rng.normal(0.0, std, w.shape)).astype(w.dtype)
            if np.issubdtype(w.dtype, np.floating)
            else w
            for w in mean
        ]
        self.releases += 1
        log.info("differential privacy: noise std %.4g added to the mean of %d", std, n_averaged)
        return noised

    def record(self) -> PrivacyRecord:
        """What has been spent after :attr:`releases` noised means."""
        epsilon = epsilon_after(self.noise_multiplier, self.releases, self.sites, self.delta)
        return PrivacyRecord(
            epsilon=epsilon,
            delta=self.delta,
            releases=self.releases,
            noise_multiplier=self.noise_multiplier,
            clip_norm=self.clip_norm,
            accountant=ACCOUNTANT,
        )
