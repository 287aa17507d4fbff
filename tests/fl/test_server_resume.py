"""The coordinator's rounds with a server optimiser: killed after round 1 and resumed from
the checkpoint, round 2 ends with the same global model as without the interruption.

Runs the coordinator's own round (``fedshift.fl.server.run_round``), checkpoint and
resume path (``RunFolder``, ``record_sites``) with real Flower messages; the sites are
stood in for by a grid that answers each training message with the model sent plus a
fixed change per site and round, and each evaluation with fixed metrics. The Flower
simulation of a resumed run is tests/fl/test_simulation.py's (plain FedAvg, slow)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from fedshift.config import load_config
from fedshift.fl import keys
from fedshift.fl.grid import SiteInfo
from fedshift.fl.records import from_arrays, to_arrays
from fedshift.fl.server import record_sites, run_round
from fedshift.fl.strategies import make_strategy
from fedshift.fl.strategies.base import Coordinated
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunFolder, RunState

SITES = {1: SiteInfo(1, "a", "A", True, 4, 4), 2: SiteInfo(2, "b", "A", True, 2, 2)}
CASES = {1: 4, 2: 2}


pytestmark = pytest.mark.usefixtures("task_identity")  # Messages need an identity


class SitesGrid:
    """Push answers every message at once; pull hands the answers back. A message gets
    its object id as message id on push, as on Flower's grid."""

    pull_interval = 0.0

    def __init__(self) -> None:
        self.replies: dict[str, Message] = {}

    def get_node_ids(self) -> list[int]:
        return sorted(SITES)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = msg.object_id
            self.replies[msg.object_id] = Message(self._answer(msg), reply_to=msg)
            ids.append(msg.object_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self.replies.pop(mid) for mid in message_ids if mid in self.replies]

    @staticmethod
    def _answer(msg: Message) -> RecordDict:
        node = msg.metadata.dst_node_id
        site = ConfigRecord({keys.SITE_NAME: SITES[node].name})
        if msg.metadata.message_type == keys.TRAIN:
            rnd = int(msg.content.config_records[keys.CONFIG]["server-round"])
            sent = from_arrays(msg.content.array_records[keys.ARRAYS])
            step = np.float32(0.1 * rnd * (1 if node == 1 else -2) + 0.05 * node)
            models = [(w + step * (i + 1)).astype(np.float32) for i, w in enumerate(sent)]
            metrics = MetricRecord({keys.NUM_EXAMPLES: CASES[node], "loss": 1.0})
            return RecordDict(
                {keys.ARRAYS: to_arrays(models), keys.METRICS: metrics, keys.SITE: site}
            )
        metrics = MetricRecord({"dice": 0.5, "threshold": 0.5, keys.NUM_EXAMPLES: 1})
        return RecordDict({keys.METRICS: metrics, keys.SITE: site})


def _start(cfg: RunConfig, state: RunState) -> Coordinated:
    strategy = make_strategy(cfg, SITES)
    record_sites(state, SITES, strategy)
    return strategy


@pytest.mark.parametrize("aggregator", ["fedavgm", "fedadam", "fedyogi"])
def test_resumed_rounds_end_with_the_uninterrupted_model(aggregator: str, tmp_path: Path) -> None:
    cfg = load_config(RunConfig, [], [f"fed.aggregator={aggregator}", "fed.secure_stats=false"])
    x0 = [np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float32)]

    straight = RunState(weights=list(x0))
    strategy = _start(cfg, straight)
    for rnd in (1, 2):
        run_round(SitesGrid(), SITES, straight, strategy, cfg, rnd, statistics_first=False)

    killed = RunState(weights=list(x0))
    strategy = _start(cfg, killed)
    run_round(SitesGrid(), SITES, killed, strategy, cfg, 1, statistics_first=False)
    folder = RunFolder(tmp_path)
    folder.save_checkpoint(killed)
    resumed = folder.load_checkpoint()
    assert resumed is not None and resumed.strategy_state
    strategy = _start(cfg, resumed)
    run_round(SitesGrid(), SITES, resumed, strategy, cfg, 2, statistics_first=False)

    assert straight.weights is not None and resumed.weights is not None
    for a, b in zip(straight.weights, resumed.weights, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    assert resumed.strategy_state.keys() == straight.strategy_state.keys()
    for key, value in straight.strategy_state.items():
        np.testing.assert_array_equal(resumed.strategy_state[key], value)

    again = folder.load_checkpoint()
    assert again is not None and again.weights is not None
    fresh = RunState(1, again.weights)  # the same checkpoint, the server state left out
    run_round(SitesGrid(), SITES, fresh, make_strategy(cfg, SITES), cfg, 2, False)
    pairs = zip(straight.weights, fresh.weights, strict=True)
    assert not all(np.array_equal(a, b) for a, b in pairs)
