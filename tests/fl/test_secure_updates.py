"""Secure aggregation of model updates (``fed.secure_updates``) through the real ClientApp
handlers and Flower messages, in one process (:class:`local_grid.LocalGrid`); the sites'
training is a stand-in that returns fixed models. The secure round must give the model a
plain round gives, let a site drop, refuse a site that claims another weight, and never
hand the coordinator a site's weights. Also a plain round's float16 transport
(fed.update_dtype)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from local_grid import LocalGrid
from stub_federation import CASES, NAMES, make_federation, site_model

from fedshift.audit import AUDIT_FILE, read_log, summarise
from fedshift.errors import FedShiftError, SecureAggregationError
from fedshift.fl import client_secure, keys
from fedshift.fl.secure_updates import secure_train_round
from fedshift.fl.server import train_round
from fedshift.fl.strategies import make_strategy
from fedshift.runconfig import RunConfig

pytestmark = pytest.mark.usefixtures("task_identity")  # Messages need an identity


@pytest.fixture
def federation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    return make_federation(monkeypatch, tmp_path)


def _strategy(cfg: RunConfig, sites, aggregator: str, scale: dict[int, float]):
    cfg = replace(cfg, fed=replace(cfg.fed, aggregator=aggregator))
    strategy = make_strategy(cfg, sites)
    strategy.weight_scale = lambda: dict(scale)  # type: ignore[method-assign]
    return cfg, strategy


@pytest.mark.parametrize("aggregator", ["fedavg", "fedadam"])
def test_secure_round_gives_the_plain_rounds_model(federation, aggregator: str) -> None:
    cfg, grid, sites, weights = federation
    node_b = next(n for n, s in NAMES.items() if s == "b")
    scale = {node_b: 0.5}  # the factor the coordinator sets travels to the site
    cfg, plain = _strategy(cfg, sites, aggregator, scale)
    _, secure = _strategy(cfg, sites, aggregator, scale)
    w_plain, w_secure = weights, weights
    for rnd in (1, 2):  # two rounds: fedadam's moments carry over
        w_plain, m_plain = train_round(grid, plain, rnd, w_plain, cfg)
        grid.sent.clear()
        w_secure, m_secure = secure_train_round(grid, secure, rnd, w_secure, cfg)
        for a, b in zip(w_plain, w_secure, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
        assert m_plain == m_secure  # the scalar metrics still arrive per site
        # the coordinator never received a site's weights: no float array at all, and
        # no masked value equal to a site's encoded weights
        trained = [site_model(s, w_secure, rnd) for s in NAMES.values()]
        for content in grid.sent:
            for record in content.array_records.values():
                for array in record.values():
                    values = array.numpy()
                    assert values.dtype == np.uint64
                    for model in trained:
                        flat = np.concatenate([m.ravel() for m in model])
                        assert not np.isin(flat.astype(np.float64), values).any()
    hand = sum(
        CASES[s] * scale.get(n, 1.0) * site_model(s, weights, 1)[0] for n, s in NAMES.items()
    )
    if aggregator == "fedavg":  # round 1 by hand: the weighted mean
        total = sum(CASES[s] * scale.get(n, 1.0) for n, s in NAMES.items())
        w1, _ = secure_train_round(grid, secure, 1, weights, cfg)
        np.testing.assert_allclose(w1[0], hand / total, atol=1e-6)
    for name in NAMES.values():  # each site's own log says what left: no plain weights
        entries = read_log(Path(grid.work(name)) / AUDIT_FILE)
        train = [e for e in entries if e["message_type"] == "train"]
        secure = [e for e in train if keys.SECAGG in e["configs"]]
        assert len(secure) == 2 + (aggregator == "fedavg") and len(train) == len(secure) + 2
        assert all(e["arrays"] == [] for e in secure)  # keys and metrics, no array
        audit = summarise(entries)
        assert audit.plain_float == {"train"} and not audit.image_like  # plain rounds only
        assert audit.arrays[("query.secagg_masked", "secagg-values", "uint64")] == len(secure)
    for context in grid.contexts.values():  # nothing of the round stays at a site
        assert client_secure.STATE_SESSION not in context.state
        assert client_secure.STATE_STATS not in context.state


def test_a_site_dropping_after_training_leaves_the_mean_of_the_others(federation) -> None:
    cfg, grid, sites, weights = federation
    gone = next(n for n, s in NAMES.items() if s == "b")
    grid.drop.add((keys.QUERY_SECAGG_MASKED, gone))
    cfg, strategy = _strategy(cfg, sites, "fedavg", {})
    new, metrics = secure_train_round(grid, strategy, 1, weights, cfg)
    kept = [s for s in NAMES.values() if s != "b"]
    mean = sum(CASES[s] * site_model(s, weights, 1)[1] for s in kept) / sum(CASES[s] for s in kept)
    np.testing.assert_allclose(new[1], mean, atol=1e-6)
    # the record says who was summed: b trained and reported, then dropped out
    assert metrics["b"][keys.DROPPED] == 1 and keys.FEDAVG_WEIGHT not in metrics["b"]
    assert all(keys.DROPPED not in metrics[s] for s in kept)


def test_a_site_sending_another_weight_is_refused(federation, monkeypatch) -> None:
    cfg, grid, sites, weights = federation
    honest = client_secure.update_vector
    calls = []

    def inflated(models, weight):  # the first site to answer doubles its weight
        calls.append(weight)
        return honest(models, 2 * weight if len(calls) == 1 else weight)

    monkeypatch.setattr(client_secure, "update_vector", inflated)
    cfg, strategy = _strategy(cfg, sites, "fedavg", {})
    with pytest.raises(SecureAggregationError, match="weight the coordinator did not set"):
        secure_train_round(grid, strategy, 1, weights, cfg)


def test_fewer_than_three_training_sites_are_refused_before_training(federation) -> None:
    cfg, grid, sites, weights = federation
    two = dict(list(sites.items())[:2])
    grid.sent.clear()
    cfg, strategy = _strategy(cfg, two, "fedavg", {})
    with pytest.raises(SecureAggregationError, match="at least 3"):
        secure_train_round(grid, strategy, 1, weights, cfg)
    assert grid.sent == []  # no site trained


def test_float16_transport_halves_what_a_site_uploads(federation) -> None:
    """fed.update_dtype=float16 (a plain round): the sites' replies carry float16 arrays,
    half the bytes of float32 in their audit logs; the mean is float32, within float16
    rounding of the float32 round's."""
    cfg, _, sites, _ = federation
    weights = [np.linspace(-1, 1, 4000, dtype=np.float32)]  # large enough that .npy headers
    means, sizes = {}, {}  # do not count
    for dtype in ("float32", "float16"):
        run_cfg = replace(cfg, out=str(Path(cfg.out).parent / dtype / "run"))
        run_cfg = replace(run_cfg, fed=replace(run_cfg.fed, update_dtype=dtype))
        grid = LocalGrid(run_cfg, NAMES)
        _, strategy = _strategy(run_cfg, sites, "fedavg", {})
        means[dtype], _ = train_round(grid, strategy, 1, weights, run_cfg)
        entry = read_log(Path(grid.work("a")) / AUDIT_FILE)[-1]
        assert {a["dtype"] for a in entry["arrays"]} == {dtype}
        sizes[dtype] = sum(a["bytes"] for a in entry["arrays"])
    assert all(m.dtype == np.float32 for m in means["float16"])
    for a, b in zip(means["float32"], means["float16"], strict=True):
        np.testing.assert_allclose(a, b, atol=2e-3)
    assert sizes["float16"] < 0.55 * sizes["float32"]


@pytest.mark.parametrize("secure", [False, True])
def test_a_round_completes_without_a_missing_site_down_to_the_minimum(federation, secure) -> None:
    """A site that never answers its train message: the round waits fed.timeout_s, then
    aggregates the others; below fed.min_train_sites it stops the run instead."""
    cfg, grid, sites, weights = federation
    gone = next(n for n, s in NAMES.items() if s == "d")
    grid.drop.add((keys.TRAIN, gone))
    train = secure_train_round if secure else train_round
    cfg, strategy = _strategy(cfg, sites, "fedavg", {})
    new, metrics = train(grid, strategy, 1, weights, cfg)
    assert set(metrics) == {"a", "b", "c"}
    kept = ["a", "b", "c"]
    mean = sum(CASES[s] * site_model(s, weights, 1)[0] for s in kept) / sum(CASES[s] for s in kept)
    np.testing.assert_allclose(new[0], mean, atol=1e-6)
    strict = replace(cfg, fed=replace(cfg.fed, min_train_sites=4))
    _, strategy = _strategy(strict, sites, "fedavg", {})
    with pytest.raises(FedShiftError, match="3 of 4 training sites.*min_train_sites=4"):
        train(grid, strategy, 1, weights, strict)
