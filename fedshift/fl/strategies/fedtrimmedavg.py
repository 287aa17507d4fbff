"""``fed.aggregator=fedtrimmedavg``: Flower's FedTrimmedAvg (Yin et al. 2018), a robust
mean. For every weight it drops the ``fed.trim_beta`` fraction of the sites' values at
each end and averages the rest, unweighted (case counts do not enter): one site sending
extreme values moves the model no further than the sites it is ranked between. With 4
sites and the default 0.25 it drops the lowest and the highest value of every weight.

It needs every site's weights in the clear, so it refuses ``fed.secure_updates``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp import strategy as flwr_strategy

from fedshift.fl.grid import SiteInfo
from fedshift.fl.strategies.base import Coordinated
from fedshift.runconfig import RunConfig


class FedTrimmedAvg(Coordinated, flwr_strategy.FedTrimmedAvg):
    """The coordinate-wise trimmed mean of the sites' updated weights."""

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's trimmed mean, in the dtype the weights were sent in."""
        arrays, metrics = super().aggregate_train(server_round, replies)
        return (None if arrays is None else self.in_sent_dtypes(arrays)), metrics


def make(cfg: RunConfig, sites: Mapping[int, SiteInfo]) -> FedTrimmedAvg:
    return FedTrimmedAvg(cfg, sites, beta=cfg.fed.trim_beta)
