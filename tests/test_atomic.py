"""fedshift.atomic: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from fedshift import atomic


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "case.nii.gz"
    target.write_bytes(b"old")

    def half_then_fail(tmp: Path) -> None:
        assert tmp.name.endswith(".nii.gz")  # nibabel picks the format from the suffix
        with gzip.open(tmp, "wb") as fh:
            fh.write(b"\0" * 1000)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write_with(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.nii.gz"]


def test_json_is_strict_and_numpy_free(tmp_path: Path) -> None:
    body = {"a": np.float32(0.5), "b": [float("nan"), np.int64(3)], "c": np.arange(2)}
    path = atomic.write_json(tmp_path / "sub" / "x.json", body)
    assert json.loads(path.read_text()) == {"a": 0.5, "b": [None, 3], "c": [0, 1]}
    assert "NaN" not in path.read_text()


def test_npz_round_trip_and_replace(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    atomic.save_npz(path, {"w": np.ones(3)})
    atomic.save_npz(path, {"w": np.zeros(2)})
    with np.load(path) as data:
        np.testing.assert_array_equal(data["w"], np.zeros(2))
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]
