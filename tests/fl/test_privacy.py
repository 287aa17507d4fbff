"""Site-level differential privacy (``fed.dp_epsilon``): the noise multiplier meets the
budget (Flower's RDP accountant, checked against the Gaussian mechanism's RDP by hand),
updates leave the site clipped, every site weighs the same, the coordinator's noise has
the promised spread and cannot be replayed, in plain and secure rounds; the run records
what it spent, and a resumed run counts the rounds before it."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from stub_federation import NAMES, make_federation, site_model
from test_server_resume import SITES, SitesGrid

from fedshift.errors import ConfigError
from fedshift.fl import keys
from fedshift.fl.privacy import SiteLevelDP, clip_update, epsilon_after, noise_multiplier_for
from fedshift.fl.secure_updates import secure_train_round
from fedshift.fl.server import record_sites, run_round, train_round
from fedshift.fl.strategies import make_strategy
from fedshift.record import RunRecord
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunState

pytestmark = pytest.mark.usefixtures("task_identity")  # Messages need an identity


def gaussian_rdp_epsilon(z: float, releases: int, delta: float) -> float:
    """The epsilon of ``releases`` Gaussian mechanisms of noise multiplier ``z`` at
    ``delta``: RDP of order a is releases * a / (2 z^2) (Mironov 2017), converted with
    Balle et al. 2020's bound, minimised over a fine grid of orders."""
    orders = np.linspace(1.01, 2000, 400_000)
    rdp = releases * orders / (2 * z * z)
    eps = rdp + np.log1p(-1 / orders) - (np.log(delta) + np.log(orders)) / (orders - 1)
    return float(eps.min())


@pytest.mark.parametrize(("epsilon", "rounds"), [(1.0, 5), (8.0, 5), (8.0, 20)])
def test_the_noise_spends_the_budget_and_no_more(epsilon: float, rounds: int) -> None:
    z = noise_multiplier_for(epsilon, rounds, 4, 1e-5)
    spent = epsilon_after(z, rounds, 4, 1e-5)
    assert 0.99 * epsilon < spent <= epsilon
    assert epsilon_after(0.99 * z, rounds, 4, 1e-5) > epsilon  # less noise overspends
    # the accountant's orders are a grid: its epsilon is at most a little above the bound
    by_hand = gaussian_rdp_epsilon(z, rounds, 1e-5)
    assert by_hand <= spent <= 1.05 * by_hand


def test_more_rounds_need_more_noise_and_an_unreachable_budget_is_refused() -> None:
    assert noise_multiplier_for(8, 20, 4, 1e-5) > noise_multiplier_for(8, 5, 4, 1e-5)
    with pytest.raises(ConfigError, match="cannot be reached"):
        noise_multiplier_for(1e-9, 5, 4, 1e-5)


def test_an_update_longer_than_the_clip_norm_leaves_scaled_down() -> None:
    sent = [np.zeros((3, 4), np.float32), np.ones(5, np.float32), np.arange(3)]
    trained = [np.full((3, 4), 1.0, np.float32), np.ones(5, np.float32) * 2, np.arange(3) + 7]
    norm = math.sqrt(12 + 5)
    clipped = clip_update(trained, sent, 1.0)
    update = np.concatenate([(c - s).ravel() for c, s in zip(clipped[:2], sent[:2], strict=True)])
    assert np.linalg.norm(update) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(clipped[0], trained[0] / norm, rtol=1e-6)  # the direction kept
    assert clipped[0].dtype == np.float32
    np.testing.assert_array_equal(clipped[2], trained[2])  # an integer counter as trained
    short = clip_update(trained, sent, 10.0)  # within the norm: unchanged
    for a, b in zip(short, trained, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_the_noise_has_the_promised_spread_and_is_never_the_same() -> None:
    fed = replace(RunConfig().fed, dp_epsilon=8.0, rounds=5, dp_clip_norm=2.0)
    dp = SiteLevelDP(fed, sites=4)
    mean = [np.zeros((200, 500), np.float32)]
    first, second = dp.noised(mean, 4)[0], dp.noised(mean, 4)[0]
    expected = dp.noise_multiplier * 2.0 / 4
    assert first.std() == pytest.approx(expected, rel=0.02)
    assert abs(first.mean()) < 5 * expected / math.sqrt(first.size)
    assert not np.allclose(first, second)  # fresh noise, not the run's seed
    assert dp.releases == 2
    spent = dp.record()
    assert spent.releases == 2 and spent.epsilon < 8.0 and spent.delta == 1e-5
    assert RunRecord.from_json(RunRecord(privacy=spent).to_json()).privacy == spent


@pytest.fixture
def federation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    return make_federation(monkeypatch, tmp_path)


@pytest.mark.parametrize("secure", [False, True])
def test_a_round_averages_clipped_updates_equally_then_noises(federation, secure) -> None:
    cfg, grid, sites, weights = federation
    fed = replace(cfg.fed, dp_epsilon=1e4, dp_clip_norm=0.1)  # noise far below the updates
    cfg = replace(cfg, fed=fed)
    strategy = make_strategy(cfg, sites)
    assert strategy.dp is not None
    train = secure_train_round if secure else train_round
    new, metrics = train(grid, strategy, 1, weights, cfg)
    # by hand: each site's update clipped to 0.1, then the unweighted mean
    clipped = [clip_update(site_model(s, weights, 1), weights, 0.1) for s in NAMES.values()]
    mean = [np.mean([c[i] for c in clipped], axis=0) for i in range(len(weights))]
    std = strategy.dp.noise_multiplier * 0.1 / len(NAMES)
    for got, want in zip(new, mean, strict=True):
        np.testing.assert_allclose(got, want, atol=6 * std + 1e-6)
    assert not all(np.array_equal(g, w) for g, w in zip(new, mean, strict=True))  # noised
    assert {m[keys.FEDAVG_WEIGHT] for m in metrics.values()} == {1.0}  # cases do not count
    assert strategy.dp.releases == 1


def test_the_run_records_what_it_spent_and_a_resumed_run_counts_on(tmp_path: Path) -> None:
    fed = replace(RunConfig().fed, dp_epsilon=8.0, rounds=3, timeout_s=5.0)
    cfg = replace(RunConfig(), out=str(tmp_path / "run"), fed=fed)
    state = RunState(weights=[np.zeros((2, 3), np.float32), np.ones(4, np.float32)])
    strategy = make_strategy(cfg, SITES)
    record_sites(state, SITES, strategy)
    for rnd in (1, 2):
        run_round(SitesGrid(), SITES, state, strategy, cfg, rnd, statistics_first=False)
    spent = state.record.privacy
    assert spent is not None and spent.releases == 2
    assert spent.epsilon == pytest.approx(
        epsilon_after(strategy.dp.noise_multiplier, 2, 2, 1e-5), rel=1e-9
    )
    resumed = make_strategy(cfg, SITES)  # a restarted coordinator, after round 2
    record_sites(state, SITES, resumed)
    assert resumed.dp is not None and resumed.dp.releases == 2
    run_round(SitesGrid(), SITES, state, resumed, cfg, 3, statistics_first=False)
    assert state.record.privacy.releases == 3
    assert state.record.privacy.epsilon == pytest.approx(8.0, rel=0.01)  # the whole budget


def test_only_fedavg_takes_a_privacy_budget() -> None:
    with pytest.raises(ConfigError, match="fed.dp_epsilon"):
        replace(RunConfig().fed, dp_epsilon=8.0, aggregator="fedadam")
