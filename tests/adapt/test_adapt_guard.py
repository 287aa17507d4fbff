"""The collapse guard: the federation's range from its histogram, a drift to all
background stopped with the last good weights put back."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from fedshift.adapt import AdaptConfig, adapt_package
from fedshift.adapt.config import GuardConfig
from fedshift.adapt.data import load_site_images, site_scans
from fedshift.adapt.guard import CollapseGuard, LoadRange, federation_range, lesion_load
from fedshift.bundle import load_bundle
from fedshift.config import load_config
from fedshift.model.network import get_state

CPU = torch.device("cpu")


def test_the_federation_range_is_widened_quantiles(federation) -> None:
    reference = load_bundle(federation["with_reference"]).reference
    edges = np.concatenate([[0.0], np.geomspace(0.01, 200.0, 16)])
    pmf = np.zeros(16)
    pmf[8] = 1.0  # every case in one bin: uniform within it
    ref = replace(reference, volume_edges=edges, lesion_volume_pmf=pmf)
    lo, hi = edges[8], edges[9]
    allowed = federation_range(ref, GuardConfig(quantiles=(0.0, 1.0), factor=2.0))
    assert allowed.low == pytest.approx(lo / 2) and allowed.high == pytest.approx(hi * 2)
    # lesion-free cases in the federation: the low end stays at the first non-zero edge
    pmf0 = np.zeros(16)
    pmf0[[0, 8]] = 0.5
    allowed = federation_range(replace(ref, lesion_volume_pmf=pmf0), GuardConfig())
    assert allowed.low == pytest.approx(0.01) and 0.0 not in allowed
    # no labelled case: no range from the federation
    assert federation_range(replace(ref, lesion_volume_pmf=np.zeros(16)), GuardConfig()) is None


def test_a_range_stretches_to_a_start_outside_it() -> None:
    allowed = LoadRange(1.0, 4.0, "federation").including(9.0, factor=2.0)
    assert (allowed.low, allowed.high) == (1.0, 18.0) and 9.5 in allowed and 19 not in allowed
    allowed = LoadRange(1.0, 4.0, "federation").including(0.2, factor=2.0)
    assert (allowed.low, allowed.high) == (0.1, 4.0)
    assert LoadRange(1.0, 4.0, "federation").including(2.0, factor=2.0) == LoadRange(
        1.0, 4.0, "federation"
    )


def test_the_guard_puts_the_last_good_weights_back(federation, target_site) -> None:
    bundle = load_bundle(federation["with_reference"])
    images, _ = load_site_images(
        bundle, site_scans(target_site, "train"), 2, np.random.default_rng(0)
    )
    cfg = GuardConfig()
    guard = CollapseGuard(federation_range(bundle.reference, cfg), images, bundle, CPU, cfg)
    model = bundle.network
    start = guard.start(model)
    assert start > 0 and start in guard.allowed
    good = get_state(model)
    with torch.no_grad():  # every voxel background: the all-background collapse
        model.f.bias.copy_(torch.tensor([20.0, -20.0]))
    assert lesion_load(model, images, bundle, CPU) == 0.0
    assert not guard.check(model, 5)
    assert all(np.array_equal(good[k], v) for k, v in get_state(model).items())
    assert guard.kept_step == 0 and guard.values[-1] == {
        "step": 5,
        "lesion_ml": 0.0,
        "inside": False,
    }


def test_self_training_without_lesion_labels_is_stopped(federation, target_site, tmp_path) -> None:
    """pseudo.hi=1: no voxel is ever a lesion label, so self-training learns background
    only; the guard stops it and the package keeps the last weights it passed."""
    settings = ["method=pseudo", "pseudo.hi=1.0", "lr=1e-2", "steps=20", "guard.every=2"]
    cfg = load_config(AdaptConfig, [], settings)
    result = adapt_package(
        federation["with_reference"], target_site, tmp_path / "out", cfg, device="cpu"
    )
    record = result.record
    assert record["stopped_by_guard"] and record["steps_run"] < 20
    assert result.stop_reason.startswith("guard: predicted lesion load")
    values = {v["step"]: v for v in record["guard"]["values"]}
    last = record["guard"]["values"][-1]
    assert not last["inside"] and last["lesion_ml"] < record["guard"]["range_ml"][0]
    kept = values[record["kept_step"]]
    assert kept["inside"]
    adapted = load_bundle(result.package)
    images, _ = load_site_images(
        adapted, site_scans(target_site, "train"), 0, np.random.default_rng(0)
    )
    guarded = images[: cfg.guard.images]
    assert lesion_load(adapted.network, guarded, adapted, CPU) == pytest.approx(kept["lesion_ml"])
