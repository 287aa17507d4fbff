"""What the coordinator reads off the last round's validation: the decision threshold a
site without labels gets (the mean of what the labelled sites tuned, sites without
validation cases left out) and whether an aligned strategy aligns this round."""

from __future__ import annotations

import pytest

from fedshift.config import load_config
from fedshift.errors import ConfigError
from fedshift.fl import keys
from fedshift.fl.server import (
    aligns,
    last_threshold,
    last_val_dice,
    make_strategy,
    mean_threshold,
)
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunState


def test_mean_threshold_skips_sites_without_validation_cases() -> None:
    metrics = {
        "a": {"threshold": 0.3, keys.NUM_EXAMPLES: 2.0},
        "b": {"threshold": 0.5, keys.NUM_EXAMPLES: 1.0},
        "target": {"threshold": 0.9, keys.NUM_EXAMPLES: 0.0},
        "broken": {"threshold": float("nan"), keys.NUM_EXAMPLES: 3.0},
    }
    assert mean_threshold(metrics) == pytest.approx(0.4)
    assert mean_threshold({"target": {keys.NUM_EXAMPLES: 0.0}}) is None


def test_last_threshold_reads_the_last_round() -> None:
    assert last_threshold(RunState()) is None
    state = RunState()
    for rnd, (a, b) in enumerate([(0.2, 0.4), (0.6, 0.8)], start=1):
        state.rounds.append(
            {
                "round": rnd,
                "sites": {
                    "a": {"val_threshold": a, f"val_{keys.NUM_EXAMPLES}": 1.0, "train_loss": 1},
                    "b": {"val_threshold": b, f"val_{keys.NUM_EXAMPLES}": 1.0},
                },
            }
        )
    assert last_threshold(state) == pytest.approx(0.7)


def _state(*dice: float) -> RunState:
    state = RunState()
    for rnd, d in enumerate(dice, start=1):
        sites = {
            "a": {"val_dice": d, f"val_{keys.NUM_EXAMPLES}": 1.0},
            "t": {"val_dice": 0.0, f"val_{keys.NUM_EXAMPLES}": 0.0},  # no validation labels
        }
        state.rounds.append({"round": rnd, "sites": sites})
    return state


def test_alignment_waits_for_a_model_that_finds_lesions() -> None:
    cfg = load_config(RunConfig, [], ["fed.strategy=fedshift", "fed.secure_stats=true"])
    assert last_val_dice(_state()) is None and last_val_dice(_state(0.2, 0.6)) == 0.6
    assert not aligns(cfg, 1, _state())  # nothing measured yet
    assert not aligns(cfg, 3, _state(0.01, 0.38))  # below fed.align_min_val_dice (0.5)
    assert aligns(cfg, 4, _state(0.01, 0.38, 0.65))
    assert not aligns(cfg, 5, _state(0.01, 0.38, 0.65, 0.45))  # fell back: paused
    early = load_config(
        RunConfig, [], ["fed.strategy=fedshift", "fed.secure_stats=true", "fed.align_from_round=5"]
    )
    assert not aligns(early, 4, _state(0.6, 0.7, 0.8))
    plain = load_config(RunConfig, [], ["fed.strategy=fedavg"])
    assert not aligns(plain, 4, _state(0.6, 0.7, 0.8))


def test_fedavg_weighs_by_the_coordinators_weight_key() -> None:
    """Every Flower strategy averages by the key the coordinator writes (cases x
    fed.unlabelled_weight), never by a number a site sends on its own."""
    for strategy in ("fedavg", "fedprox", "fedshift"):
        cfg = load_config(RunConfig, [], [f"fed.strategy={strategy}", "fed.secure_stats=true"])
        assert make_strategy(cfg, 3).weighted_by_key == keys.FEDAVG_WEIGHT


@pytest.mark.parametrize("value", ["-0.5", "nan", "inf"])
def test_unlabelled_weight_must_be_a_finite_non_negative_number(value: str) -> None:
    with pytest.raises(ConfigError, match="fed.unlabelled_weight"):
        load_config(RunConfig, [], [f"fed.unlabelled_weight={value}"])
