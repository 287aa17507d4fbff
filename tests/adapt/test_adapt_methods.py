"""The four methods: each changes what it should and nothing else; jdot pulls the site's
embeddings towards the reference; methods that cannot adapt a package say why."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fedshift.adapt import AdaptConfig, adapt_package
from fedshift.adapt.config import METHOD_NAMES
from fedshift.adapt.data import Patches, load_site_images, site_scans
from fedshift.adapt.methods import METHODS
from fedshift.adapt.methods.jdot import alignment_cost
from fedshift.adapt.methods.tent import entropy_and_ratio, ratio_kl
from fedshift.bundle import load_bundle, write_bundle
from fedshift.config import load_config
from fedshift.errors import UsageError
from fedshift.model.network import get_state
from fedshift.shift.embeddings import Gaussian

CPU = torch.device("cpu")


def _adapt(model: Path, site: Path, out: Path, *settings: str):
    cfg = load_config(AdaptConfig, [], list(settings))
    return adapt_package(model, site, out, cfg, device="cpu")


def _changed(before: Path, after: Path) -> set[str]:
    old, new = get_state(load_bundle(before).network), get_state(load_bundle(after).network)
    return {name for name in old if not np.array_equal(old[name], new[name])}


def test_every_method_name_has_its_method() -> None:
    assert set(METHOD_NAMES) == set(METHODS)
    assert all(METHODS[name].name == name for name in METHODS)


def test_tent_updates_only_normalisation_scale_and_shift(federation, target_site, tmp_path) -> None:
    model = federation["with_reference"]
    out = _adapt(model, target_site, tmp_path / "tent", "method=tent", "steps=3", "lr=1e-2").package
    changed = _changed(model, out)
    network = load_bundle(model).network
    norm = {
        f"{prefix}.{name}".lstrip(".")
        for prefix, module in network.named_modules()
        if isinstance(module, torch.nn.InstanceNorm3d)
        for name, _ in module.named_parameters(recurse=False)
    }
    assert changed and changed <= norm


def test_tent_loss_parts() -> None:
    logits = torch.zeros(1, 2, 2, 2, 2)  # p = 0.5 everywhere: entropy log 2
    brain = torch.ones(1, 1, 2, 2, 2)
    entropy, ratio = entropy_and_ratio(logits, brain)
    assert float(entropy) == pytest.approx(np.log(2)) and float(ratio) == pytest.approx(0.5)
    assert float(ratio_kl(0.5, ratio)) == pytest.approx(0.0, abs=1e-7)
    assert float(ratio_kl(0.01, torch.tensor(1e-4))) > float(ratio_kl(0.01, torch.tensor(0.02)))


def test_pseudo_labels_change_the_weights(federation, target_site, tmp_path) -> None:
    model = federation["without_reference"]  # pseudo needs no reference
    result = _adapt(model, target_site, tmp_path / "pseudo", "method=pseudo", "steps=3", "lr=1e-3")
    assert result.stop_reason.startswith("done")
    assert _changed(model, result.package)
    refresh = result.record["method_values"]["refreshes"][0]
    assert refresh["lesion_voxels"] > 0 and 0 < refresh["labelled_share"] <= 1


def _shifted_package(source: Path, out: Path, shift: float) -> Path:
    """``source``'s package whose reference Gaussians are moved by ``shift`` standard
    deviations along every feature: a federation whose embeddings lie elsewhere."""
    bundle = load_bundle(source)
    reference = bundle.reference
    moved = {
        c: Gaussian(g.mean + shift * np.sqrt(np.diag(g.cov)), g.cov)
        for c, g in reference.gaussians.items()
    }
    return write_bundle(
        out,
        weights=get_state(bundle.network),
        seg_cfg=bundle.seg,
        threshold=bundle.threshold,
        sites={"federation": 4},
        val_dice=None,
        run_config_hash="test",
        spacing=bundle.spacing,
        reference=replace(reference, gaussians=moved),
    )


def test_jdot_lowers_the_ot_cost_to_the_reference(federation, target_site, tmp_path) -> None:
    model = _shifted_package(federation["with_reference"], tmp_path / "shifted", 1.0)
    out = _adapt(
        model,
        target_site,
        tmp_path / "jdot",
        "method=jdot",
        "steps=10",
        "lr=1e-2",
        "guard.factor=100",  # the method alone: the guard's range is made loose
    ).package
    before, after = load_bundle(model), load_bundle(out)
    images, _ = load_site_images(
        before, site_scans(target_site, "train"), 0, np.random.default_rng(0)
    )
    patches = Patches(images, (16, 16, 16))
    image, brain = patches.batch(patches.draw(np.random.default_rng(5), 6), CPU)
    cost = [
        alignment_cost(b.network, image, brain, before.reference, 400, seed=1)
        for b in (before, after)
    ]
    assert cost[1] < 0.8 * cost[0], cost


def test_adabn_changes_only_batch_norm_running_statistics(
    federation, target_site, tmp_path
) -> None:
    model = federation["batch_norm"]
    result = _adapt(
        model,
        target_site,
        tmp_path / "adabn",
        "method=adabn",
        "steps=4",
        "guard.relative_factor=1000",
    )
    assert result.stop_reason.startswith("done"), result.stop_reason
    changed = _changed(model, result.package)
    stats = {
        n
        for n in get_state(load_bundle(model).network)
        if n.endswith(("running_mean", "running_var"))
    }
    assert changed and changed <= stats  # weights, scales, shifts, batch counters: identical
    assert result.record["method_values"]["batch_norm_layers"] > 0


def test_adabn_refuses_instance_norm(federation, target_site, tmp_path) -> None:
    with pytest.raises(UsageError) as err:
        _adapt(federation["with_reference"], target_site, tmp_path / "x", "method=adabn")
    message = str(err.value)
    assert "instance normalisation" in message and "nothing to re-estimate" in message
    assert "\n" not in message and not (tmp_path / "x").exists()


@pytest.mark.parametrize("method", ["jdot", "tent"])
def test_a_package_without_reference_is_refused(federation, target_site, tmp_path, method) -> None:
    with pytest.raises(
        UsageError, match=r"needs the federation's reference \(models/reference.npz"
    ):
        _adapt(federation["without_reference"], target_site, tmp_path / "x", f"method={method}")
    assert not (tmp_path / "x").exists()
