"""What FedShift adds to any Flower strategy: who trains, the align flag, the threshold a
site without labels reads its own labels with, and the FedAvg weights the coordinator sets.

An aggregator is a Flower strategy class with :class:`Coordinated` in front of it in the
bases (``class FedAvg(Coordinated, flwr.serverapp.strategy.FedAvg)``): it overrides
``configure_train`` and ``aggregate_train`` and calls ``super()``, so the aggregation rule
stays Flower's. The decisions themselves are :mod:`fedshift.policy`'s (no Flower there).

A strategy that keeps state between rounds (a server optimiser's moments) hands it to the
checkpoint as named arrays (:meth:`Coordinated.state_arrays`) and takes it back on resume
(:meth:`Coordinated.load_state`); FedAvg and FedProx keep none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid

from fedshift import policy
from fedshift.errors import FedShiftError
from fedshift.fl import keys
from fedshift.fl.grid import SiteInfo, by_site
from fedshift.fl.privacy import SiteLevelDP
from fedshift.fl.records import from_arrays, reply_site, to_arrays
from fedshift.runconfig import RunConfig

log = logging.getLogger("fedshift.coordinator")


def set_fedavg_weights(
    replies: Iterable[Message], scale: Mapping[int, float], uniform: bool = False
) -> None:
    """Write the weight FedAvg averages each reply's update with (``keys.FEDAVG_WEIGHT``,
    :func:`fedshift.policy.fedavg_weight`): the site's training cases times ``scale`` of
    its node (1 where absent), or 1 each when ``uniform``. The coordinator sets it, so a
    site cannot choose its own weight beyond its case count."""
    for reply in replies:
        metrics = reply.content.metric_records[keys.METRICS]
        factor = scale.get(reply.metadata.src_node_id, 1.0)
        metrics[keys.FEDAVG_WEIGHT] = policy.fedavg_weight(
            metrics[keys.NUM_EXAMPLES], factor, uniform
        )


def _arrays(reply: Message) -> ArrayRecord:
    return reply.content.array_records[keys.ARRAYS]


def _update_norm(model: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray]) -> float:
    """The L2 norm of a site's model minus the model it was sent, over all weights."""
    total = 0.0
    for key, weights in model.items():
        diff = weights.astype(np.float64) - sent[key]
        total += float(np.dot(diff.ravel(), diff.ravel()))
    return float(np.sqrt(total))


