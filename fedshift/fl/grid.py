"""The coordinator's side of talking to sites: who is connected, send and wait, readiness.

Shared by the round loop (:mod:`fedshift.fl.server`) and the secure statistics rounds
(:mod:`fedshift.fl.secure_rounds`). Every wait has a timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedshift.errors import FedShiftError
from fedshift.fl import keys
from fedshift.fl.records import reply_metrics, reply_site

log = logging.getLogger("fedshift.coordinator")


@dataclass(frozen=True)
class SiteInfo:
    node_id: int
    name: str
    level: str
    labelled: bool
    n_cases: int
    n_usable: int


def wait_for_nodes(grid: Grid, expected: int, timeout_s: float) -> list[int]:
    """Node ids once ``expected`` sites are connected; raises after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= expected:
            return nodes
        if time.monotonic() > deadline:
            raise FedShiftError(
                f"only {len(nodes)} of {expected} sites connected after {timeout_s:.0f} s"
            )
        time.sleep(1.0)


def send(grid: Grid, messages: Iterable[Message], timeout_s: float, what: str) -> list[Message]:
    messages = list(messages)
    replies = list(grid.send_and_receive(messages, timeout=timeout_s))
    ok = [r for r in replies if not r.has_error()]
    for r in replies:
        if r.has_error():
            log.error(
                "%s: node %d replied with an error: %s",
                what,
                r.metadata.src_node_id,
                r.error.reason,
            )
    if len(ok) < len(messages):
        log.warning("%s: %d of %d sites replied", what, len(ok), len(messages))
    return ok


def query_readiness(grid: Grid, nodes: list[int], timeout_s: float) -> dict[int, SiteInfo]:
    msgs = [
        Message(
            RecordDict({keys.CONFIG: ConfigRecord({})}),
            dst_node_id=n,
            message_type=keys.QUERY_READINESS,
        )
        for n in nodes
    ]
    sites = {}
    for reply in send(grid, msgs, timeout_s, "readiness"):
        site = reply.content.config_records[keys.SITE]
        counts = reply_metrics(reply.content)
        node = reply.metadata.src_node_id
        sites[node] = SiteInfo(
            node,
            str(site[keys.SITE_NAME]),
            str(site[keys.LEVEL]),
            bool(site[keys.LABELLED]),
            int(counts[keys.N_CASES]),
            int(counts[keys.N_USABLE]),
        )
    return sites


def by_site(replies: list[Message]) -> list[Message]:
    """Replies in site-name order, so aggregation sums in the same order every run."""
    return sorted(replies, key=lambda r: reply_site(r.content))
