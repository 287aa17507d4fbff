"""The client learning-rate schedule over rounds: its values, its settings, and the rate the
trainer's optimiser really steps with in each round."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from mri_fixtures import make_site

from fedshift.config import CONFIG_DIR, load_config
from fedshift.errors import ConfigError
from fedshift.model.config import SegConfig, TrainConfig
from fedshift.model.data import split_train_val
from fedshift.model.schedule import round_lr
from fedshift.model.trainer import SiteTrainer
from fedshift.runconfig import RunConfig
from fedshift.site.worker import SiteWorker, site_worker

Items = list[dict[str, Any]]
LR, FLOOR = 1e-3, 1e-4

# -- the function ------------------------------------------------------------------------


def test_warm_up_ramps_linearly_to_the_peak() -> None:
    """W = 2 of R = 10: lr/3, 2 lr/3, then lr at round W + 1 where the cosine starts."""
    rates = [round_lr(r, 10, LR, "cosine", warmup_rounds=2, lr_min=FLOOR) for r in (1, 2, 3)]
    assert rates == pytest.approx([LR / 3, 2 * LR / 3, LR], rel=1e-12)
    assert round_lr(1, 10, LR, "constant", warmup_rounds=1) == pytest.approx(LR / 2)
    assert round_lr(2, 10, LR, "constant", warmup_rounds=1) == LR


def test_cosine_mid_and_last_round() -> None:
    """Cosine rounds 3..10 (n = 8): round 7 is half-way, lr_min + (lr - lr_min) / 2; round
    10 is 7/8 of the way: lr_min + (lr - lr_min) (1 + cos(7 pi / 8)) / 2, with cos(7 pi / 8)
    = -0.9238795325."""
    assert round_lr(7, 10, LR, "cosine", 2, FLOOR) == pytest.approx(5.5e-4, rel=1e-12)
    last = FLOOR + (LR - FLOOR) * 0.5 * (1 - 0.9238795325)
    assert round_lr(10, 10, LR, "cosine", 2, FLOOR) == pytest.approx(last, rel=1e-9)
    assert round_lr(10, 10, LR, "cosine", 2, FLOOR) == pytest.approx(1.342542e-4, rel=1e-6)
    # without warm-up the first round runs at lr, and the last still trains at lr_min = 0
    assert round_lr(1, 4, LR, "cosine") == LR
    assert round_lr(3, 4, LR, "cosine") == pytest.approx(LR / 2, rel=1e-12)  # cos(pi/2) = 0
    assert round_lr(4, 4, LR, "cosine") == pytest.approx(LR * (1 - math.sqrt(0.5)) / 2)


def test_a_one_round_run_trains_at_lr() -> None:
    assert round_lr(1, 1, LR, "cosine", lr_min=FLOOR) == LR
    assert round_lr(1, 1, LR, "constant") == LR


def test_a_run_shorter_than_its_warm_up_ends_warming_up() -> None:
    """W >= R: every round is a warm-up round, whatever the schedule after it."""
    for schedule in ("constant", "cosine"):
        rates = [round_lr(r, 3, LR, schedule, warmup_rounds=5) for r in (1, 2, 3)]
        assert rates == pytest.approx([LR / 6, 2 * LR / 6, 3 * LR / 6], rel=1e-12)
    assert round_lr(3, 3, LR, "cosine", warmup_rounds=3) == pytest.approx(3 * LR / 4)


def test_constant_without_warm_up_is_lr_every_round() -> None:
    assert {round_lr(r, 20, LR) for r in range(1, 21)} == {LR}
    assert round_lr(7, None, LR) == LR  # constant does not need the run's length


def test_the_rate_rises_then_never_rises_again() -> None:
    rates = [round_lr(r, 12, LR, "cosine", 3, FLOOR) for r in range(1, 13)]
    assert rates[:4] == sorted(rates[:4]) and rates[3] == LR
    assert all(a > b for a, b in zip(rates[3:], rates[4:], strict=False))
    assert all(FLOOR < r <= LR for r in rates[3:])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 5, LR), "rounds count from 1"),
        ((6, 5, LR), "the run has 5 rounds"),
        ((1, 5, LR, "linear"), "unknown; valid: constant, cosine"),
        ((1, None, LR, "cosine"), "needs the run's number of rounds"),
        ((1, 5, LR, "cosine", -1), "warmup_rounds=-1"),
        ((1, 5, LR, "cosine", 0, 2 * LR), "lr_min=0.002"),
        ((1, 5, 0.0), "lr=0.0"),
    ],
)
def test_bad_arguments_name_themselves(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        round_lr(*args)


# -- the settings -------------------------------------------------------------------------


def test_defaults_are_todays_training() -> None:
    tc = TrainConfig()
    assert (tc.lr_schedule, tc.warmup_rounds, tc.lr_min) == ("constant", 0, 0.0)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("train.lr_schedule=linear", r"seg\.train\.lr_schedule=linear .*constant, cosine"),
        ("train.warmup_rounds=-2", r"seg\.train\.warmup_rounds=-2 is invalid.*>= 0"),
        ("train.lr_min=0.5", r"seg\.train\.lr_min=0\.5 is invalid.*seg\.train\.lr=0\.001"),
    ],
)
def test_bad_settings_are_config_errors(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(SegConfig, overrides=[override])


def test_settings_load_from_a_dotlist() -> None:
    cfg = load_config(
        SegConfig,
        overrides=["train.lr_schedule=cosine", "train.warmup_rounds=2", "train.lr_min=1e-5"],
    )
    assert (cfg.train.lr_schedule, cfg.train.warmup_rounds, cfg.train.lr_min) == (
        "cosine",
        2,
        1e-5,
    )


# -- the trainer --------------------------------------------------------------------------


class RateProbe(SiteTrainer):
    """A real SiteTrainer that notes the rate of every parameter group at every step."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[set[float]] = []

    def step(self, batch: dict[str, Any], optimizer: torch.optim.Optimizer, *args: Any) -> Any:
        self.seen.append({group["lr"] for group in optimizer.param_groups})
        return super().step(batch, optimizer, *args)