class Coordinated:
    """Mixin in front of a Flower strategy (see the module docstring).

    Parameters
    ----------
    cfg : the run's config (``fed.*`` gates, ``seg.align.method``)
    sites : node id -> what the site answered to the readiness query
    kwargs : the Flower strategy's own settings (e.g. ``proximal_mu``)
    """

    def __init__(self, cfg: RunConfig, sites: Mapping[int, SiteInfo], **kwargs: Any) -> None:
        standing = [policy.SiteStanding(s.name, s.level, s.labelled) for s in sites.values()]
        trainers, adapters = policy.trainers(cfg, standing), policy.adapters(cfg, standing)
        self.cfg = cfg
        self.trainer_nodes = {n for n, s in sites.items() if s.name in trainers}
        self.adapter_nodes = {n for n, s in sites.items() if s.name in adapters}
        n = len(self.trainer_nodes | self.adapter_nodes)
        # Flower samples every connected node (fraction 1) and would wait, without a time
        # limit, for min_available_nodes: a site that is down when a round starts must not
        # stall the run, so one suffices; configure_train keeps the sites that train, and
        # fed.min_train_sites decides whether the round's updates are enough.
        super().__init__(  # type: ignore[call-arg]
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=1,
            min_available_nodes=1,
            weighted_by_key=keys.FEDAVG_WEIGHT,
            **kwargs,
        )
        self.val_dice: float | None = None
        self.threshold: float | None = None
        self.aligned = False  # whether the last configured round aligns
        self.sent: dict[str, np.ndarray] = {}  # the model the last round sent
        self.refused: dict[str, str] = {}  # site -> why its last update was left out
        # fed.dp_epsilon: clipped updates, uniform weights, a noised mean
        self.dp = SiteLevelDP(cfg.fed, n) if cfg.fed.dp_epsilon > 0 else None

    def observe_validation(self, val: Mapping[str, Mapping[str, float]]) -> None:
        """The last round's validation metrics (site -> metrics): they decide the next
        round's align flag and the threshold sent to sites without labels."""
        self.val_dice = policy.mean_val_dice(val, keys.NUM_EXAMPLES)
        self.threshold = policy.federation_threshold(val, keys.NUM_EXAMPLES)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Flower's messages, kept for the sites that train this round: the trainers, and
        the sites without labels too when the round aligns."""
        self.aligned = policy.aligns(self.cfg, server_round, self.val_dice)
        config[keys.ALIGN] = self.aligned
        if self.dp is not None:
            config[keys.CLIP_NORM] = float(self.dp.clip_norm)
        if self.threshold is not None:
            config[keys.THRESHOLD] = float(self.threshold)
        nodes = self.trainer_nodes | (self.adapter_nodes if self.aligned else set())
        self.sent = {k: a.numpy() for k, a in arrays.items()}
        messages = super().configure_train(server_round, arrays, config, grid)  # type: ignore[misc]
        return [m for m in messages if m.metadata.dst_node_id in nodes]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's aggregation over the replies in site-name order (the same summation
        order every run), each weighted by the weight the coordinator sets; with
        differential privacy the mean is noised (:class:`~fedshift.fl.privacy.SiteLevelDP`)."""
        ordered = self.screen(server_round, [self._as_sent(r) for r in by_site(list(replies))])
        set_fedavg_weights(ordered, self.weight_scale(), uniform=self.dp is not None)
        arrays, metrics = super().aggregate_train(server_round, ordered)  # type: ignore[misc]
        if self.dp is not None and arrays is not None:
            summed = sum(
                int(r.content.metric_records[keys.METRICS].get(keys.SUMMED_SITES, 1))
                for r in ordered
            )
            arrays = to_arrays(self.dp.noised(from_arrays(arrays), summed))
        return arrays, metrics

    def _as_sent(self, reply: Message) -> Message:
        """``reply`` with its weights in the dtypes of the model sent (a site may send
        float16, ``fed.update_dtype``): the mean is taken in the model's own precision."""
        reply.content[keys.ARRAYS] = self.in_sent_dtypes(_arrays(reply))
        return reply

    def in_sent_dtypes(self, arrays: ArrayRecord) -> ArrayRecord:
        """``arrays`` in the dtypes of the model the round sent (as they are where they
        match, or where the round sent no array of that name)."""
        sent = self.sent
        if all(k not in sent or np.dtype(a.dtype) == sent[k].dtype for k, a in arrays.items()):
            return arrays
        return ArrayRecord(
            {
                k: Array(a.numpy().astype(sent[k].dtype) if k in sent else a.numpy())
                for k, a in arrays.items()
            }
        )

    def screen(self, server_round: int, replies: list[Message]) -> list[Message]:
        """The replies whose update may be averaged in; the others are logged, named in
        :attr:`refused` and left out: weights with NaN or infinite values, and (with at
        least three replies) an update ``x_site - x_sent`` whose L2 norm exceeds
        ``fed.update_norm_limit`` times the round's median."""
        self.refused = {}
        finite, models = [], []
        for reply in replies:
            model = {k: a.numpy() for k, a in _arrays(reply).items()}
            if all(np.isfinite(w).all() for w in model.values()):
                finite.append(reply)
                models.append(model)
            else:
                self.refused[reply_site(reply.content)] = "NaN or infinite weights"
        limit = self.cfg.fed.update_norm_limit
        kept = finite
        if limit > 0 and len(finite) >= 3 and self.sent:
            norms = [_update_norm(m, self.sent) for m in models]
            median = float(np.median(norms))
            kept = []
            for reply, norm in zip(finite, norms, strict=True):
                if median > 0 and norm > limit * median:
                    self.refused[reply_site(reply.content)] = (
                        f"update norm {norm:.3g} > {limit:g} x the round's median {median:.3g}"
                    )
                else:
                    kept.append(reply)
        for site, why in self.refused.items():
            log.error("round %d: the update of site %s is refused: %s", server_round, site, why)
        return kept

    def weight_scale(self) -> dict[int, float]:
        """node -> the factor of its case count in its FedAvg weight, where not 1: a site
        without labels counts ``fed.unlabelled_weight`` per case (with differential privacy
        every site counts 1, whatever its cases)."""
        if self.dp is not None:
            return {}
        return {n: self.cfg.fed.unlabelled_weight for n in self.adapter_nodes}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """What the aggregation rule carries from one round to the next, for the round's
        checkpoint (name -> array; empty: none, as for FedAvg and FedProx). The last
        validation is not in it: the checkpoint's rounds hold that."""
        return {}

    def load_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Take back what :meth:`state_arrays` gave, from a resumed run's checkpoint.

        Raises
        ------
        FedShiftError
            ``arrays`` holds something this aggregator does not keep.
        """
        if arrays:
            raise FedShiftError(
                f"fed.aggregator={self.cfg.fed.aggregator} keeps no state between rounds, "
                f"but the checkpoint holds {', '.join(sorted(arrays)[:3])}, ..."
            )

    def describe(self, sites: Mapping[int, SiteInfo]) -> dict[str, Any]:
        """The strategy's record in the checkpoint (its state between rounds, if any, is
        :meth:`state_arrays`)."""
        return {
            "aggregator": self.cfg.fed.aggregator,
            "align_method": self.cfg.seg.align.method,
            "trainers": sorted(sites[n].name for n in self.trainer_nodes | self.adapter_nodes),
        }
