"""Server optimisers (fed.aggregator fedavgm, fedadam, fedyogi): each update rule against a
two-site, two-round example worked out here from the papers' formulas (Hsu et al. 2019;
Reddi et al. 2021, Algorithm 2), their state through a checkpoint, and their settings.

Driven with real Flower messages on a stand-in Grid that only lists node ids, as in
test_strategies.py; no simulation."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message
from flwr.serverapp import strategy as flwr_strategy
from train_replies import NodeList, train_reply

from fedshift.config import load_config
from fedshift.errors import ConfigError, FedShiftError, UsageError
from fedshift.fl.grid import SiteInfo
from fedshift.fl.records import from_arrays, to_arrays
from fedshift.fl.strategies import make_strategy
from fedshift.fl.strategies.base import Coordinated
from fedshift.runconfig import SERVER_LR_DEFAULTS, RunConfig
from fedshift.runstate import RunFolder, RunState

#: two labelled sites: a with 4 training cases, b with 2 (FedAvg weights 4/6 and 2/6)
SITES = {1: SiteInfo(1, "a", "A", True, 4, 4), 2: SiteInfo(2, "b", "A", True, 2, 2)}
CASES = {1: 4, 2: 2}
X0 = [0.5, -1.0, 2.0]
#: each site's change to the model it was sent, per round (site -> per-coordinate change)
CHANGES = {
    1: {1: [0.3, -0.3, 0.0], 2: [0.3, 0.006, -0.2]},
    2: {1: [-0.3, 0.0, 0.3], 2: [-0.3, 0.003, 0.1]},
}
#: non-default settings, so that every key is seen to reach the rule
SETTINGS = {
    "fedavgm": ["fed.server_lr=0.5", "fed.server_momentum=0.8"],
    "fedadam": ["fed.server_lr=0.05", "fed.beta_1=0.8", "fed.beta_2=0.95", "fed.tau=0.01"],
    "fedyogi": ["fed.server_lr=0.05", "fed.beta_1=0.8", "fed.beta_2=0.95", "fed.tau=0.01"],
}


pytestmark = pytest.mark.usefixtures("task_identity")  # Messages need an identity


def _cfg(*overrides: str) -> RunConfig:
    return load_config(RunConfig, [], list(overrides))


def _site_models(rnd: int, sent: np.ndarray) -> dict[int, np.ndarray]:
    return {n: (sent + np.array(CHANGES[n][rnd])).astype(np.float32) for n in SITES}


def _reply(node: int, model: np.ndarray) -> Message:
    return train_reply(node, SITES[node].name, model, CASES[node])


def _round(strategy: Coordinated, rnd: int, sent: np.ndarray) -> np.ndarray:
    """One round as the coordinator runs it: configure, the sites' replies, aggregate."""
    list(strategy.configure_train(rnd, to_arrays([sent]), ConfigRecord({}), NodeList(SITES)))
    replies = [_reply(n, m) for n, m in _site_models(rnd, sent).items()]
    arrays, _ = strategy.aggregate_train(rnd, replies)
    assert arrays is not None
    (model,) = from_arrays(arrays)
    return model


def _two_rounds(aggregator: str) -> tuple[list[np.ndarray], list[list[float]]]:
    """The strategy's models after rounds 1 and 2, and the sites' case-weighted mean
    change of each round (Python floats, from the float32 models actually sent)."""
    strategy = make_strategy(_cfg(f"fed.aggregator={aggregator}", *SETTINGS[aggregator]), SITES)
    x0 = np.array(X0, dtype=np.float32)
    x1 = _round(strategy, 1, x0)
    x2 = _round(strategy, 2, x1)
    deltas = []
    for rnd, sent in ((1, x0), (2, x1)):
        models = _site_models(rnd, sent)
        deltas.append(
            [
                sum(CASES[n] * float(models[n][i]) for n in SITES) / sum(CASES.values())
                - float(sent[i])
                for i in range(len(X0))
            ]
        )
    return [x0, x1, x2], deltas


def test_fedavgm_is_server_sgd_with_momentum() -> None:
    """Hsu et al. 2019: g_t = x_t - mean_t, v_1 = g_1, v_t = beta v_{t-1} + g_t,
    x_{t+1} = x_t - eta v_t."""
    (x0, x1, x2), (d1, d2) = _two_rounds("fedavgm")
    eta, beta = 0.5, 0.8
    for i in range(len(X0)):
        v1 = -d1[i]
        assert x1[i] == pytest.approx(float(x0[i]) - eta * v1, rel=1e-5, abs=1e-6)
        v2 = beta * v1 - d2[i]
        assert x2[i] == pytest.approx(float(x1[i]) - eta * v2, rel=1e-5, abs=1e-6)


