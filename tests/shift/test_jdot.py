"""The JDOT loss against reference Gaussians: it moves embeddings onto the reference, its
couplings keep the mass they promise, the label cost follows the head."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from fedshift.errors import ConfigError
from fedshift.shift.embeddings import Gaussian
from fedshift.shift.jdot import (
    AlignConfig,
    coupling,
    jdot_cost,
    jdot_loss,
    matched_lesion_count,
    sample_by_class,
    sample_embeddings,
    sample_reference,
)

F = 4


def _reference() -> dict[str, Gaussian]:
    return {
        "background": Gaussian(np.zeros(F), np.eye(F) * 0.25),
        "lesion": Gaussian(np.full(F, 3.0), np.eye(F) * 0.25),
    }


def test_reference_samples_follow_the_class_mix() -> None:
    gen = torch.Generator().manual_seed(0)
    r, y = sample_reference(_reference(), 200, 50, gen)
    assert r.shape == (200, F) and int(y.sum()) == 50
    assert r[y == 1].mean().item() == pytest.approx(3.0, abs=0.2)
    assert r[y == 0].std().item() == pytest.approx(0.5, abs=0.1)
    r2, y2 = sample_reference({"all": _reference()["background"]}, 10, 5, gen)
    assert int(y2.sum()) == 0  # no lesion Gaussian, no lesion samples
    with pytest.raises(ValueError, match="background"):
        sample_reference({"lesion": _reference()["lesion"]}, 10, 1, gen)
    with pytest.raises(ValueError, match="n_lesion"):
        sample_reference(_reference(), 10, 11, gen)


def test_jdot_loss_decreases_the_ot_cost_between_shifted_clouds() -> None:
    gen = torch.Generator().manual_seed(1)
    r, y = sample_reference(_reference(), 128, 0, gen)
    x = (torch.randn(128, F, generator=gen) * 0.5 + 2.0).requires_grad_()
    w, b = torch.zeros(2, F), torch.zeros(2)
    cfg = AlignConfig(alpha=1.0, lam=0.0)

    def w2() -> float:
        return float(ot.emd2([], [], ot.dist(x.detach().numpy(), r.numpy())))

    before = w2()
    opt = torch.optim.SGD([x], lr=20.0)
    for _ in range(30):
        opt.zero_grad()
        loss, mass = jdot_loss(x, w, b, r, y, cfg)
        loss.backward()
        opt.step()
    assert float(mass) == pytest.approx(1.0)
    assert w2() < 0.2 * before


def test_label_cost_is_the_cross_entropy_of_the_head() -> None:
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    w = torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    r = torch.zeros(2, F)
    y = torch.tensor([0, 1])
    c = jdot_cost(x, w, torch.zeros(2), r, y, alpha=0.0, lam=1.0)
    p1 = 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(c.numpy()[0], [-np.log(1 - p1), -np.log(p1)], rtol=1e-5)
    d = jdot_cost(x, w, torch.zeros(2), r, y, alpha=2.0, lam=0.0)
    np.testing.assert_allclose(d.numpy()[0], [2.0 / F, 2.0 / F], rtol=1e-6)


@pytest.mark.parametrize("solver", ["emd", "sinkhorn", "partial", "unbalanced"])
def test_couplings_keep_the_mass_they_promise(solver: str, rng) -> None:
    cost = ot.dist(rng.normal(size=(30, 2)), rng.normal(size=(20, 2)) + 1.0)
    cfg = AlignConfig(solver=solver, mass=0.6, reg=0.05, reg_m=1.0)
    plan = coupling(cost, cfg).numpy()
    assert plan.shape == (30, 20) and np.all(plan >= -1e-12)
    if solver in ("emd", "sinkhorn"):  # exact uniform marginals
        np.testing.assert_allclose(plan.sum(1), 1 / 30, atol=1e-6)
        np.testing.assert_allclose(plan.sum(0), 1 / 20, atol=1e-6)
    elif solver == "partial":  # exactly the promised mass, no more than each marginal
        assert plan.sum() == pytest.approx(0.6, abs=1e-6)
        assert np.all(plan.sum(1) <= 1 / 30 + 1e-9) and np.all(plan.sum(0) <= 1 / 20 + 1e-9)
    else:  # relaxed marginals: less than all the mass, more as the relaxation stiffens
        loose = plan.sum()
        stiff = float(coupling(cost, AlignConfig(solver=solver, reg=0.05, reg_m=100.0)).sum())
        assert 0 < loose < 1 and loose < stiff <= 1 + 1e-6


def test_a_looser_sinkhorn_tolerance_keeps_the_marginals_it_is_told(rng) -> None:
    """seg.align.tol stops Sinkhorn earlier: marginals within the tolerance it asked for
    (POT tests the column marginals' 2-norm), a plan close to the converged one."""
    cost = ot.dist(rng.normal(size=(64, 3)), rng.normal(size=(48, 3)) + 0.5)
    tight = coupling(cost, AlignConfig(solver="sinkhorn", reg=0.01, tol=1e-9)).numpy()
    loose = coupling(cost, AlignConfig(solver="sinkhorn", reg=0.01, tol=1e-3)).numpy()
    assert np.linalg.norm(loose.sum(0) - 1 / 48) <= 1e-3
    np.testing.assert_allclose(tight.sum(0), 1 / 48, atol=1e-8)
    assert 0 < np.abs(loose - tight).sum() < 0.05  # stopped earlier, about the same plan
    with pytest.raises(ConfigError, match="tol"):
        AlignConfig(tol=0.0).validate()


def test_sample_embeddings_stays_in_the_mask() -> None:
    gen = torch.Generator().manual_seed(0)
    feats = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(1, 2, 3, 8, 1)
    feats = torch.cat([feats, feats + 1000]).reshape(2, 2, 3, 8, 1)
    mask = torch.zeros(2, 1, 3, 8, 1)
    mask[0, 0, 1, :4] = 1
    rows = sample_embeddings(feats, mask, 3, gen)
    inside = feats.permute(0, 2, 3, 4, 1).reshape(-1, 2)[mask.reshape(-1) > 0]
    assert rows.shape == (3, 2)
    assert all(any(torch.equal(r, i) for i in inside) for r in rows)


def test_config_is_checked() -> None:
    AlignConfig().validate()
    with pytest.raises(ConfigError, match="solver"):
        AlignConfig(solver="magic").validate()
    with pytest.raises(ConfigError, match="mass"):
        AlignConfig(mass=0.0).validate()


def test_sample_by_class_caps_lesions_and_the_reference_matches_the_mix() -> None:
    """Lesions are drawn up to the cap, background fills the rest, all inside the mask, and
    the reference gets the drawn share (a fixed share forced false lesions: issue 5)."""
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(1, 3, 10, 10, 10, generator=gen)
    mask = torch.zeros(1, 1, 10, 10, 10)
    mask[..., 2:8, 2:8, 2:8] = 1
    classes = torch.zeros_like(mask)
    classes[..., 4:6, 4:6, 4:6] = 1  # 8 lesion voxels inside the brain
    classes[..., 0, 0, 0] = 1  # outside: never drawn
    rows, labels, n_lesion = sample_by_class(feats, classes, mask, 100, 0.5, gen)
    assert rows.shape == (100, 3) and int(labels.sum()) == n_lesion == 8  # all 8 < cap 50
    assert len({tuple(r.tolist()) for r in rows}) == 100  # without replacement
    flat = feats.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    lesion_rows = flat[(classes * mask).reshape(-1) > 0]
    assert all(any(torch.equal(r, lr) for lr in lesion_rows) for r in rows[labels == 1])
    rows, labels, n_lesion = sample_by_class(feats, classes, mask, 100, 0.03, gen)
    assert int(labels.sum()) == n_lesion == 3  # capped
    assert matched_lesion_count(200, n_lesion, len(labels)) == 6
    assert matched_lesion_count(200, 0, 0) == 0


def test_sample_by_class_draws_uniformly_within_a_class() -> None:
    """Each lesion voxel is drawn about equally often (the draw keeps random keys on the
    device instead of permuting indices on the host)."""
    gen = torch.Generator().manual_seed(3)
    feats = torch.arange(64, dtype=torch.float32).reshape(1, 1, 4, 4, 4)
    mask = torch.ones(1, 1, 4, 4, 4)
    classes = torch.zeros_like(mask)
    classes.reshape(-1)[:8] = 1
    hits = torch.zeros(64)
    for _ in range(2000):
        rows, _, n_lesion = sample_by_class(feats, classes, mask, 20, 0.1, gen)
        assert n_lesion == 2
        hits[rows[:n_lesion, 0].long()] += 1
    share = hits[:8] / 2000  # each of 8 voxels: 2/8 of the draws
    assert torch.all((share - 0.25).abs() < 0.04) and hits[8:].sum() == 0
