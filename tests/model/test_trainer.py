"""SiteTrainer on a tiny phantom site: learning, determinism, FedProx, evaluation, resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedshift.config import load_config
from fedshift.errors import UsageError
from fedshift.model.config import SegConfig
from fedshift.model.data import split_train_val
from fedshift.model.trainer import SiteTrainer

Items = list[dict[str, Any]]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture
def new_trainer(
    phantom_items: Items, shared_cache: Path, tiny_cfg: Callable[..., SegConfig]
) -> Callable[..., SiteTrainer]:
    """Build a trainer on 3 of the 4 phantom cases (1 for validation) with tiny settings."""

    def build(**train: object) -> SiteTrainer:
        train_items, val_items = split_train_val(phantom_items, 0.25, seed=0)
        return SiteTrainer(tiny_cfg(**train), train_items, val_items, shared_cache, device="cpu")

    return build


def test_a_few_steps_reduce_the_loss(new_trainer: Callable[..., SiteTrainer]) -> None:
    trainer = new_trainer()
    first = trainer.train(8)
    second = trainer.train(8)
    third = trainer.train(8)
    assert first.num_examples == 3  # training cases, not batches
    assert first.steps == 8 and first.seconds > 0 and first.voxels == 8 * 2 * 16**3
    assert third.loss < first.loss and second.loss < first.loss, (first, second, third)


def test_same_seed_same_weights_other_round_other_weights(
    new_trainer: Callable[..., SiteTrainer],
) -> None:
    a, b = new_trainer(), new_trainer()
    start = a.get_weights()
    assert _same(start, b.get_weights())
    ra, rb = a.train(3, round_index=4), b.train(3, round_index=4)
    assert ra.loss == rb.loss
    assert _same(a.get_weights(), b.get_weights())
    c = new_trainer()
    c.train(3, round_index=5)
    assert not _same(a.get_weights(), c.get_weights())
    other_site = SiteTrainer(a.cfg, a.items_train, [], a.cache.cache_dir, device="cpu", seed=9)
    assert not _same(start, other_site.get_weights())


def test_resume_from_state_continues_exactly(new_trainer: Callable[..., SiteTrainer]) -> None:
    straight = new_trainer(keep_optimizer_state=True)
    straight.train(2)
    straight.train(2)
    interrupted = new_trainer(keep_optimizer_state=True)
    interrupted.train(2)
    saved = interrupted.state()
    resumed = new_trainer(keep_optimizer_state=True)
    resumed.load_state(saved)
    resumed.train(2)
    assert _same(straight.get_weights(), resumed.get_weights())


def test_fedprox_term_is_zero_at_the_global_weights(
    new_trainer: Callable[..., SiteTrainer],
) -> None:
    trainer = new_trainer()
    global_weights = [w + 0.01 for w in trainer.get_weights()]
    trainer.set_weights(global_weights)
    assert float(trainer.proximal_term(trainer._anchor()).detach()) == 0.0
    free = new_trainer()
    free.train(3, global_weights=global_weights, proximal_mu=0.0, round_index=1)
    held = new_trainer()
    held.train(3, global_weights=global_weights, proximal_mu=100.0, round_index=1)

    def drift(t: SiteTrainer) -> float:
        return sum(
            float(np.sum((w - g) ** 2))
            for w, g in zip(t.get_weights(), global_weights, strict=True)
        )

    assert drift(held) < drift(free)


def test_evaluate_and_tune_threshold(
    new_trainer: Callable[..., SiteTrainer], phantom_items: Items
) -> None:
    trainer = new_trainer()
    trainer.train(16)
    threshold = trainer.tune_threshold()
    assert threshold in trainer.cfg.eval.threshold_grid and trainer.threshold == threshold
    metrics = trainer.evaluate(phantom_items)
    keys = {"dice", "lesion_precision", "lesion_recall", "lesion_f1", "avd", "n_cases", "threshold"}
    assert keys <= set(metrics)
    assert metrics["n_cases"] == 4 and metrics["threshold"] == threshold
    assert 0.0 <= metrics["dice"] <= 1.0 and metrics["avd"] >= 0.0
    prob = trainer.predict_proba(phantom_items[0])
    assert prob.shape == (24, 24, 24) and float(prob.min()) >= 0.0 and float(prob.max()) <= 1.0
    unlabelled = [{k: v for k, v in item.items() if k != "label"} for item in phantom_items]
    assert trainer.evaluate(unlabelled)["n_cases"] == 0


def test_loss_is_one_overridable_hook(
    phantom_items: Items, shared_cache: Path, tiny_cfg: Callable[..., SegConfig]
) -> None:
    seen: list[tuple[int, ...]] = []

    class Probe(SiteTrainer):
        def loss(
            self, batch: dict[str, Any], features: torch.Tensor, logits: torch.Tensor
        ) -> torch.Tensor:
            seen.append(tuple(features.shape))
            return super().loss(batch, features, logits) + 0.0 * features.mean()

    train_items, _ = split_train_val(phantom_items, 0.25, seed=0)
    Probe(tiny_cfg(), train_items, [], cache_dir=shared_cache, device="cpu").train(2)
    assert seen == [(2, 8, 16, 16, 16)] * 2


def test_settings_load_from_dotlist_and_errors_help(
    phantom_items: Items, shared_cache: Path, tiny_cfg: Callable[..., SegConfig]
) -> None:
    cfg = load_config(SegConfig, overrides=["train.patch_size=[32,32,32]", "model.feat_dim=4"])
    assert cfg.train.patch_size == (32, 32, 32) and cfg.model.feat_dim == 4
    unlabelled = [{k: v for k, v in item.items() if k != "label"} for item in phantom_items]
    with pytest.raises(UsageError, match="labelled"):
        SiteTrainer(tiny_cfg(), unlabelled, [], cache_dir=shared_cache, device="cpu")


def test_split_train_val_is_seeded_and_disjoint(phantom_items: Items) -> None:
    train, val = split_train_val(phantom_items, 0.25, seed=3)
    again, val_again = split_train_val(list(reversed(phantom_items)), 0.25, seed=3)
    assert train == again and val == val_again
    assert len(val) == 1 and {i["case"] for i in train}.isdisjoint({i["case"] for i in val})
