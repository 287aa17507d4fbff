"""One secure sum over Flower messages, the coordinator's side: it relays public keys
and ciphertexts it cannot read between the sites and learns only the sum of their vectors
(:class:`~fedshift.secagg.secure.AggregatorSession`; the sites' side is
:mod:`fedshift.fl.client_secure`).

Step 0 (the sites make their vector and advertise keys) is the caller's message: a
``query.secagg_keys`` for statistics (:mod:`fedshift.fl.secure_rounds`), the train message
itself for model updates (:mod:`fedshift.fl.secure_updates`). :func:`deliver_keys` hands its
replies to the session, :func:`finish_secure_sum` runs steps 1-3.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedshift.errors import SecureAggregationError
from fedshift.fl import keys
from fedshift.fl.grid import send
from fedshift.secagg.secure import (
    AdvertiseKeys,
    AggregatorSession,
    MaskedInput,
    SecureSumResult,
    SharePackets,
    UnmaskResponse,
)
from fedshift.secagg.secure import Message as ProtocolMessage

log = logging.getLogger("fedshift.coordinator")


def exchange(
    grid: Grid,
    contents: Mapping[int, RecordDict],
    message_type: str,
    round_id: str,
    timeout_s: float,
) -> dict[int, RecordDict]:
    """Send one message per node; the replies' contents by node (error replies logged
    and left out), with the sites done counted on the console."""
    msgs = [
        Message(content, dst_node_id=node, message_type=message_type, group_id=round_id)
        for node, content in contents.items()
    ]
    step = f"secure sum: {message_type.removeprefix('query.')}"
    return {r.metadata.src_node_id: r.content for r in send(grid, msgs, timeout_s, step)}


def _secagg(content: RecordDict) -> dict[str, Any]:
    return dict(content.config_records[keys.SECAGG])


def _deliver(
    replies: Mapping[int, RecordDict],
    kind: type[ProtocolMessage],
    receive: Callable[[Any], None],
    parse: Callable[[RecordDict], dict[str, Any]] = _secagg,
) -> None:
    """Hand each reply to the aggregator; a malformed one counts as a site that dropped."""
    for node, content in sorted(replies.items()):
        try:
            msg = kind.from_dict(parse(content))
            sender = getattr(msg, "site", getattr(msg, "sender", None))
            if sender != node:
                raise SecureAggregationError(f"{kind.kind} claims site {sender}")
            receive(msg)
        except (SecureAggregationError, KeyError, TypeError) as exc:
            log.error("secure sum: node %d left out: %s", node, exc)


def _masked(content: RecordDict) -> dict[str, Any]:
    values = content.array_records[keys.SECAGG_VALUES]["values"].numpy()
    return {**_secagg(content), "values": values}


def _request(payload: ProtocolMessage) -> RecordDict:
    return RecordDict({keys.SECAGG: ConfigRecord(payload.to_dict())})


def deliver_keys(replies: Mapping[int, RecordDict], agg: AggregatorSession) -> None:
    """Step 0's replies (node -> content with the site's public keys) to ``agg``."""
    _deliver(replies, AdvertiseKeys, agg.receive_keys)


def finish_secure_sum(grid: Grid, agg: AggregatorSession, timeout: float) -> SecureSumResult:
    """Steps 1-3 of a round whose keys ``agg`` has received (:func:`deliver_keys`): relay
    the encrypted shares, collect the masked vectors, unmask the sum over the survivors.

    Raises
    ------
    SecureAggregationError
        fewer than the round's minimum of sites are left at some step.
    """
    round_id = agg.round_id
    directory = agg.directory()
    contents = {n: _request(directory) for n in directory.sites}
    replies = exchange(grid, contents, keys.QUERY_SECAGG_SHARES, round_id, timeout)
    _deliver(replies, SharePackets, agg.receive_shares)
    contents = {n: _request(inbox) for n, inbox in agg.inboxes().items()}
    replies = exchange(grid, contents, keys.QUERY_SECAGG_MASKED, round_id, timeout)
    _deliver(replies, MaskedInput, agg.receive_masked, parse=_masked)
    request = agg.unmask_request()
    contents = {n: _request(request) for n in request.survivors}
    replies = exchange(grid, contents, keys.QUERY_SECAGG_UNMASK, round_id, timeout)
    _deliver(replies, UnmaskResponse, agg.receive_unmask)
    return agg.result()
