"""The coordinator's side of talking to sites: who is connected, send and wait, readiness.

Shared by the round loop (:mod:`fedshift.fl.server`) and the secure statistics rounds
(:mod:`fedshift.fl.secure_rounds`). Every wait has a timeout. :func:`send` pushes the
messages and pulls the replies as they arrive (what Flower's ``send_and_receive`` does,
with the same timeout), so the console can count the sites that are done
(:class:`fedshift.logs.Progress`).
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
from fedshift.logs import Progress

log = logging.getLogger("fedshift.coordinator")
#: seconds between two pulls of the replies, where the grid does not set its own (Flower's
#: in-memory grid of the simulation polls every 0.1 s, its HTTP grid every 3 s)
PULL_INTERVAL_S = 1.0


@dataclass(frozen=True)
class SiteInfo:
    node_id: int
    name: str
    level: str
    labelled: bool
    n_cases: int
    n_usable: int
    spacing: tuple[float, float, float] | None = None  # mm, RAS: what its images are at


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
    """Send ``messages`` and wait up to ``timeout_s`` for their replies; returns the replies
    without an error (errors are logged). ``what`` names the step in the log and on the
    progress bar (sites done / total)."""
    messages = list(messages)
    replies = collect_replies(grid, messages, timeout_s, what)
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


def collect_replies(
    grid: Grid, messages: list[Message], timeout_s: float, what: str
) -> list[Message]:
    """Push ``messages``, then pull their replies as they come until all are in or
    ``timeout_s`` has passed, counting them on a :class:`~fedshift.logs.Progress`."""
    pending = set(grid.push_messages(messages))
    interval = float(getattr(grid, "pull_interval", PULL_INTERVAL_S))
    deadline = time.monotonic() + timeout_s
    replies: list[Message] = []
    with Progress(len(pending), what, unit="sites", logger=log) as progress:
        while pending:
            for reply in grid.pull_messages(list(pending)):
                if reply.metadata.reply_to_message_id in pending:
                    pending.discard(reply.metadata.reply_to_message_id)
                    replies.append(reply)
                    progress.update()
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(interval)
    return replies


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
        spacing = reply.content.metric_records[keys.METRICS].get(keys.SPACING)
        node = reply.metadata.src_node_id
        sites[node] = SiteInfo(
            node,
            str(site[keys.SITE_NAME]),
            str(site[keys.LEVEL]),
            bool(site[keys.LABELLED]),
            int(counts[keys.N_CASES]),
            int(counts[keys.N_USABLE]),
            _spacing(spacing),
        )
    return sites


def _spacing(value: object) -> tuple[float, float, float] | None:
    if isinstance(value, list | tuple) and len(value) == 3:
        return float(value[0]), float(value[1]), float(value[2])
    return None


def by_site(replies: list[Message]) -> list[Message]:
    """Replies in site-name order, so aggregation sums in the same order every run."""
    return sorted(replies, key=lambda r: reply_site(r.content))