def test_fedadam_is_adam_on_the_mean_update() -> None:
    """Reddi et al. 2021, Algorithm 2 (FedAdam), with Flower's Adam bias correction of
    the server learning rate at t = round + 1."""
    (x0, x1, x2), deltas = _two_rounds("fedadam")
    eta, b1, b2, tau = 0.05, 0.8, 0.95, 0.01
    for i in range(len(X0)):
        m = v = 0.0
        x = float(x0[i])
        for rnd, (delta, got) in enumerate(zip(deltas, (x1, x2), strict=True), start=1):
            m = b1 * m + (1 - b1) * delta[i]
            v = b2 * v + (1 - b2) * delta[i] ** 2
            eta_t = eta * math.sqrt(1 - b2 ** (rnd + 1)) / (1 - b1 ** (rnd + 1))
            expected = x + eta_t * m / (math.sqrt(v) + tau)
            assert got[i] == pytest.approx(expected, rel=1e-5, abs=1e-6), (rnd, i)
            x = float(got[i])
    assert x2.dtype == np.float32  # the global model stays float32


def test_fedyogi_moves_the_second_moment_by_a_signed_step() -> None:
    """Reddi et al. 2021, Algorithm 2 (FedYogi): v_t = v - (1 - beta_2) delta^2
    sign(v - delta^2), no bias correction. Coordinate 1's second update is small, so its
    v falls where Adam's would rise."""
    (x0, x1, x2), deltas = _two_rounds("fedyogi")
    eta, b1, b2, tau = 0.05, 0.8, 0.95, 0.01
    signs = []
    for i in range(len(X0)):
        m = v = 0.0
        x = float(x0[i])
        for rnd, (delta, got) in enumerate(zip(deltas, (x1, x2), strict=True), start=1):
            sign = math.copysign(1.0, v - delta[i] ** 2) if v != delta[i] ** 2 else 0.0
            signs.append((rnd, i, sign))
            m = b1 * m + (1 - b1) * delta[i]
            v = v - (1 - b2) * delta[i] ** 2 * sign
            expected = x + eta * m / (math.sqrt(v) + tau)
            assert got[i] == pytest.approx(expected, rel=1e-5, abs=1e-6), (rnd, i)
            x = float(got[i])
    assert (2, 1, 1.0) in signs and (2, 0, -1.0) in signs  # the example takes both branches
    assert x2.dtype == np.float32


@pytest.mark.parametrize("aggregator", ["fedavgm", "fedadam", "fedyogi"])
def test_state_through_a_checkpoint_continues_as_without_interruption(
    aggregator: str, tmp_path: Path
) -> None:
    cfg = _cfg(f"fed.aggregator={aggregator}", *SETTINGS[aggregator])
    x0 = np.array(X0, dtype=np.float32)
    straight = make_strategy(cfg, SITES)
    x2 = _round(straight, 2, _round(straight, 1, x0))

    before = make_strategy(cfg, SITES)
    x1 = _round(before, 1, x0)
    folder = RunFolder(tmp_path)
    folder.save_checkpoint(RunState(1, [x1], strategy_state=before.state_arrays()))
    meta = json.loads((folder.checkpoints / "state.json").read_text())
    assert meta["strategy_state"] == "strategy_001.npz"
    back = folder.load_checkpoint()
    assert back is not None and back.weights is not None and back.strategy_state
    resumed = make_strategy(cfg, SITES)
    resumed.load_state(back.strategy_state)
    np.testing.assert_array_equal(_round(resumed, 2, back.weights[0]), x2)

    forgetful = make_strategy(cfg, SITES)  # the same round without the state differs
    assert not np.array_equal(_round(forgetful, 2, back.weights[0]), x2)


