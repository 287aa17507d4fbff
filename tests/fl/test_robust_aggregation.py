"""A site that sends garbage (issue 23): NaN, infinite or outsized updates are refused and
logged, never averaged in; fed.aggregator=fedtrimmedavg bounds what any one site can do to
the mean. Real Flower messages on a stand-in Grid that only lists node ids."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from flwr.app import ConfigRecord
from train_replies import NodeList, train_reply

from fedshift.config import load_config
from fedshift.errors import ConfigError
from fedshift.fl.grid import SiteInfo
from fedshift.fl.records import to_arrays
from fedshift.fl.strategies import make_strategy
from fedshift.runconfig import RunConfig

SITES = {n: SiteInfo(n, name, "A", True, 4, 4) for n, name in enumerate("abcd", start=1)}

pytestmark = pytest.mark.usefixtures("task_identity")  # Messages need an identity


def _round(aggregator: str, values: dict[int, float], *overrides: str):
    """One round from the zero model: site ``n`` answers with all weights = values[n]
    (4 cases each); the aggregated weights and the strategy."""
    cfg = load_config(RunConfig, [], [f"fed.aggregator={aggregator}", *overrides])
    strategy = make_strategy(cfg, SITES)
    sent = to_arrays([np.zeros(3, np.float32)])
    list(strategy.configure_train(1, sent, ConfigRecord({}), NodeList(SITES)))
    replies = [
        train_reply(n, SITES[n].name, np.full(3, v, dtype=np.float32), 4) for n, v in values.items()
    ]
    arrays, _ = strategy.aggregate_train(1, replies)
    return (None if arrays is None else next(iter(arrays.values())).numpy()), strategy


def test_nan_and_infinite_updates_are_refused_and_logged(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="fedshift.coordinator")
    mean, strategy = _round("fedavg", {1: 1.0, 2: np.nan, 3: 3.0, 4: np.inf})
    np.testing.assert_allclose(mean, 2.0)  # the mean of a and c only
    assert set(strategy.refused) == {"b", "d"}
    assert "site b is refused: NaN or infinite weights" in caplog.text


def test_an_outsized_update_is_refused() -> None:
    mean, strategy = _round("fedavg", {1: 1.0, 2: 1.5, 3: 2.0, 4: 500.0})
    np.testing.assert_allclose(mean, 1.5)
    assert list(strategy.refused) == ["d"] and "x the round's median" in strategy.refused["d"]
    _, strategy = _round("fedavg", {1: 1.0, 2: 1.5, 3: 2.0, 4: 500.0}, "fed.update_norm_limit=0")
    assert strategy.refused == {}  # the norm check switched off


def test_a_round_where_every_update_is_refused_aggregates_nothing() -> None:
    mean, strategy = _round("fedavg", {1: np.nan, 2: np.nan, 3: np.nan})
    assert mean is None and len(strategy.refused) == 3


def test_trimmed_mean_drops_each_weights_extremes() -> None:
    # 4 sites, beta 0.25: the lowest and highest value of each weight go; a site
    # far off but under the norm limit (8x the median) still cannot pull the mean
    mean, strategy = _round("fedtrimmedavg", {1: 1.0, 2: 2.0, 3: 3.0, 4: 20.0})
    assert strategy.refused == {} and mean.dtype == np.float32
    np.testing.assert_allclose(mean, 2.5)
    mean, _ = _round("fedavg", {1: 1.0, 2: 2.0, 3: 3.0, 4: 20.0})
    np.testing.assert_allclose(mean, 6.5)  # what FedAvg lets it do


def test_trimmed_mean_refuses_secure_updates() -> None:
    with pytest.raises(ConfigError, match="trimmed mean needs every site's weights"):
        load_config(RunConfig, [], ["fed.aggregator=fedtrimmedavg", "fed.secure_updates=true"])
    with pytest.raises(ConfigError, match="fed.trim_beta"):
        load_config(RunConfig, [], ["fed.trim_beta=0.5"])


def test_float16_updates_are_averaged_in_the_models_precision() -> None:
    """fed.update_dtype=float16: a site's weights travel as float16; the coordinator casts
    them back to the sent model's float32 before screening and averaging."""
    cfg = load_config(RunConfig, [], ["fed.update_dtype=float16"])
    strategy = make_strategy(cfg, SITES)
    sent = to_arrays([np.zeros(3, np.float32)])
    list(strategy.configure_train(1, sent, ConfigRecord({}), NodeList(SITES)))
    values = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4}
    replies = [
        train_reply(n, SITES[n].name, np.full(3, v, dtype=np.float16), 4) for n, v in values.items()
    ]
    arrays, _ = strategy.aggregate_train(1, replies)
    mean = next(iter(arrays.values())).numpy()
    assert mean.dtype == np.float32
    expected = np.mean([np.float32(np.float16(v)) for v in values.values()])
    np.testing.assert_allclose(mean, expected, rtol=1e-6)
    assert abs(float(mean[0]) - 0.25) < 1e-3  # float16 rounding only
    with pytest.raises(ConfigError, match="fed.update_dtype"):
        load_config(RunConfig, [], ["fed.update_dtype=float16", "fed.secure_updates=true"])
