"""``fed.aggregator=fedavgm``: Flower's FedAvgM (Hsu et al. 2019, the server-momentum
baseline of Reddi et al. 2021): SGD with momentum at the coordinator, the averaged update
as its pseudo-gradient.

With ``w`` the global model sent and ``mean`` the case-weighted mean of the sites'
models (:class:`~fedshift.fl.strategies.base.Coordinated`), each round:
``g = w - mean``; ``v = g`` in the first round, then ``v <- fed.server_momentum * v + g``;
``w <- w - fed.server_lr * v`` (PyTorch's SGD convention: no dampening, no Nesterov).
``fed.server_momentum=0 fed.server_lr=1`` is FedAvg.

Flower keeps two things between rounds: the momentum ``v`` (``momentum_vector``), which
goes into the checkpoint, and ``current_arrays``, the global model: the first model sent,
then its own aggregate. That is the model the checkpoint already holds and a resumed run
sends first, so it is not stored twice.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.serverapp import strategy as flwr_strategy

from fedshift.errors import FedShiftError
from fedshift.fl.grid import SiteInfo
from fedshift.fl.strategies.base import Coordinated
from fedshift.runconfig import RunConfig

_MOMENTUM = "momentum."


class FedAvgM(Coordinated, flwr_strategy.FedAvgM):
    """FedAvg's mean, then a server SGD step with momentum from the last model to it."""

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The momentum buffer, one array per weight array (``momentum.I``, ``state_dict``
        order); empty before the first round and without momentum."""
        return {f"{_MOMENTUM}{i}": v for i, v in enumerate(self.momentum_vector or [])}

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        """The momentum buffer of :meth:`state_arrays`."""
        expected = [f"{_MOMENTUM}{i}" for i in range(len(arrays))]
        if sorted(arrays) != sorted(expected):
            raise FedShiftError(
                "fed.aggregator=fedavgm: the checkpoint's server state should be "
                f"{_MOMENTUM}0..{len(arrays) - 1}, got {', '.join(sorted(arrays)[:3])}, ..."
            )
        self.momentum_vector = [np.asarray(arrays[k]) for k in expected] or None


def make(cfg: RunConfig, sites: Mapping[int, SiteInfo]) -> FedAvgM:
    return FedAvgM(
        cfg,
        sites,
        server_learning_rate=cfg.fed.server_learning_rate,
        server_momentum=cfg.fed.server_momentum,
    )
