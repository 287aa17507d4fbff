"""Model packages: written whole, loaded with checks, refused with the file named when
corrupt; a site's package adds its intensity map; a finished run folder gives one."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_phantoms import tiny_seg
from omegaconf import OmegaConf

from fedshift import __version__
from fedshift.bundle import (
    IntensityReference,
    bundle_from_run,
    load_bundle,
    run_summary,
    site_bundle,
    write_bundle,
)
from fedshift.bundle.layout import INFERENCE, INTENSITY_MAP, METADATA, WEIGHTS
from fedshift.errors import BundleError, UsageError
from fedshift.model.network import build_network, get_weights
from fedshift.record import RunRecord
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunFolder, RunState
from fedshift.shift.intensity import IntensityMap


def _package(path: Path, **kwargs) -> Path:
    seg = tiny_seg()
    args = {
        "weights": get_weights(build_network(seg.model, seed=3)),
        "seg_cfg": seg,
        "threshold": 0.35,
        "sites": {"b": 4, "a": 6},
        "val_dice": 0.61,
        "run_config_hash": "abc",
        "spacing": (3.0, 3.0, 3.0),
        **kwargs,
    }
    return write_bundle(path, **args)


def test_a_package_round_trips(tmp_path: Path) -> None:
    seg = tiny_seg()
    weights = get_weights(build_network(seg.model, seed=3))
    ref = IntensityReference(np.linspace(-5, 5, 11), np.full(10, 0.1))
    root = _package(tmp_path / "model", intensity_reference=ref)
    bundle = load_bundle(root)
    assert bundle.threshold == 0.35 and bundle.spacing == (3.0, 3.0, 3.0)
    assert bundle.seg.model == seg.model and bundle.seg.preprocess == seg.preprocess
    assert tuple(bundle.seg.train.patch_size) == (16, 16, 16)
    for mine, theirs in zip(get_weights(bundle.network), weights, strict=True):
        assert np.array_equal(mine, theirs)
    info = bundle.info
    assert info["version"] == __version__ and info["label_map"] == {
        "0": "background",
        "1": "lesion",
    }
    assert info["sites"] == {"a": 6, "b": 4} and info["val_dice"] == 0.61
    assert info["input"] == {
        "channels": ["FLAIR"],
        "spacing_mm": [3.0, 3.0, 3.0],
        "orientation": "RAS",
    }
    assert info["preprocessing"]["n4"] is True and info["intensity_alignment"] is True
    assert info["intensity_reference"]["pmf"] == [0.1] * 10
    assert bundle.intensity_map is None and not bundle.network.training
    # MONAI's own metadata fields are there too
    assert bundle.metadata["network_data_format"]["inputs"]["image"]["num_channels"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder


def test_a_package_is_replaced_whole(tmp_path: Path) -> None:
    root = _package(tmp_path / "model", threshold=0.2)
    _package(root, threshold=0.7)
    assert load_bundle(root).threshold == 0.7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_weights_that_do_not_fit_are_refused_at_writing(tmp_path: Path) -> None:
    other = replace(tiny_seg().model, feat_dim=4)
    with pytest.raises(BundleError, match="shape"):
        _package(tmp_path / "m", weights=get_weights(build_network(other)))
    with pytest.raises(BundleError, match="weight arrays"):
        _package(tmp_path / "m", weights=get_weights(build_network(tiny_seg().model))[:-1])
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []


def _edit_metadata(root: Path, edit) -> None:
    meta = json.loads((root / METADATA).read_text())
    edit(meta)
    (root / METADATA).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("corrupt", "file", "words"),
    [
        (lambda r: (r / WEIGHTS).unlink(), WEIGHTS, "is missing"),
        (lambda r: (r / METADATA).unlink(), METADATA, "is missing"),
        (lambda r: (r / INFERENCE).unlink(), INFERENCE, "is missing"),
        (lambda r: (r / WEIGHTS).write_bytes(b"not torch"), WEIGHTS, "not a readable"),
        (lambda r: (r / METADATA).write_text("{"), METADATA, "not readable JSON"),
        (
            lambda r: torch.save(
                {**torch.load(r / WEIGHTS), "f.weight": torch.zeros(2, 3, 1, 1, 1)}, r / WEIGHTS
            ),
            WEIGHTS,
            r"'f.weight' has shape \(2, 3, 1, 1, 1\)",
        ),
        (
            lambda r: torch.save(
                {k: v for k, v in torch.load(r / WEIGHTS).items() if k != "f.bias"}, r / WEIGHTS
            ),
            WEIGHTS,
            "missing",
        ),
        (
            lambda r: torch.save(
                {k: v + 1 for k, v in torch.load(r / WEIGHTS).items()}, r / WEIGHTS
            ),
            WEIGHTS,
            "differs from the checksum",
        ),
        (
            lambda r: _edit_metadata(r, lambda m: m["fedshift"].update(version="7.0.0")),
            METADATA,
            "another major version",
        ),
        (
            lambda r: _edit_metadata(r, lambda m: m["fedshift"].update(format=99)),
            METADATA,
            "format 99",
        ),
        (
            lambda r: _edit_metadata(r, lambda m: m["fedshift"]["seg"]["model"].update(feat_dim=4)),
            WEIGHTS,
            "has shape",
        ),
        (
            lambda r: _edit_metadata(r, lambda m: m["fedshift"]["seg"].pop("preprocess")),
            METADATA,
            "seg.preprocess",
        ),
    ],
)
def test_a_corrupt_package_is_refused_naming_the_file(
    tmp_path: Path, corrupt, file: str, words: str
) -> None:
    root = _package(tmp_path / "model")
    corrupt(root)
    with pytest.raises(BundleError, match=words) as err:
        load_bundle(root)
    assert str(root / file) in str(err.value)
    assert isinstance(err.value, UsageError)  # the CLI prints it on one line, exit 2


def test_site_package_adds_its_intensity_map(tmp_path: Path) -> None:
    root = _package(tmp_path / "model")
    mapping = IntensityMap(x=np.array([-5.0, 0.0, 5.0]), y=np.array([-4.0, 0.5, 4.0]))
    site = site_bundle(root, tmp_path / "sites" / "a" / "model", mapping, site="a")
    bundle = load_bundle(site)
    assert bundle.info["site"] == "a" and (site / INTENSITY_MAP).is_file()
    assert np.array_equal(bundle.intensity_map.x, mapping.x)
    assert np.array_equal(bundle.intensity_map.y, mapping.y)
    for mine, theirs in zip(
        get_weights(bundle.network), get_weights(load_bundle(root).network), strict=True
    ):
        assert np.array_equal(mine, theirs)
    np.savez(site / INTENSITY_MAP, x=np.array([1.0]), y=np.array([1.0, 2.0]))
    with pytest.raises(BundleError, match=str(site / INTENSITY_MAP)):
        load_bundle(site)


def _run_folder(tmp_path: Path, align: bool, final: dict) -> Path:
    """A run folder as the coordinator leaves it (RunFolder writes it)."""
    seg = tiny_seg()
    cfg = RunConfig(out=str(tmp_path / "run"), seg=seg)
    run = RunFolder(cfg.out)
    run.write_config(cfg)
    if align:  # what fed.align_intensity=true records
        text = (run.root / "config.yaml").read_text()
        tree = OmegaConf.to_container(OmegaConf.create(text))
        tree["fed"]["align_intensity"] = True
        (run.root / "config.yaml").write_text(OmegaConf.to_yaml(tree))
        np.savez(
            run.root / "reference.npz",
            intensity_edges=np.linspace(-5, 5, 5),
            intensity_pmf=np.array([0.1, 0.4, 0.4, 0.1]),
        )
    site = {"train_num-examples": 4.0, "val_dice": 0.5, "val_n_cases": 1.0, "val_threshold": 0.3}
    record = {
        "rounds": [
            {"round": 1, "sites": {"a": dict(site), "t": {"val_n_cases": 0.0}}},
            {
                "round": 2,
                "sites": {
                    "a": {**site, "val_dice": 0.7},
                    "b": {**site, "train_num-examples": 6.0, "val_dice": 0.8},
                    "t": {"val_n_cases": 0.0, "val_dice": math.nan},
                },
            },
        ],
        "readiness": {
            "a": {"level": "A", "n_cases": 5, "n_usable": 5, "trains": True},
            "t": {"level": "B", "n_cases": 3, "n_usable": 3, "trains": False},
        },
        "final": final,
    }
    state = RunState(2, get_weights(build_network(seg.model, seed=5)), RunRecord.from_json(record))
    run.save_checkpoint(state)
    run.write_record(state.record)
    return run.root


def test_a_finished_run_gives_a_package(tmp_path: Path) -> None:
    final = {
        "sites": {"a": {"dice": 0.6, "threshold": 0.3}},
        "target": {},
        "target_threshold": 0.45,
    }
    run = _run_folder(tmp_path, align=True, final=final)
    root = bundle_from_run(run, tmp_path / "model", spacing=(2.0, 2.0, 2.0))
    bundle = load_bundle(root)
    assert bundle.threshold == 0.45 and bundle.spacing == (2.0, 2.0, 2.0)
    assert bundle.info["sites"] == {"a": 4, "b": 6}
    assert bundle.info["val_dice"] == pytest.approx(0.75)
    assert bundle.info["intensity_reference"]["pmf"] == [0.1, 0.4, 0.4, 0.1]
    assert bundle.info["source"]["round"] == 2
    expected = get_weights(build_network(tiny_seg().model, seed=5))
    for mine, theirs in zip(get_weights(bundle.network), expected, strict=True):
        assert np.array_equal(mine, theirs)


def test_run_without_target_threshold_uses_the_sites_thresholds(tmp_path: Path) -> None:
    final = {"sites": {"a": {"threshold": 0.3}, "b": {"threshold": 0.5}}, "target": {}}
    metrics = json.loads((_run_folder(tmp_path, False, final) / "metrics.json").read_text())
    summary = run_summary(metrics)
    assert summary.threshold == pytest.approx(0.4)
    assert run_summary({"rounds": metrics["rounds"]}).threshold == pytest.approx(0.3)
    assert run_summary({}).threshold is None and run_summary({}).sites == {}


def test_spacing_comes_from_the_synthetic_scenario(tmp_path: Path) -> None:
    run = _run_folder(tmp_path, False, {"target_threshold": 0.5})
    bundle = load_bundle(bundle_from_run(run, tmp_path / "model"))
    assert bundle.spacing == (3.0, 3.0, 3.0)  # the default scenario's voxel_mm
    assert "synthetic scenario" in bundle.info["source"]["spacing_from"]


def test_an_unfinished_run_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(BundleError, match="config.yaml is missing"):
        bundle_from_run(tmp_path / "run", tmp_path / "model")
