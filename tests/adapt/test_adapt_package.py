"""The federation's reference travels in model packages (written, checksummed, loaded,
kept by a site's package and by an adapted one); older packages load without it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from adapt_phantoms import seg_config

from fedshift.bundle import (
    adapted_bundle,
    bundle_from_run,
    load_bundle,
    package_digest,
    site_bundle,
    write_bundle,
)
from fedshift.bundle.layout import METADATA, REFERENCE
from fedshift.errors import BundleError
from fedshift.model.network import build_network, get_state, get_weights
from fedshift.record import RunRecord
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunFolder, RunState
from fedshift.shift.intensity import IntensityMap


def _same(a, b) -> bool:
    x, y = a.to_arrays(), b.to_arrays()
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def test_the_reference_round_trips(federation, tmp_path: Path) -> None:
    bundle = load_bundle(federation["with_reference"])
    reference = bundle.reference
    assert reference is not None and set(reference.gaussians) == {"background", "lesion"}
    assert bundle.info["files"]["reference"] == REFERENCE
    assert bundle.info["reference"]["labelled_cases"] == reference.labelled_cases
    # as the coordinator sends it to the sites: JSON lists
    as_json = json.loads(json.dumps({k: v.tolist() for k, v in reference.to_arrays().items()}))
    site_root = site_bundle(
        federation["with_reference"],
        tmp_path / "site",
        IntensityMap(np.array([-1.0, 1.0]), np.array([-2.0, 2.0])),
        site="s",
    )
    assert _same(load_bundle(site_root).reference, reference)
    root = write_bundle(
        tmp_path / "json",
        weights=get_weights(bundle.network),
        seg_cfg=bundle.seg,
        threshold=0.4,
        sites={"a": 1},
        val_dice=None,
        run_config_hash="x",
        spacing=(2.0, 2.0, 2.0),
        reference=as_json,
    )
    assert _same(load_bundle(root).reference, reference)


def test_an_old_package_loads_without_reference(federation, tmp_path: Path) -> None:
    old = shutil.copytree(federation["without_reference"], tmp_path / "old")
    meta = json.loads((old / METADATA).read_text())
    meta["fedshift"].pop("reference")  # written before packages kept the reference
    (old / METADATA).write_text(json.dumps(meta))
    assert load_bundle(old).reference is None


def test_a_tampered_or_misfit_reference_is_refused(federation, tmp_path: Path) -> None:
    root = shutil.copytree(federation["with_reference"], tmp_path / "model")
    with np.load(root / REFERENCE) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["gaussian.lesion.mean"] = arrays["gaussian.lesion.mean"] + 1.0
    np.savez(root / REFERENCE, **arrays)
    with pytest.raises(BundleError, match="differs from the checksum"):
        load_bundle(root)
    (root / REFERENCE).unlink()
    with pytest.raises(BundleError, match="reference.npz is missing"):
        load_bundle(root)
    bundle = load_bundle(federation["with_reference"])
    seg = seg_config()
    wider = replace(seg, model=replace(seg.model, feat_dim=4))
    with pytest.raises(BundleError, match="embeddings have 4 features"):
        write_bundle(
            tmp_path / "misfit",
            weights=get_weights(build_network(wider.model)),
            seg_cfg=wider,
            threshold=0.5,
            sites={},
            val_dice=None,
            run_config_hash="x",
            spacing=(2.0, 2.0, 2.0),
            reference=bundle.reference,
        )


def test_a_run_folder_gives_its_reference_to_the_package(federation, tmp_path: Path) -> None:
    bundle = load_bundle(federation["with_reference"])
    run = RunFolder(tmp_path / "run")
    run.write_config(RunConfig(out=str(run.root), seg=bundle.seg))
    record = RunRecord.from_json(
        {
            "rounds": [{"round": 1, "sites": {"a": {"train_num-examples": 5.0}}}],
            "final": {"sites": {}, "target": {}, "target_threshold": 0.4},
        }  # fmt: skip
    )
    run.save_checkpoint(RunState(1, get_weights(bundle.network), record))
    run.write_record(record)
    run.save_arrays("reference.npz", bundle.reference.to_arrays())
    package = load_bundle(bundle_from_run(run.root, tmp_path / "pkg", spacing=(2.0, 2.0, 2.0)))
    assert _same(package.reference, bundle.reference)


def test_an_adapted_package_records_and_never_overwrites_its_source(
    federation, tmp_path: Path
) -> None:
    source = load_bundle(federation["with_reference"])
    digest = package_digest(source.root)
    state = {
        k: v + 1.0 if v.is_floating_point() else v for k, v in source.network.state_dict().items()
    }
    with pytest.raises(BundleError, match="is the package adapted from"):
        adapted_bundle(source, source.root, state, {"method": "x"})
    out = adapted_bundle(source, tmp_path / "adapted", state, {"method": "x", "steps_run": 3})
    adapted = load_bundle(out)
    assert adapted.info["adaptation"] == {"method": "x", "steps_run": 3}
    assert adapted.threshold == source.threshold and adapted.spacing == source.spacing
    assert _same(adapted.reference, source.reference)
    new = get_state(adapted.network)
    for name, tensor in state.items():
        assert np.array_equal(new[name], tensor.numpy().astype(np.float32))
    assert package_digest(source.root) == digest and package_digest(out) != digest
    with pytest.raises(BundleError):
        adapted_bundle(source, tmp_path / "bad", {"f.weight": torch.zeros(1)}, {})
