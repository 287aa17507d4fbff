"""Secure statistics rounds through the real ClientApp handlers and Flower messages, in
one process: a stand-in Grid hands each message (after a protobuf round trip) to the
ClientApp of its node. The sites' statistics are made up here (a stand-in worker);
test_secure_simulation.py runs the whole thing with real sites in Flower's simulation
engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context
from flwr.supercore.task_identity import TaskIdentity
from local_grid import LocalGrid

from fedshift.errors import SecureAggregationError
from fedshift.fl import client_secure, keys
from fedshift.fl.grid import SiteInfo
from fedshift.fl.secure_rounds import federation_round, secure_statistics_round
from fedshift.model.config import ModelConfig, SegConfig
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunState
from fedshift.secagg.secure import encode
from fedshift.shift.diagnosis import measure
from fedshift.shift.embeddings import sample_voxels
from fedshift.shift.indicators import SiteIndicators
from fedshift.shift.stats import SiteStatistics, StatsLayout, case_statistics
from fedshift.site.stats import LocalStatistics

F = 4
SERVER_NODE = 1


def _cfg(out: Path) -> RunConfig:
    seg = replace(SegConfig(), model=ModelConfig(channels=(4, 8, 16), strides=(2, 2), feat_dim=F))
    # a dropped site never replies: the coordinator waits fed.timeout_s for it
    fed = replace(RunConfig().fed, timeout_s=0.5)
    return replace(RunConfig(), out=str(out), seg=seg, fed=fed)


def _site_stats(seed: int, labelled: bool, shift: float = 0.0) -> LocalStatistics:
    rng = np.random.default_rng(seed)
    total = SiteStatistics.zeros(StatsLayout(F))
    for _ in range(3):
        image = rng.normal(size=(12, 12, 12)) + shift
        mask = np.zeros(image.shape, bool)
        mask[2:10, 2:10, 2:10] = True
        label = np.zeros(image.shape, np.uint8)
        label[4:6, 4:7, 4:6] = 1
        feats = rng.normal(size=(F, *image.shape))
        lab = label if labelled else None
        samples = sample_voxels(feats, lab, mask, 40, rng)
        described = {
            "acquisition": {
                "noise": -4.0 + shift + 0.01 * rng.standard_normal(),
                "contrast": -2.5,
                "nonuniformity": -1.2,
                "sharpness": -0.3,
            },
            "population": {"lesion_volume": 1.0, "lesion_count": 1.5},
        }
        if labelled:
            described["annotation"] = {"volume_agreement": 0.0, "count_agreement": 0.0}
        total = total + case_statistics(
            StatsLayout(F), image, mask, lab, (3, 3, 3), samples, described
        )
    none = np.zeros((0, F))
    agreement = (0.6, 0.1) if labelled else (None, None)
    return LocalStatistics(total, *agreement, {}, none, np.zeros(0, np.int64))


class StubWorker:
    """Stands in for :class:`fedshift.site.worker.SiteWorker`: fixed statistics, real measure."""

    def __init__(self, name: str, local: LocalStatistics, seen: list) -> None:
        self.name, self.local, self.seen = name, local, seen

    def statistics(
        self, weights, server_round, samples_per_class, round_id, threshold=None
    ) -> LocalStatistics:
        self.seen.append((self.name, threshold))  # the threshold the coordinator sent
        return self.local

    def receive_reference(self, reference, round_id) -> SiteIndicators:
        local = self.local
        return measure(self.name, local.stats, reference, dice=local.dice, volume_bias=0.1)


@pytest.fixture(autouse=True)
def task_identity() -> Iterator[None]:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, SERVER_NODE, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None


@pytest.fixture
def federation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Four sites (node ids near 2**64 as Flower's can be), the last with brighter images."""
    names = {2**64 - 11: "a", 5: "b", 2**40: "c", 17: "t"}
    local = {
        "a": _site_stats(0, True),
        "b": _site_stats(1, True),
        "c": _site_stats(2, True),
        "t": _site_stats(3, False, shift=1.5),
    }
    cfg = _cfg(tmp_path / "run")
    grid = LocalGrid(cfg, names)
    node_of_context = {id(c): n for n, c in grid.contexts.items()}

    grid.thresholds = []  # (site, threshold) per statistics call

    def make_worker(context: Context, defaults=None) -> StubWorker:
        name = names[node_of_context[id(context)]]
        return StubWorker(name, local[name], grid.thresholds)

    monkeypatch.setattr(client_secure, "make_worker", make_worker)
    sites = {n: SiteInfo(n, name, "A", name != "t", 3, 3) for n, name in names.items()}
    return cfg, grid, sites, local


