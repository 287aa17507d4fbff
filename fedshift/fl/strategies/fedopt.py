"""What :mod:`~fedshift.fl.strategies.fedadam` and :mod:`~fedshift.fl.strategies.fedyogi`
share: Flower's FedOpt family (Reddi et al. 2021, "Adaptive Federated Optimization").

With ``x`` the global model sent and ``delta = mean - x`` (the case-weighted mean of the
sites' models minus it), each round updates the first moment
``m <- fed.beta_1 * m + (1 - fed.beta_1) * delta`` (from m = 0), the second moment ``v``
by the aggregator's own rule (from v = 0), and steps
``x <- x + eta * m / (sqrt(v) + fed.tau)`` with ``eta = fed.server_lr``.

Between rounds Flower keeps ``m_t`` and ``v_t``, which go into the checkpoint, and
``current_arrays``, which it sets from the model each round sends (``configure_train``):
on resume that is the checkpointed model, so it is not stored.

Flower's ``eta_l`` (the client learning rate) is only printed by its ``summary()``: no
update rule reads it (checked in flwr 1.42's fedopt.py, fedadam.py, fedyogi.py). The
sites train with ``seg.train.lr``, which is what it is set to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord

from fedshift.errors import FedShiftError
from fedshift.fl.strategies.base import Coordinated
from fedshift.runconfig import RunConfig

#: checkpoint names of the moments: ``m_t.KEY``, ``v_t.KEY`` (KEY: the ArrayRecord's key)
MOMENTS = ("m_t", "v_t")


def settings(cfg: RunConfig) -> dict[str, float]:
    """The FedOpt keyword arguments of ``cfg``."""
    return {
        "eta": cfg.fed.server_learning_rate,
        "eta_l": cfg.seg.train.lr,
        "beta_1": cfg.fed.beta_1,
        "beta_2": cfg.fed.beta_2,
        "tau": cfg.fed.tau,
    }


class ServerOptimiser(Coordinated):
    """:class:`Coordinated` for a Flower FedOpt strategy (put before it in the bases):
    the moments in the checkpoint, and the global model kept in the dtype it was sent in
    (Flower's FedAdam multiplies float32 weights by a float64 NumPy scalar, which NumPy 2
    promotes to float64)."""

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = super().aggregate_train(server_round, replies)
        return (None if arrays is None else self.in_sent_dtypes(arrays)), metrics

    def state_arrays(self) -> dict[str, np.ndarray]:
        """``m_t.KEY`` and ``v_t.KEY`` for every weight array; empty before round 1."""
        return {
            f"{name}.{key}": value
            for name in MOMENTS
            for key, value in (getattr(self, name) or {}).items()
        }

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        """The moments of :meth:`state_arrays`."""
        moments: dict[str, dict[str, np.ndarray]] = {name: {} for name in MOMENTS}
        for full, value in arrays.items():
            name, _, key = full.partition(".")
            if name not in moments or not key:
                raise FedShiftError(
                    f"fed.aggregator={self.cfg.fed.aggregator}: the checkpoint's server "
                    f"state holds {full!r}; expected m_t.KEY and v_t.KEY"
                )
            moments[name][key] = np.asarray(value)
        if moments["m_t"].keys() != moments["v_t"].keys():
            raise FedShiftError(
                f"fed.aggregator={self.cfg.fed.aggregator}: the checkpoint's m_t and v_t "
                "name different arrays"
            )
        for name, values in moments.items():
            setattr(self, name, values or None)