@pytest.mark.parametrize("aggregator", ["fedavg", "fedprox"])
def test_plain_aggregators_checkpoint_no_state(aggregator: str, tmp_path: Path) -> None:
    strategy = make_strategy(_cfg(f"fed.aggregator={aggregator}"), SITES)
    x1 = _round(strategy, 1, np.array(X0, dtype=np.float32))
    assert strategy.state_arrays() == {}
    folder = RunFolder(tmp_path)
    folder.save_checkpoint(RunState(1, [x1], strategy_state=strategy.state_arrays()))
    assert not list(folder.checkpoints.glob("strategy_*"))
    back = folder.load_checkpoint()
    assert back is not None and back.strategy_state == {}
    with pytest.raises(FedShiftError, match="keeps no state"):
        strategy.load_state({"m_t.0": np.zeros(3)})


@pytest.mark.parametrize(
    ("aggregator", "state"),
    [
        ("fedadam", {"momentum.0": np.zeros(3)}),
        ("fedyogi", {"m_t.0": np.zeros(3)}),  # v_t missing
        ("fedavgm", {"m_t.0": np.zeros(3), "v_t.0": np.zeros(3)}),
    ],
)
def test_a_checkpoint_of_another_rule_is_refused(aggregator: str, state: dict) -> None:
    strategy = make_strategy(_cfg(f"fed.aggregator={aggregator}"), SITES)
    with pytest.raises(FedShiftError, match=f"fed.aggregator={aggregator}"):
        strategy.load_state(state)


def test_defaults_are_flowers_and_eta_l_is_the_sites_lr() -> None:
    """fed.server_lr=0 takes Flower's default of each class; beta_1, beta_2, tau
    default to Reddi et al. 2021's (= Flower's FedAdam); fedavgm's momentum is 0.9."""
    classes = {
        "fedavgm": (flwr_strategy.FedAvgM, "server_learning_rate"),
        "fedadam": (flwr_strategy.FedAdam, "eta"),
        "fedyogi": (flwr_strategy.FedYogi, "eta"),
    }
    for aggregator, (cls, lr_name) in classes.items():
        flower = inspect.signature(cls.__init__).parameters
        assert SERVER_LR_DEFAULTS[aggregator] == flower[lr_name].default
        cfg = _cfg(f"fed.aggregator={aggregator}", "seg.train.lr=0.0007")
        strategy = make_strategy(cfg, SITES)
        assert getattr(strategy, lr_name) == flower[lr_name].default
        if aggregator == "fedavgm":
            assert strategy.server_momentum == 0.9  # type: ignore[attr-defined]
        else:
            assert strategy.eta_l == 0.0007  # type: ignore[attr-defined]
    adam = inspect.signature(flwr_strategy.FedAdam.__init__).parameters
    fed = RunConfig().fed
    assert (fed.beta_1, fed.beta_2, fed.tau) == tuple(
        adam[k].default for k in ("beta_1", "beta_2", "tau")
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["fed.server_lr=0.1"], "fed.server_lr=0.1 is invalid: expected 0 with fed.aggr"),
        (["fed.aggregator=fedadam", "fed.server_lr=-0.1"], "fed.server_lr=-0.1"),
        (["fed.aggregator=fedadam", "fed.server_lr=inf"], "fed.server_lr=inf"),
        (["fed.aggregator=fedadam", "fed.server_lr=nan"], "fed.server_lr=nan"),
        (["fed.aggregator=fedavgm", "fed.server_momentum=1"], "fed.server_momentum=1.0"),
        (["fed.aggregator=fedavgm", "fed.server_momentum=-0.1"], "fed.server_momentum"),
        (["fed.aggregator=fedadam", "fed.beta_1=1.5"], "fed.beta_1=1.5"),
        (["fed.aggregator=fedyogi", "fed.beta_2=1"], "fed.beta_2=1.0 is invalid"),
        (["fed.aggregator=fedyogi", "fed.tau=0"], "fed.tau=0.0 is invalid"),
        (["fed.aggregator=fedyogi", "fed.tau=fast"], "fed.tau=fast"),
    ],
)
def test_bad_server_settings_are_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(*overrides)


def test_resume_refuses_other_server_settings(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.write_config(_cfg("fed.aggregator=fedadam", "fed.server_lr=0.1"))
    folder.check_resumable(_cfg("fed.aggregator=fedadam", "fed.server_lr=0.1", "fed.rounds=9"))
    with pytest.raises(UsageError, match="fed.server_lr"):
        folder.check_resumable(_cfg("fed.aggregator=fedadam", "fed.server_lr=0.2"))
    plain = RunFolder(tmp_path / "plain")  # fedavg ignores them: older runs still resume
    plain.write_config(_cfg())
    plain.check_resumable(_cfg("fed.beta_1=0.5"))
