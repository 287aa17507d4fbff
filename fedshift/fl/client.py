"""ClientApp handlers: one Flower message -> one :class:`SiteWorker` call -> one reply.

The site's folders are the node's (:mod:`fedshift.fl.node`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

from fedshift.fl import keys
from fedshift.fl.node import PARTITION, node_site
from fedshift.fl.records import from_arrays, metrics_record, run_config, site_record, to_arrays
from fedshift.site.worker import SiteWorker, site_worker

log = logging.getLogger(__name__)


def make_worker(context: Context, defaults: Mapping[str, Any] | None = None) -> SiteWorker:
    cfg, data, work = node_site(context, defaults)
    if PARTITION in context.node_config:  # simulated site: its share of this machine's cores
        torch.set_num_threads(max(1, int(cfg.simulation.cpus_per_site)))
    return site_worker(cfg, data, work)


def handle_readiness(
    msg: Message, context: Context, defaults: Mapping[str, Any] | None = None
) -> Message:
    """Run readiness; reply with the level and counts only."""
    worker = make_worker(context, defaults)
    r = worker.readiness()
    counts: dict[str, Any] = {keys.N_CASES: r.n_cases, keys.N_USABLE: r.n_usable}
    if r.spacing:
        counts[keys.SPACING] = [float(v) for v in r.spacing]
    content = RecordDict(
        {
            keys.SITE: site_record(r.site, **{keys.LEVEL: r.level, keys.LABELLED: r.labelled}),
            keys.METRICS: MetricRecord(counts),
        }
    )
    return Message(content, reply_to=msg)


def handle_train(
    msg: Message, context: Context, defaults: Mapping[str, Any] | None = None
) -> Message:
    worker = make_worker(context, defaults)
    config: ConfigRecord = msg.content.config_records[keys.CONFIG]
    sent = from_arrays(msg.content.array_records[keys.ARRAYS])
    outcome = worker.train(
        sent,
        server_round=int(config[keys.SERVER_ROUND]),
        proximal_mu=float(config.get(keys.PROXIMAL_MU, 0.0)),
        threshold=float(config[keys.THRESHOLD]) if keys.THRESHOLD in config else None,
        align=bool(config.get(keys.ALIGN, True)),
    )
    metrics = metrics_record(outcome.metrics, outcome.num_examples)
    weights = outcome.weights
    if keys.CLIP_NORM in config:  # fed.dp_epsilon: the update leaves clipped
        from fedshift.fl.privacy import clip_update

        weights = clip_update(weights, sent, float(config[keys.CLIP_NORM]))
    if keys.ROUND_ID in config:  # fed.secure_updates: the weights leave only masked
        from fedshift.fl.client_secure import masked_update_reply

        return masked_update_reply(msg, context, weights, metrics, worker.name, defaults)
    dtype = run_config(context, defaults).fed.update_dtype
    content = RecordDict(
        {
            keys.ARRAYS: to_arrays([_as_update(w, dtype) for w in weights]),
            keys.METRICS: metrics,
            keys.SITE: site_record(worker.name),
        }
    )
    return Message(content, reply_to=msg)


def _as_update(weights: np.ndarray, dtype: str) -> np.ndarray:
    """A trained weight array as it travels (``fed.update_dtype``; floats only)."""
    if np.issubdtype(weights.dtype, np.floating) and weights.dtype != np.dtype(dtype):
        return weights.astype(dtype)
    return weights


def handle_evaluate(
    msg: Message, context: Context, defaults: Mapping[str, Any] | None = None
) -> Message:
    worker = make_worker(context, defaults)
    config: ConfigRecord = msg.content.config_records[keys.CONFIG]
    threshold = float(config[keys.THRESHOLD]) if keys.THRESHOLD in config else None
    metrics = worker.evaluate(
        from_arrays(msg.content.array_records[keys.ARRAYS]),
        split=str(config.get(keys.SPLIT, "val")),
        threshold=threshold,
        bures=bool(config.get(keys.BURES, False)),
    )
    n_cases = int(metrics.pop("n_cases", 0))
    content = RecordDict(
        {
            keys.METRICS: metrics_record(metrics, n_cases),
            keys.SITE: site_record(worker.name, **{keys.LABELLED: worker.layout.has_train_labels}),
        }
    )
    return Message(content, reply_to=msg)


def handle_model(
    msg: Message, context: Context, defaults: Mapping[str, Any] | None = None
) -> Message:
    """Keep the federation's final model as this site's package (``WORK/model``)."""
    from fedshift.site.model import keep_model

    worker = make_worker(context, defaults)
    config: ConfigRecord = msg.content.config_records[keys.CONFIG]
    package = json.loads(str(config[keys.PACKAGE]))
    path = keep_model(worker, from_arrays(msg.content.array_records[keys.ARRAYS]), package)
    site = site_record(worker.name, **{keys.MODEL_DIR: str(path)})
    return Message(RecordDict({keys.SITE: site}), reply_to=msg)
