"""Run folder: checkpoints survive a round trip, resume refuses a different run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedshift.errors import UsageError
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunFolder, RunState


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(3, 4)).astype(np.float32), np.arange(5, dtype=np.float32)]
    folder = RunFolder(tmp_path)
    state = RunState(
        last_round=2, weights=weights, rounds=[{"round": 1, "sites": {"a": {"x": float("nan")}}}]
    )
    folder.save_checkpoint(state)
    back = folder.load_checkpoint()
    assert back is not None and back.last_round == 2
    assert all(np.array_equal(a, b) for a, b in zip(weights, back.weights, strict=True))
    assert back.rounds[0]["sites"]["a"]["x"] is None  # NaN is stored as null
    assert not list(folder.checkpoints.glob("*.tmp*"))


def test_no_checkpoint_is_none(tmp_path: Path) -> None:
    assert RunFolder(tmp_path).load_checkpoint() is None


def test_resume_refuses_other_seed(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.write_config(RunConfig(seed=1))
    folder.check_resumable(RunConfig(seed=1, fed=RunConfig().fed.__class__(rounds=9)))
    with pytest.raises(UsageError, match="seed"):
        folder.check_resumable(RunConfig(seed=2))
