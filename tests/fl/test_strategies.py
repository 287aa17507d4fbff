"""The aggregators (fedshift.fl.strategies): Flower strategy classes that choose who
trains, send the align flag and threshold, and average by the weight the coordinator
sets. Driven with real Flower messages on a stand-in Grid that only lists node ids."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message
from train_replies import NodeList, train_reply

from fedshift.config import load_config
from fedshift.errors import ConfigError
from fedshift.fl import keys
from fedshift.fl.grid import SiteInfo
from fedshift.fl.strategies import AGGREGATORS, make_strategy
from fedshift.runconfig import AGGREGATORS as CONFIG_AGGREGATORS
from fedshift.runconfig import RunConfig

SITES = {
    1: SiteInfo(1, "a", "A", True, 4, 4),
    2: SiteInfo(2, "b", "A", True, 2, 2),
    3: SiteInfo(3, "t", "B", False, 3, 3),
}


pytestmark = pytest.mark.usefixtures("task_identity")  # Messages need an identity


def _reply(node: int, value: float, cases: int) -> Message:
    return train_reply(node, SITES[node].name, np.full(3, value, dtype=np.float32), cases)


def _cfg(*overrides: str) -> RunConfig:
    return load_config(RunConfig, [], list(overrides))


def test_every_configured_aggregator_has_a_strategy() -> None:
    assert set(AGGREGATORS) == set(CONFIG_AGGREGATORS)
    with pytest.raises(ConfigError, match="fedavg, fedprox"):
        load_config(RunConfig, [], ["fed.aggregator=fedmagic"])


@pytest.mark.parametrize("aggregator", ["fedavg", "fedprox"])
def test_plain_round_trains_labelled_sites_and_weighs_by_cases(aggregator: str) -> None:
    strategy = make_strategy(_cfg(f"fed.aggregator={aggregator}"), SITES)
    assert strategy.weighted_by_key == keys.FEDAVG_WEIGHT
    messages = list(strategy.configure_train(1, ArrayRecord(), ConfigRecord({}), NodeList(SITES)))
    assert sorted(m.metadata.dst_node_id for m in messages) == [1, 2]
    config = messages[0].content.config_records[keys.CONFIG]
    assert config[keys.ALIGN] is False and keys.THRESHOLD not in config
    assert (keys.PROXIMAL_MU in config) == (aggregator == "fedprox")
    arrays, _ = strategy.aggregate_train(1, [_reply(2, 1.0, 2), _reply(1, 4.0, 4)])
    assert arrays is not None
    mean = next(iter(arrays.values())).numpy()
    np.testing.assert_allclose(mean, (4.0 * 4 + 1.0 * 2) / 6)


def test_aligned_round_adds_the_unlabelled_site_at_its_weight() -> None:
    cfg = _cfg("seg.align.method=jdot", "fed.secure_stats=true", "fed.unlabelled_weight=0.25")
    strategy = make_strategy(cfg, SITES)
    strategy.observe_validation(
        {
            "a": {"dice": 0.7, "threshold": 0.3, keys.NUM_EXAMPLES: 1},
            "b": {"dice": 0.5, "threshold": 0.5, keys.NUM_EXAMPLES: 1},
            "t": {"dice": 0.0, "threshold": 0.5, keys.NUM_EXAMPLES: 0},
        }
    )
    messages = list(strategy.configure_train(2, ArrayRecord(), ConfigRecord({}), NodeList(SITES)))
    assert sorted(m.metadata.dst_node_id for m in messages) == [1, 2, 3]
    config = messages[0].content.config_records[keys.CONFIG]
    assert config[keys.ALIGN] is True and config[keys.THRESHOLD] == pytest.approx(0.4)
    replies = [_reply(3, 9.0, 4), _reply(1, 1.0, 4), _reply(2, 1.0, 2)]
    arrays, _ = strategy.aggregate_train(2, replies)
    weights = {r.metadata.src_node_id: r.content.metric_records[keys.METRICS] for r in replies}
    assert weights[3][keys.FEDAVG_WEIGHT] == pytest.approx(1.0)  # 4 cases x 0.25
    assert weights[1][keys.FEDAVG_WEIGHT] == pytest.approx(4.0)
    mean = next(iter(arrays.values())).numpy()
    np.testing.assert_allclose(mean, (9.0 * 1 + 1.0 * 4 + 1.0 * 2) / 7, rtol=1e-6)


def test_round_before_alignment_starts_is_plain() -> None:
    strategy = make_strategy(_cfg("seg.align.method=jdot", "fed.secure_stats=true"), SITES)
    strategy.observe_validation({"a": {"dice": 0.1, "threshold": 0.5, keys.NUM_EXAMPLES: 1}})
    messages = list(strategy.configure_train(2, ArrayRecord(), ConfigRecord({}), NodeList(SITES)))
    assert sorted(m.metadata.dst_node_id for m in messages) == [1, 2]
    assert strategy.aligned is False


@pytest.mark.parametrize("aggregator", sorted(AGGREGATORS))
def test_a_training_site_down_when_the_round_starts_is_skipped_not_waited_for(
    aggregator: str,
) -> None:
    """Flower's sampling waits, with no time limit, for its minimum of connected nodes;
    the coordinator asks for one, so a round starts with the sites that are there (a
    down site rejoins when it reconnects: the next round's sampling lists it again)."""
    import threading

    strategy = make_strategy(_cfg(f"fed.aggregator={aggregator}"), SITES)
    weights = ArrayRecord([np.zeros(3, np.float32)])
    out: list[list[Message]] = []
    for online in ([2], [1, 2, 3]):  # sites a and t down (fewer nodes than trainers), then back
        worker = threading.Thread(
            target=lambda nodes=online: out.append(
                list(strategy.configure_train(1, weights, ConfigRecord({}), NodeList(nodes)))
            ),
            daemon=True,
        )
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive(), f"configure_train waits for node 1 ({aggregator})"
    assert [sorted(m.metadata.dst_node_id for m in msgs) for msgs in out] == [[2], [1, 2]]
