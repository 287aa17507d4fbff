"""Training with an alignment term: labelled and unlabelled sites train, the term is
used, and the Bures map folds exactly into the 1x1x1 head."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from mri_fixtures import make_site

from fedshift.data.layout import discover_site, site_items
from fedshift.errors import ConfigError
from fedshift.model.aligned import AlignedTrainer
from fedshift.model.config import AlignConfig, ModelConfig, PreprocessConfig, SegConfig, TrainConfig
from fedshift.model.network import build_network, fold_affine_into_head
from fedshift.model.pooled_jdot import PooledJDOTTrainer
from fedshift.model.trainer import SiteTrainer
from fedshift.shift.embeddings import embedding_stats
from fedshift.shift.reference import build_reference
from fedshift.shift.stats import SiteStatistics, StatsLayout

CFG = SegConfig(
    model=ModelConfig(channels=(4, 8, 16), strides=(2, 2), num_res_units=1, feat_dim=4),
    preprocess=PreprocessConfig(n4_shrink=2, n4_iterations=(10,)),
    train=TrainConfig(patch_size=(16, 16, 16), batch_size=1, local_steps=2, device="cpu"),
    align=AlignConfig(n_voxels=64, n_reference=64),
)


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.5, 0.2, (200, 4)), rng.normal(1.5, 0.2, (50, 4))])
    y = np.r_[np.zeros(200, int), np.ones(50, int)]
    zero = SiteStatistics.zeros(StatsLayout(4))
    stats = SiteStatistics(
        **{**zero.__dict__, "embeddings": {**zero.embeddings, **embedding_stats(x, y)}}
    )
    return build_reference(stats)


def _items(tmp: Path, labelled: bool) -> list[dict]:
    site = make_site(tmp, n_cases=2, shape=(20, 20, 20), labelled=labelled, seed=1, name="s")
    return site_items(discover_site(site), "train")


@pytest.mark.parametrize("method", ["jdot", "moments"])
def test_labelled_and_unlabelled_sites_train(tmp_path: Path, reference, method: str) -> None:
    torch.set_num_threads(1)
    for labelled in (True, False):
        items = _items(tmp_path / str(labelled), labelled)
        trainer = AlignedTrainer(
            CFG, items, [], tmp_path / "cache", reference=reference, method=method, seed=0
        )
        assert trainer.labelled is labelled and trainer.num_train_cases == 2
        before = [p.detach().clone() for p in trainer.model.parameters()]
        result = trainer.train()
        assert np.isfinite(result.loss) and result.steps == 2
        assert any(
            not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True)
        )
        if method == "jdot":
            assert trainer.last_mass == pytest.approx(1.0)


def test_alignment_term_is_in_the_loss(tmp_path: Path, reference) -> None:
    items = _items(tmp_path, True)
    off = AlignedTrainer(
        SegConfig(
            **{**CFG.__dict__, "align": AlignConfig(weight=0.0, n_voxels=64, n_reference=64)}
        ),
        items, [], tmp_path / "cache", reference=reference, method="jdot", seed=0,
    )  # fmt: skip
    on = AlignedTrainer(
        CFG, items, [], tmp_path / "cache", reference=reference, method="jdot", seed=0
    )
    assert on.train().loss > off.train().loss
    with pytest.raises(ValueError, match="method"):
        AlignedTrainer(CFG, items, [], tmp_path / "cache", reference=reference, method="x")


def test_affine_map_folds_into_the_head() -> None:
    model = build_network(CFG.model, seed=0).eval()
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(4, 4)), rng.normal(size=4)
    g = torch.randn(1, 4, 3, 3, 3)
    mapped = torch.einsum("ij,bjxyz->bixyz", torch.as_tensor(A, dtype=torch.float32), g)
    mapped = mapped + torch.as_tensor(b, dtype=torch.float32)[None, :, None, None, None]
    expected = model.head(mapped)
    fold_affine_into_head(model, A, b)
    torch.testing.assert_close(model.head(g), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        fold_affine_into_head(model, np.eye(3), np.zeros(3))


def test_a_site_without_labels_learns_at_the_scaled_rate(tmp_path: Path, reference) -> None:
    """Adam ignores a loss's scale, so the weight cannot slow an unlabelled site: its
    learning rate is scaled instead; a labelled site keeps train.lr."""
    rates = {}
    for labelled in (True, False):
        trainer = AlignedTrainer(
            CFG, _items(tmp_path / str(labelled), labelled), [], tmp_path / "cache",
            reference=reference, method="jdot", seed=0, threshold=0.3,
        )  # fmt: skip
        assert trainer.label_threshold == 0.3
        rates[labelled] = {g["lr"] for g in trainer.make_optimizer().param_groups}
    assert rates[True] == {CFG.train.lr}
    (rate,) = rates[False]
    assert rate == pytest.approx(CFG.train.lr * CFG.align.unlabelled_lr_scale)


def test_pooled_deepjdot_trains_towards_the_target(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    source, target = _items(tmp_path / "src", True), _items(tmp_path / "tgt", False)
    losses = {}
    for weight in (0.0, 1.0):
        cfg = SegConfig(
            **{**CFG.__dict__, "align": AlignConfig(weight=weight, n_voxels=64, n_reference=64)}
        )
        trainer = PooledJDOTTrainer(
            cfg, source, source[:1], tmp_path / "cache",
            target_items=target, target_cache_dir=tmp_path / "tcache", seed=0,
        )  # fmt: skip
        result = trainer.train()
        assert np.isfinite(result.loss) and result.steps == 2
        assert 0.0 < trainer.target_threshold < 1.0  # tuned on the pooled validation case
        losses[weight] = result.loss
    assert losses[1.0] > losses[0.0]  # the same batches, plus the JDOT cost


def test_every_solves_the_coupling_every_kth_labelled_step(
    tmp_path: Path, reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """seg.align.every=k: a labelled site aligns at steps 1, 1+k, ... with weight k * weight
    (the same pull on average); a site without labels aligns at every step."""
    cfg = replace(CFG, align=replace(CFG.align, every=2, weight=0.1))
    monkeypatch.setattr(SiteTrainer, "loss", lambda self, *a: torch.tensor(1.0))
    for labelled, expected in ((True, [1.2, 1.0, 1.2, 1.0]), (False, [0.1] * 4)):
        items = _items(tmp_path / str(labelled), labelled)
        trainer = AlignedTrainer(
            cfg, items, [], tmp_path / "cache", reference=reference, method="jdot", seed=0
        )
        trainer.alignment = lambda *a: torch.tensor(1.0)  # a term of 1 at every call
        losses = [float(trainer.loss({}, torch.empty(0), torch.empty(0))) for _ in expected]
        assert losses == pytest.approx(expected)
    with pytest.raises(ConfigError, match="every"):
        AlignConfig(every=0).validate()


def test_labelled_false_leaves_labelled_sites_plain(
    tmp_path: Path, reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """seg.align.labelled=false: a labelled site's loss is its supervised loss alone; a site
    without labels still aligns."""
    cfg = replace(CFG, align=replace(CFG.align, labelled=False, weight=0.1))
    monkeypatch.setattr(SiteTrainer, "loss", lambda self, *a: torch.tensor(1.0))
    for labelled, expected in ((True, 1.0), (False, 0.1 * 3.0)):
        items = _items(tmp_path / str(labelled), labelled)
        trainer = AlignedTrainer(
            cfg, items, [], tmp_path / "cache", reference=reference, method="jdot", seed=0
        )
        trainer.alignment = lambda *a: torch.tensor(3.0)
        assert float(trainer.loss({}, torch.empty(0), torch.empty(0))) == pytest.approx(expected)
