"""A Flower Grid in one process that runs FedShift's real ClientApp for each message."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from flwr.app import Context, Message, RecordDict
from flwr.common import serde

from fedshift.fl.apps import make_client_app
from fedshift.runconfig import RunConfig, flatten


class LocalGrid:
    """A Grid in one process: ``push_messages`` runs the ClientApp at once and keeps the
    replies for ``pull_messages``; ``drop`` leaves out replies of (type, node)."""

    def __init__(self, cfg: RunConfig, names: dict[int, str]) -> None:
        self.app = make_client_app(flatten(cfg))
        self.root = Path(cfg.out).parent  # each node's folders: data (unread), work (audit)
        self.contexts = {
            n: Context(
                run_id=7,
                node_id=n,
                node_config={"data-path": str(self.root / name), "work-dir": self.work(name)},
                state=RecordDict(),
                run_config={},
            )
            for n, name in names.items()
        }
        self.drop: set[tuple[str, int]] = set()
        self.sent: list[RecordDict] = []  # what reached the coordinator
        self.pull_interval = 0.0
        self.waiting: dict[str, Message] = {}

    def work(self, name: str) -> str:
        """Site ``name``'s work folder."""
        return str(self.root / "work" / name)

    def get_node_ids(self) -> list[int]:
        return sorted(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            msg = serde.message_from_proto(serde.message_to_proto(msg))
            msg.metadata.__dict__["_message_id"] = msg.object_id  # what the SuperLink sets
            ids.append(msg.metadata.message_id)
            reply = self.app(msg, self.contexts[node])
            if (msg.metadata.message_type, node) in self.drop:
                continue
            reply = serde.message_from_proto(serde.message_to_proto(reply))
            self.sent.append(reply.content)
            self.waiting[msg.metadata.message_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self.waiting.pop(i) for i in list(message_ids) if i in self.waiting]
