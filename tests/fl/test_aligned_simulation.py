"""A real Flower simulation of ``seg.align.method=jdot`` on tiny synthetic sites: FedAvg
in round 1, then (``fed.align_from_round=2``, Dice gate open) the JDOT term at every site
and the unlabelled target training too, with the reference refreshed before the aligned
round. The target's update counts with its cases times ``fed.unlabelled_weight``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_secure_simulation import SCENARIO, overrides, simulate

from fedshift.fl import keys

pytestmark = pytest.mark.slow


def test_fedshift_aligns_from_the_given_round(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(SCENARIO)
    out = tmp_path / "run"
    args = [
        *overrides(tmp_path, out),
        "seg.align.method=jdot",
        "fed.rounds=2",
        "fed.align_from_round=2",
        "fed.align_min_val_dice=0",
        "seg.align.n_voxels=32",
        "seg.align.n_reference=32",
        "fed.unlabelled_weight=0.25",
    ]
    simulate(args)
    metrics = json.loads((out / "metrics.json").read_text())
    trained = [
        sorted(site for site, m in r["sites"].items() if "train_loss" in m)
        for r in metrics["rounds"]
    ]
    assert trained == [["a", "b", "c"], ["a", "b", "c", "t"]]  # the target joins at round 2
    assert [r["aligned"] for r in metrics["rounds"]] == [False, True]
    weight, cases = f"train_{keys.FEDAVG_WEIGHT}", f"train_{keys.NUM_EXAMPLES}"
    aligned = metrics["rounds"][1]["sites"]
    assert aligned["t"][weight] == pytest.approx(0.25 * aligned["t"][cases])
    assert all(aligned[s][weight] == aligned[s][cases] > 0 for s in ("a", "b", "c"))
    stats = metrics["federation"]["statistics"]
    assert [r["after_round"] for r in stats] == [0, 1, 2]  # first, aligned refresh, final
    assert all(metrics["readiness"][s]["trains"] for s in ("a", "b", "c", "t"))
    assert set(metrics["final"]["bures"]["sites"]) == {"a", "b", "c"}
    assert "t" in metrics["final"]["target"]
