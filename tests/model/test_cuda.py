"""The GPU path: mixed-precision training, evaluation and the JDOT coupling on cuda.

Skipped on machines without a GPU (CI has none); run where one is, e.g.
``pytest tests/model/test_cuda.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedshift.model.aligned import AlignedTrainer
from fedshift.model.config import AlignConfig, SegConfig
from fedshift.model.data import split_train_val
from fedshift.model.trainer import SiteTrainer
from fedshift.shift.embeddings import embedding_stats
from fedshift.shift.jdot import coupling
from fedshift.shift.reference import build_reference
from fedshift.shift.stats import SiteStatistics, StatsLayout

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_amp_training_and_evaluation_on_cuda(
    phantom_items: list[dict[str, Any]], shared_cache: Path, tiny_cfg: Callable[..., SegConfig]
) -> None:
    train, val = split_train_val(phantom_items, 0.25, seed=0)
    cfg = tiny_cfg(amp=True, local_steps=6)
    trainer = SiteTrainer(cfg, train, val, shared_cache, device="cuda")
    assert next(trainer.model.parameters()).is_cuda
    first = trainer.train(num_steps=6, round_index=0).loss
    later = trainer.train(num_steps=6, round_index=1).loss
    assert np.isfinite(first) and np.isfinite(later) and later < first
    metrics = trainer.evaluate(val)
    assert 0.0 <= metrics["dice"] <= 1.0
    assert all(w.dtype == np.float32 for w in trainer.get_weights())


def test_jdot_training_with_sinkhorn_on_cuda(
    phantom_items: list[dict[str, Any]], shared_cache: Path, tiny_cfg: Callable[..., SegConfig]
) -> None:
    rng = np.random.default_rng(0)
    feat = tiny_cfg().model.feat_dim
    x = np.concatenate([rng.normal(0.5, 0.2, (200, feat)), rng.normal(1.5, 0.2, (50, feat))])
    y = np.r_[np.zeros(200, int), np.ones(50, int)]
    zero = SiteStatistics.zeros(StatsLayout(feat))
    stats = SiteStatistics(
        **{**zero.__dict__, "embeddings": {**zero.embeddings, **embedding_stats(x, y)}}
    )
    cfg = tiny_cfg(amp=True, local_steps=3)
    cfg = replace(cfg, align=AlignConfig(n_voxels=64, n_reference=64, solver="sinkhorn"))
    trainer = AlignedTrainer(
        cfg, phantom_items, [], shared_cache, reference=build_reference(stats),
        method="jdot", seed=0, device="cuda",
    )  # fmt: skip
    result = trainer.train()
    assert np.isfinite(result.loss) and trainer.last_mass == pytest.approx(1.0, abs=1e-3)


def test_sinkhorn_coupling_stays_on_the_gpu() -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    cost = torch.rand(300, 200, generator=gen, device="cuda")
    plan = coupling(cost, AlignConfig(solver="sinkhorn", reg=0.05))
    assert plan.is_cuda and plan.shape == (300, 200)
    torch.testing.assert_close(plan.sum(1), torch.full_like(plan[:, 0], 1 / 300), atol=1e-6, rtol=0)
    # the GPU's log-domain solver and the CPU's Knopp solver solve the same problem
    on_cpu = coupling(cost.cpu(), AlignConfig(solver="sinkhorn", reg=0.05))
    torch.testing.assert_close(plan.cpu(), on_cpu, rtol=1e-3, atol=1e-9)
    exact = coupling(cost, AlignConfig(solver="emd"))
    assert exact.is_cuda and float(exact.sum()) == pytest.approx(1.0)
