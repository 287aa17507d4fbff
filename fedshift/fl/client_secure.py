"""ClientApp handlers of a secure sum (statistics or model updates) and of the reference
broadcast.

One SecAgg round is four messages (``query.secagg_keys`` .. ``query.secagg_unmask``; in a
secure model-update round the train message is step 0, :func:`masked_update_reply`); the
site's :class:`~fedshift.secagg.site.SiteSession` (private keys, seed, peers' shares)
and its statistics vector live in Flower's node-local ``context.state`` between them and
are never sent: only public keys, ciphertexts, the masked vector and unmasking shares
leave the site. ``query.reference`` then brings the federation's reference; the site
measures its indicators against it with its own statistics (kept in its work folder,
:class:`~fedshift.site.files.ShiftFolder`) and replies scalars only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from fedshift import policy
from fedshift.errors import SecureAggregationError
from fedshift.fl import keys
from fedshift.fl.records import from_arrays, run_config, site_record
from fedshift.secagg.secure import (
    KeyDirectory,
    SecAggConfig,
    ShareInbox,
    SiteSession,
    UnmaskRequest,
)
from fedshift.shift.reference import Reference

if TYPE_CHECKING:
    from fedshift.site.worker import SiteWorker

log = logging.getLogger(__name__)

#: context.state keys; node-local, never sent
STATE_SESSION = "fedshift.secagg-session"  # ConfigRecord: SiteSession.to_state() (secrets)
STATE_STATS = "fedshift.stats"  # ArrayRecord: this site's statistics vector
STATE_META = "fedshift.stats-meta"  # ConfigRecord: the round id of STATE_STATS
_VECTOR = "vector"


def _reply(msg: Message, payload: Mapping[str, Any], **arrays: np.ndarray) -> Message:
    content = RecordDict({keys.SECAGG: ConfigRecord(dict(payload))})
    if arrays:
        content[keys.SECAGG_VALUES] = ArrayRecord({k: Array(v) for k, v in arrays.items()})
    return Message(content, reply_to=msg)


def make_worker(context: Context, defaults: Mapping[str, Any] | None = None) -> SiteWorker:
    """:func:`fedshift.fl.client.make_worker`, imported when a step needs the site's data:
    it brings torch and MONAI, and the key, share and unmask steps start without them."""
    from fedshift.fl import client

    return client.make_worker(context, defaults)


def _session(context: Context, round_id: str) -> SiteSession:
    if STATE_SESSION not in context.state.config_records:
        raise SecureAggregationError(f"round {round_id!r}: this site holds no session")
    return SiteSession.from_state(dict(context.state.config_records[STATE_SESSION]))


def _keep(context: Context, session: SiteSession) -> None:
    context.state[STATE_SESSION] = ConfigRecord(session.to_state())


def _vector(context: Context, round_id: str) -> np.ndarray:
    meta = context.state.config_records.get(STATE_META)
    if meta is None or meta.get(keys.ROUND_ID) != round_id:
        raise SecureAggregationError(f"this site holds no statistics of round {round_id!r}")
    return context.state.array_records[STATE_STATS][_VECTOR].numpy()


def handle_keys(
    msg: Message, context: Context, defaults: Mapping[str, Any] | None = None
) -> Message:
    """Step 0: compute the statistics under the global weights, keep them, advertise keys."""
    from fedshift.site.stats import clip_headroom  # torch: only the steps that need it

    cfg = run_config(context, defaults)
    worker = make_worker(context, defaults)
    config = msg.content.config_records[keys.CONFIG]
    round_id = str(config[keys.ROUND_ID])
    secagg = cfg.fed.secagg()
    local = worker.statistics(
        from_arrays(msg.content.array_records[keys.ARRAYS]),
        int(config[keys.STATS_ROUND]),
        cfg.fed.stats_samples,
        round_id,
        threshold=float(config[keys.THRESHOLD]) if keys.THRESHOLD in config else None,
    )
    vector = local.stats.to_vector()
    if clip_headroom(vector, secagg) > 1.0:  # site-local log; no value leaves
        log.warning(
            "site %s: some statistics exceed fed.secagg_clip=%g and will be clipped",
            worker.name,
            secagg.clip,
        )
    reply = _reply(msg, _open_session(context, round_id, vector, secagg))
    reply.content[keys.SITE] = site_record(worker.name)
    return reply


def _open_session(
    context: Context, round_id: str, vector: np.ndarray, secagg: SecAggConfig
) -> dict[str, Any]:
    """Keep ``vector`` (this site's input to the round) and a fresh session in the
    node-local state; the public keys to advertise."""
    context.state[STATE_STATS] = ArrayRecord({_VECTOR: Array(vector)})
    context.state[STATE_META] = ConfigRecord({keys.ROUND_ID: round_id})
    session = SiteSession(context.node_id, round_id, secagg)
    advert = session.advertise()
    _keep(context, session)
    return advert.to_dict()


def update_vector(weights: list[np.ndarray], fedavg_weight: float) -> np.ndarray:
    """A site's input to a secure model-update round: its trained weights flattened and
    multiplied by its FedAvg weight, then the weight itself (the last element), so that
    the sum over sites holds the numerator and the denominator of the weighted mean."""
    parts = [np.asarray(w, dtype=np.float64).ravel() * fedavg_weight for w in weights]
    return np.concatenate([*parts, np.array([fedavg_weight], np.float64)])


def masked_update_reply(
    msg: Message,
    context: Context,
    weights: list[np.ndarray],
    metrics: MetricRecord,
    site: str,
    defaults: Mapping[str, Any] | None = None,
) -> Message:
    """Step 0 of a secure model-update round (``fed.secure_updates``), answered in place
    of a plain train reply: the trained ``weights`` stay at the site (as
    :func:`update_vector`, with the FedAvg weight the coordinator set: ``metrics``' case
    count times the message's ``keys.FEDAVG_SCALE``); the reply carries ``metrics``
    (scalars), the site's name and its public keys, no array. Steps 1-3 are the handlers
    below, as for statistics."""
    config = msg.content.config_records[keys.CONFIG]
    uniform = keys.CLIP_NORM in config  # differential privacy: every site counts the same
    weight = policy.fedavg_weight(metrics[keys.NUM_EXAMPLES], config[keys.FEDAVG_SCALE], uniform)
    vector = update_vector(weights, weight)
    secagg = run_config(context, defaults).fed.secagg()
    reply = _reply(msg, _open_session(context, str(config[keys.ROUND_ID]), vector, secagg))
    reply.content[keys.METRICS] = metrics
    reply.content[keys.SITE] = site_record(site)
    return reply


def handle_shares(
    msg: Message, context: Context, defaults: Mapping[str, Any] | None = None
) -> Message:
    """Step 1: key directory in, Shamir shares encrypted to each peer out."""
    directory = KeyDirectory.from_dict(msg.content.config_records[keys.SECAGG])
    session = _session(context, directory.round_id)
    packets = session.share_keys(directory)
    _keep(context, session)
    return _reply(msg, packets.to_dict())


def handle_masked(
    msg: Message, context: Context, defaults: Mapping[str, Any] | None = None
) -> Message:
    """Step 2: the peers' shares in, this site's vector out, encoded and masked."""
    inbox = ShareInbox.from_dict(msg.content.config_records[keys.SECAGG])
    session = _session(context, inbox.round_id)
    masked = session.masked_input(inbox, _vector(context, inbox.round_id))
    del context.state[STATE_STATS]  # masked now; a model-size vector need not ride along
    if session.n_clipped:
        log.warning(
            "site node %d: %d statistics were clipped to fed.secagg_clip",
            context.node_id,
            session.n_clipped,
        )
    _keep(context, session)
    payload = masked.to_dict()
    values = payload.pop("values")
    return _reply(msg, payload, values=values)


def handle_unmask(
    msg: Message, context: Context, defaults: Mapping[str, Any] | None = None
) -> Message:
    """Step 3: who survived in, shares to remove the masks out; the session ends here."""
    request = UnmaskRequest.from_dict(msg.content.config_records[keys.SECAGG])
    session = _session(context, request.round_id)
    response = session.unmask(request)
    del context.state[STATE_SESSION]
    return _reply(msg, response.to_dict())


def handle_reference(
    msg: Message, context: Context, defaults: Mapping[str, Any] | None = None
) -> Message:
    """The reference in; this site's shift indicators (scalars) out."""
    worker = make_worker(context, defaults)
    round_id = str(msg.content.config_records[keys.CONFIG][keys.ROUND_ID])
    record = msg.content.array_records[keys.REFERENCE]
    reference = Reference.from_arrays({k: v.numpy() for k, v in record.items()})
    indicators = worker.receive_reference(reference, round_id)
    values = {
        k: float(v)
        for k, v in asdict(indicators).items()
        if k != "site" and v is not None and np.isfinite(v)
    }
    content = RecordDict(
        {keys.INDICATORS: MetricRecord(values), keys.SITE: site_record(worker.name)}
    )
    return Message(content, reply_to=msg)
