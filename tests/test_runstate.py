"""Run folder: checkpoints survive a round trip, resume refuses a different run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedshift.errors import UsageError
from fedshift.record import FinalRecord, RoundRecord, RunRecord, SiteReadiness
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunFolder, RunState


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(3, 4)).astype(np.float32), np.arange(5, dtype=np.float32)]
    folder = RunFolder(tmp_path)
    record = RunRecord(rounds=[RoundRecord(1, {"a": {"x": float("nan")}})])
    state = RunState(last_round=2, weights=weights, record=record)
    folder.save_checkpoint(state)
    back = folder.load_checkpoint()
    assert back is not None and back.last_round == 2
    assert all(np.array_equal(a, b) for a, b in zip(weights, back.weights, strict=True))
    assert back.record.rounds[0].sites["a"]["x"] is None  # NaN is stored as null
    assert not list(folder.checkpoints.glob("*.tmp*"))


def test_no_checkpoint_is_none(tmp_path: Path) -> None:
    assert RunFolder(tmp_path).load_checkpoint() is None


def test_resume_refuses_other_seed(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.write_config(RunConfig(seed=1))
    folder.check_resumable(RunConfig(seed=1, fed=RunConfig().fed.__class__(rounds=9)))
    with pytest.raises(UsageError, match="seed"):
        folder.check_resumable(RunConfig(seed=2))


def test_a_private_run_resumes_only_with_its_budget_and_rounds(tmp_path: Path) -> None:
    private = RunConfig().fed.__class__(dp_epsilon=8.0, rounds=5)
    folder = RunFolder(tmp_path)
    folder.write_config(RunConfig(fed=private))
    folder.check_resumable(RunConfig(fed=private))
    with pytest.raises(UsageError, match="fed.rounds .*budget"):
        folder.check_resumable(RunConfig(fed=RunConfig().fed.__class__(dp_epsilon=8.0, rounds=9)))
    with pytest.raises(UsageError, match="fed.dp_epsilon"):
        folder.check_resumable(RunConfig(fed=RunConfig().fed.__class__(dp_epsilon=1.0, rounds=5)))
    with pytest.raises(UsageError, match="fed.dp_epsilon"):  # nor drop the noise
        folder.check_resumable(RunConfig(fed=RunConfig().fed.__class__(rounds=5)))


def test_run_record_round_trips_and_keeps_the_metrics_json_keys(tmp_path: Path) -> None:
    record = RunRecord(
        rounds=[RoundRecord(1, {"a": {"val_dice": 0.5}}, {"train": 1.0}, aligned=True)],
        final=FinalRecord(
            {"a": {"dice": 0.6}}, {"t": {"dice": float("nan")}}, 0.35, FinalRecord({}, {})
        ),
        readiness={"a": SiteReadiness("A", 4, 4, True)},
        timing={"serverapp_s": 2.0},
    )
    folder = RunFolder(tmp_path)
    folder.write_record(record)
    raw = json.loads((tmp_path / "metrics.json").read_text())
    assert set(raw) == {"rounds", "final", "readiness", "timing"}  # no federation: none ran
    assert set(raw["final"]) == {"sites", "target", "target_threshold", "bures"}
    assert raw["final"]["target"]["t"]["dice"] is None
    back = folder.read_record()
    assert back.rounds == record.rounds and back.readiness == record.readiness
    assert back.final is not None and back.final.target_threshold == 0.35
    assert back.to_json() == raw
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
