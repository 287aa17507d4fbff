"""``fed.aggregator=fedyogi``: Flower's FedYogi (Reddi et al. 2021, Algorithm 2 with Yogi
at the server; the shared rule in :mod:`~fedshift.fl.strategies.fedopt`).

Second moment ``v <- v - (1 - fed.beta_2) * delta**2 * sign(v - delta**2)`` (Zaheer et
al. 2018): it moves towards ``delta**2`` by ``(1 - beta_2) * delta**2`` whatever ``v`` is,
where Adam's moves by a fraction of the gap. No bias correction (as in the paper).
"""

from __future__ import annotations

from collections.abc import Mapping

from flwr.serverapp import strategy as flwr_strategy

from fedshift.fl.grid import SiteInfo
from fedshift.fl.strategies import fedopt
from fedshift.runconfig import RunConfig


class FedYogi(fedopt.ServerOptimiser, flwr_strategy.FedYogi):
    """Yogi at the server on the sites' mean update."""


def make(cfg: RunConfig, sites: Mapping[int, SiteInfo]) -> FedYogi:
    return FedYogi(cfg, sites, **fedopt.settings(cfg))
