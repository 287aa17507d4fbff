"""What a strategy meets in a unit test: a site's answer to a train message, and a grid
that only lists node ids (no Flower process runs)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from fedshift.fl import keys
from fedshift.fl.records import to_arrays


class NodeList:
    """What FedAvg.configure_train asks of a Grid: the connected node ids."""

    def __init__(self, node_ids: Iterable[int]) -> None:
        self.node_ids = sorted(node_ids)

    def get_node_ids(self) -> list[int]:
        return self.node_ids


def train_reply(node: int, site: str, model: np.ndarray, cases: int) -> Message:
    """Site ``site``'s (node ``node``) reply to a train message: its model and case count."""
    content = RecordDict(
        {
            keys.ARRAYS: to_arrays([model]),
            keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: cases}),
            keys.SITE: ConfigRecord({keys.SITE_NAME: site}),
        }
    )
    sent = Message(RecordDict({}), dst_node_id=node, message_type=keys.TRAIN)
    return Message(content, reply_to=sent)