def test_secure_sum_through_flower_messages(federation) -> None:
    cfg, grid, sites, local = federation
    stats = secure_statistics_round(grid, sites, [np.zeros(2, np.float32)], 0, cfg)
    plain = np.sum([v.stats.to_vector() for v in local.values()], axis=0)
    assert stats.result.n_clipped == 0 and len(stats.result.sites) == 4
    np.testing.assert_allclose(stats.total.to_vector(), plain, rtol=1e-6, atol=1e-6)
    # the coordinator never received a site's vector, nor its unmasked encoding
    for content in grid.sent:
        for record in content.array_records.values():
            for array in record.values():
                values = array.numpy()
                for v in local.values():
                    vec = v.stats.to_vector()
                    assert not (values.shape == vec.shape and np.allclose(values, vec))
                    enc = encode(vec, cfg.fed.secagg()).values
                    if values.dtype == np.uint64:
                        assert np.mean(values[:-1] == enc) < 0.01
    # the site sessions (private keys, shares) ended with the round
    for context in grid.contexts.values():
        assert client_secure.STATE_SESSION not in context.state


def test_site_dropping_after_keys_leaves_the_sum_of_the_others(federation) -> None:
    cfg, grid, sites, local = federation
    gone = next(n for n, s in sites.items() if s.name == "b")
    grid.drop.add((keys.QUERY_SECAGG_MASKED, gone))
    stats = secure_statistics_round(grid, sites, [np.zeros(2, np.float32)], 0, cfg)
    assert stats.result.dropped == (gone,)
    plain = np.sum([v.stats.to_vector() for k, v in local.items() if k != "b"], axis=0)
    np.testing.assert_allclose(stats.total.to_vector(), plain, rtol=1e-6, atol=1e-6)


def test_fewer_than_three_sites_refused(federation) -> None:
    cfg, grid, sites, _ = federation
    two = dict(list(sites.items())[:2])
    with pytest.raises(SecureAggregationError, match="at least 3"):
        secure_statistics_round(grid, two, [np.zeros(2, np.float32)], 0, cfg)
    three = dict(list(sites.items())[:3])
    for node in list(three)[:2]:  # only one site advertises keys
        grid.drop.add((keys.QUERY_SECAGG_KEYS, node))
    with pytest.raises(SecureAggregationError, match="at least 3"):
        secure_statistics_round(grid, three, [np.zeros(2, np.float32)], 0, cfg)


def test_federation_round_writes_reference_and_diagnosis(federation) -> None:
    cfg, grid, sites, local = federation
    state = RunState(weights=[np.zeros(2, np.float32)])
    federation_round(grid, sites, state, cfg)
    out = Path(cfg.out)
    with np.load(out / "reference.npz") as ref:
        assert {"intensity_pmf", "gaussian.background.mean", "gaussian.all.mean"} <= set(ref.files)
    with np.load(out / "secure_sum.npz") as npz:
        plain = np.sum([v.stats.to_vector() for v in local.values()], axis=0)
        np.testing.assert_allclose(npz["total"], plain, rtol=1e-6, atol=1e-6)
    diagnosis = json.loads((out / "diagnosis.json").read_text())
    assert set(diagnosis["sites"]) == {"a", "b", "c", "t"}
    assert "acquisition" in diagnosis["sites"]["t"]["shift"]
    assert diagnosis["sites"]["a"]["indicators"]["dice"] == pytest.approx(0.6)
    summary = state.record.federation.statistics[0]
    assert summary["cases"] == 12 and summary["labelled_cases"] == 9 and summary["n_clipped"] == 0
    assert summary["sites"] == ["a", "b", "c", "t"] and summary["dropped"] == []
    text = json.dumps(state.record.federation.to_json()) + (out / "diagnosis.json").read_text()
    for v in local.values():  # no site's own histogram appears
        assert json.dumps(v.stats.intensity.tolist()) not in text


def test_sites_read_predictions_at_the_federation_threshold(federation) -> None:
    cfg, grid, sites, _ = federation
    state = RunState(weights=[np.zeros(2, np.float32)])
    federation_round(grid, sites, state, cfg)  # before any round tuned one
    federation_round(grid, sites, state, cfg, threshold=0.3)
    first, second = grid.thresholds[:4], grid.thresholds[4:]
    assert sorted(first) == [(n, None) for n in "abct"]
    assert sorted(second) == [(n, 0.3) for n in "abct"]
    assert [s["threshold"] for s in state.record.federation.statistics] == [None, 0.3]
