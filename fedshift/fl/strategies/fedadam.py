"""``fed.aggregator=fedadam``: Flower's FedAdam (Reddi et al. 2021, Algorithm 2 with Adam
at the server; the shared rule in :mod:`~fedshift.fl.strategies.fedopt`).

Second moment ``v <- fed.beta_2 * v + (1 - fed.beta_2) * delta**2``. Flower adds Adam's
bias correction to the server learning rate, which the paper's Algorithm 2 has not:
``eta_t = fed.server_lr * sqrt(1 - beta_2**(t + 1)) / (1 - beta_1**(t + 1))`` with ``t``
the round (1, 2, ...), so the resumed run must, and does, keep its round numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

from flwr.serverapp import strategy as flwr_strategy

from fedshift.fl.grid import SiteInfo
from fedshift.fl.strategies import fedopt
from fedshift.runconfig import RunConfig


class FedAdam(fedopt.ServerOptimiser, flwr_strategy.FedAdam):
    """Adam at the server on the sites' mean update."""


def make(cfg: RunConfig, sites: Mapping[int, SiteInfo]) -> FedAdam:
    return FedAdam(cfg, sites, **fedopt.settings(cfg))
