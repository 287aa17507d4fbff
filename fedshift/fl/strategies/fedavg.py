"""``fed.aggregator=fedavg``: Flower's FedAvg (McMahan et al. 2017), weighted by the
coordinator-set case counts (:class:`~fedshift.fl.strategies.base.Coordinated`)."""

from __future__ import annotations

from collections.abc import Mapping

from flwr.serverapp import strategy as flwr_strategy

from fedshift.fl.grid import SiteInfo
from fedshift.fl.strategies.base import Coordinated
from fedshift.runconfig import RunConfig


class FedAvg(Coordinated, flwr_strategy.FedAvg):
    """The weighted mean of the sites' updated weights."""


def make(cfg: RunConfig, sites: Mapping[int, SiteInfo]) -> FedAvg:
    return FedAvg(cfg, sites)
