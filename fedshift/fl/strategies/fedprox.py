"""``fed.aggregator=fedprox``: Flower's FedProx (Li et al. 2020). It aggregates as FedAvg
and sends ``fed.proximal_mu``; each site adds the proximal term to its loss."""

from __future__ import annotations

from collections.abc import Mapping

from flwr.serverapp import strategy as flwr_strategy

from fedshift.fl.grid import SiteInfo
from fedshift.fl.strategies.base import Coordinated
from fedshift.runconfig import RunConfig


class FedProx(Coordinated, flwr_strategy.FedProx):
    """FedAvg's mean, with ``proximal-mu`` in every training message."""


def make(cfg: RunConfig, sites: Mapping[int, SiteInfo]) -> FedProx:
    return FedProx(cfg, sites, proximal_mu=cfg.fed.proximal_mu)