@pytest.fixture
def probe(
    phantom_items: Items, shared_cache: Path, tiny_cfg: Callable[..., SegConfig]
) -> Callable[..., RateProbe]:
    def build(**train: object) -> RateProbe:
        train_items, _ = split_train_val(phantom_items, 0.25, seed=0)
        return RateProbe(tiny_cfg(**train), train_items, [], shared_cache, device="cpu")

    return build


@pytest.mark.parametrize("keep", [False, True])
def test_constant_leaves_the_optimisers_rate_at_lr(
    probe: Callable[..., RateProbe], keep: bool
) -> None:
    trainer = probe(keep_optimizer_state=keep)
    lr = trainer.cfg.train.lr
    results = [trainer.train(2, round_index=r, total_rounds=3) for r in (1, 2, 3)]
    results.append(trainer.train(1, round_index=0))  # benchmarks count from 0: still lr
    results.append(trainer.train(1))  # neither round nor run length: still lr
    assert trainer.seen == [{lr}] * 8
    assert [r.lr for r in results] == [lr] * 5
    assert {g["lr"] for g in trainer.make_optimizer().param_groups} == {lr}


@pytest.mark.parametrize("keep", [False, True])
def test_the_optimiser_steps_at_the_scheduled_rate(
    probe: Callable[..., RateProbe], keep: bool
) -> None:
    """Warm-up 1 of 3 rounds, then cosine: each round's steps run at that round's rate,
    also when AdamW's state (saved at the previous round's rate) carries over."""
    trainer = probe(lr_schedule="cosine", warmup_rounds=1, lr_min=1e-3, keep_optimizer_state=keep)
    tc = trainer.cfg.train
    expected = [round_lr(r, 3, tc.lr, "cosine", 1, tc.lr_min) for r in (1, 2, 3)]
    assert expected == pytest.approx([5e-3, 1e-2, 5.5e-3])
    results = [trainer.train(2, round_index=r, total_rounds=3) for r in (1, 2, 3)]
    assert trainer.seen == [{expected[0]}] * 2 + [{expected[1]}] * 2 + [{expected[2]}] * 2
    assert [r.lr for r in results] == expected


def test_a_cosine_round_without_the_run_length_is_refused(
    probe: Callable[..., RateProbe],
) -> None:
    with pytest.raises(ValueError, match="needs the run's number of rounds"):
        probe(lr_schedule="cosine").train(1, round_index=1)


def test_rounds_default_to_the_trainers_own_count(probe: Callable[..., RateProbe]) -> None:
    """Without round_index, the trainer's next round (rounds_done + 1) is scheduled."""
    trainer = probe(warmup_rounds=3)
    rates = [trainer.train(1).lr for _ in range(4)]
    assert rates == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2])


# -- the site -----------------------------------------------------------------------------


def test_a_site_knows_the_runs_length_and_reports_its_rate(
    tmp_path: Path, tiny_cfg: Callable[..., SegConfig]
) -> None:
    data = make_site(tmp_path, n_cases=3, shape=(16, 16, 16), name="SiteA")
    run = load_config(RunConfig, [CONFIG_DIR / "default.yaml"], ["fed.rounds=7"])
    assert site_worker(replace(run, out=str(tmp_path / "run")), data).rounds == 7
    seg = tiny_cfg(lr_schedule="cosine", local_steps=1, device="cpu", val_fraction=0.0)
    worker = SiteWorker(data, tmp_path / "work", seg, seed=0, rounds=3)
    weights = worker.trainer().get_weights()
    outcome = worker.train(weights, server_round=2)
    assert outcome.metrics["lr"] == pytest.approx(round_lr(2, 3, 1e-2, "cosine"))
    assert outcome.metrics["lr"] == pytest.approx(7.5e-3)
