"""The centralized baseline on a tiny synthetic federation: its run folder ends with the
same metrics contract as a federated run, a checkpoint, and a model package that loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedshift.bundle import load_bundle
from fedshift.cli import main

SCENARIO = """
name: tiny
sites:
  a: {}
  b: {gamma: 1.2}
  t: {labelled: false, noise: 0.05}
"""


@pytest.mark.slow
def test_centralized_baseline_ends_with_a_model_package(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(SCENARIO)
    out = tmp_path / "run"
    rc = main(
        [
            "baseline",
            "centralized",
            f"out={out}",
            "fed.rounds=1",
            "fed.secure_stats=false",
            "fed.align_intensity=false",
            f"data.scenario={tmp_path / 'tiny.yaml'}",
            "data.synth_overrides=[voxel_mm=6,n_train=3,n_test=1,calibration_cases=0]",
            f"data.synth_dir={tmp_path / 'data'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "seg.train.local_steps=2",
            "seg.train.patch_size=[16,16,16]",
            "seg.train.batch_size=1",
            "seg.eval.sw_batch_size=1",
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["final"]["sites"]) == {"a", "b"}
    assert set(metrics["final"]["target"]) == {"t"}
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["last_round"] == 1
    bundle = load_bundle(out / "model")
    assert bundle.threshold == pytest.approx(metrics["final"]["target_threshold"])
    assert bundle.info["source"]["round"] == 1
    assert bundle.spacing == (6.0, 6.0, 6.0)
