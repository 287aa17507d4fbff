"""Secure aggregation of model updates (``fed.secure_updates``): the coordinator learns the
weighted mean of the sites' trained models, never one site's model or its FedAvg weight.

A training round becomes one secure sum (:mod:`fedshift.fl.secure_sum`) whose step 0 is the
train message itself. The message names the secure round (``keys.ROUND_ID``) and the
factor the coordinator sets for the site's FedAvg weight (``keys.FEDAVG_SCALE``: 1, or
``fed.unlabelled_weight`` at a site without labels). Each site trains, keeps its weights,
and answers with its scalar metrics and public keys
(:func:`fedshift.fl.client_secure.masked_update_reply`); it then sends
``[w * weights..., w]`` masked, ``w`` its case count times the factor. The sum over the
surviving sites gives the numerator and the denominator of FedAvg's weighted mean, so a
site that drops after sharing its keys leaves the mean of the others. The coordinator
checks the unmasked total weight against the case counts the sites reported, then hands
the mean to the aggregator as one reply: FedAvg and FedProx keep it, the server
optimisers (fedavgm, fedadam, fedyogi) step from it as from any mean.

What the coordinator still sees per site: the scalar training metrics (loss, learning
rate, case count), as in a plain round. Fixed point (``fed.secagg_frac_bits``) rounds each
weight to 2**-frac_bits before the mean.
"""

from __future__ import annotations

import logging
import secrets

import numpy as np
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from fedshift import policy
from fedshift.errors import SecureAggregationError
from fedshift.fl import keys
from fedshift.fl.grid import send
from fedshift.fl.records import from_arrays, reply_metrics, reply_site, site_record, to_arrays
from fedshift.fl.secure_sum import deliver_keys, finish_secure_sum
from fedshift.fl.strategies.base import Coordinated
from fedshift.runconfig import RunConfig
from fedshift.secagg.secure import AggregatorSession

log = logging.getLogger("fedshift.coordinator")

#: the sender of the one reply that carries the secure mean into the aggregator
SUM_NODE = 0
SUM_SITE = "secure-sum"


def secure_train_round(
    grid: Grid, strategy: Coordinated, rnd: int, weights: list[np.ndarray], cfg: RunConfig
) -> tuple[list[np.ndarray], dict[str, dict[str, float]]]:
    """:func:`fedshift.fl.server.train_round` with the updates securely aggregated: the
    new global weights and site -> training metrics.

    Raises
    ------
    SecureAggregationError
        fewer than ``fed.secagg_min_sites`` sites train or survive, or the unmasked total
        weight differs from the sites' case counts (a site sent another weight).
    """
    secagg = cfg.fed.secagg()
    round_id = f"{cfg.name}/update-{rnd}/{secrets.token_hex(8)}"
    config = ConfigRecord({keys.ROUND_ID: round_id})
    planned = list(strategy.configure_train(rnd, to_arrays(weights), config, grid))
    secagg.check_sites(len(planned), f"sites training in round {rnd} (fed.secure_updates)")
    scale = strategy.weight_scale()
    messages = [_with_scale(m, scale.get(m.metadata.dst_node_id, 1.0)) for m in planned]
    replies = send(grid, messages, cfg.fed.timeout_s, f"train round {rnd} (secure updates)")
    agg = AggregatorSession(round_id, secagg)
    deliver_keys({r.metadata.src_node_id: r.content for r in replies}, agg)
    result = finish_secure_sum(grid, agg, cfg.fed.timeout_s)
    policy.check_round_updates(cfg, rnd, len(result.sites), len(planned))
    reported = {
        r.metadata.src_node_id: (reply_site(r.content), reply_metrics(r.content)) for r in replies
    }
    cases = {node: m[keys.NUM_EXAMPLES] for node, (_, m) in reported.items()}
    uniform = strategy.dp is not None
    expected = sum(policy.fedavg_weight(cases[n], scale.get(n, 1.0), uniform) for n in result.sites)
    mean, total = weighted_mean(result.total, weights)
    tolerance = len(result.sites) * 2.0**-secagg.frac_bits + 1e-9
    if not np.isfinite(total) or abs(total - expected) > tolerance or total <= 0:
        raise SecureAggregationError(
            f"round {rnd}: the masked FedAvg weights sum to {total:g}, the case counts the "
            f"sites reported give {expected:g}; a site sent a weight the coordinator did not "
            "set, so the round is refused"
        )
    if result.dropped:
        log.warning("round %d: %d site(s) dropped after sharing keys", rnd, len(result.dropped))
    arrays, _ = strategy.aggregate_train(rnd, [_mean_reply(mean, total, len(result.sites))])
    if arrays is None:
        raise SecureAggregationError(f"round {rnd}: the aggregator refused the secure mean")
    # as a plain round records them: with the weight the coordinator set
    metrics = {
        site: {
            **values,
            keys.FEDAVG_WEIGHT: policy.fedavg_weight(cases[node], scale.get(node, 1.0), uniform),
        }
        if node in result.sites
        else {**values, keys.DROPPED: 1.0}  # trained, but not in the sum
        for node, (site, values) in reported.items()
    }
    return from_arrays(arrays), metrics


def weighted_mean(total: np.ndarray, like: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """The mean weights and the total FedAvg weight from the unmasked sum of the sites'
    :func:`~fedshift.fl.client_secure.update_vector`; arrays shaped and typed as ``like``."""
    sizes = [w.size for w in like]
    if total.shape != (sum(sizes) + 1,):
        raise SecureAggregationError(
            f"the secure sum holds {total.size} values, the model {sum(sizes)} (+1 weight)"
        )
    weight = float(total[-1])
    flat = total[:-1] / weight if weight > 0 else np.full(total.size - 1, np.nan)
    parts = np.split(flat, np.cumsum(sizes)[:-1])
    return [p.reshape(w.shape).astype(w.dtype) for p, w in zip(parts, like, strict=True)], weight


def _with_scale(msg: Message, factor: float) -> Message:
    """``msg`` for one site with its FedAvg factor (Flower's messages share one content)."""
    content = msg.content
    config = ConfigRecord({**dict(content.config_records[keys.CONFIG]), keys.FEDAVG_SCALE: factor})
    record = RecordDict({keys.ARRAYS: content.array_records[keys.ARRAYS], keys.CONFIG: config})
    return Message(record, dst_node_id=msg.metadata.dst_node_id, message_type=keys.TRAIN)


def _mean_reply(mean: list[np.ndarray], total_weight: float, sites: int) -> Message:
    """The secure mean as the one reply an aggregator averages (weight: the total; it
    names how many sites it sums, which differential privacy's noise needs)."""
    content = RecordDict(
        {
            keys.ARRAYS: to_arrays(mean),
            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: total_weight, keys.SUMMED_SITES: sites}),
            keys.SITE: site_record(SUM_SITE),
        }
    )
    sent = Message(RecordDict({}), dst_node_id=SUM_NODE, message_type=keys.TRAIN)
    return Message(content, reply_to=sent)
