"""A package is self-contained: after its run folder is gone, a fresh process segments
with it through ``fedshift predict`` and through MONAI's own bundle runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from inference_phantoms import (
    LESION_MM,
    MODEL_SPACING,
    draw_lesions,
    grid,
    rotation,
    write_case,
    write_run_folder,
)

from fedshift.bundle import bundle_from_run
from fedshift.bundle.io import ModelBundle

pytestmark = pytest.mark.slow  # two fresh Python processes importing torch and MONAI


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_a_package_predicts_in_fresh_processes_without_its_run(
    trained: ModelBundle, tmp_path: Path
) -> None:
    run = write_run_folder(trained, tmp_path)
    package = bundle_from_run(run, tmp_path / "shipped" / "model", spacing=(MODEL_SPACING,) * 3)
    shutil.rmtree(run)
    scans = tmp_path / "scans"
    for i, (spacing, directions) in enumerate(
        [((MODEL_SPACING,) * 3, np.eye(3)), ((0.9, 0.9, 3.0), rotation(2, 20))]
    ):
        rng = np.random.default_rng((4, i))
        affine, shape = grid(spacing, directions=directions)
        image, _ = write_case(
            tmp_path / "w", f"s{i}", affine, shape, draw_lesions(rng, 3, LESION_MM), rng
        )
        scans.mkdir(exist_ok=True)
        image.rename(scans / image.name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    cli = _run(
        ["-m", "fedshift.cli", "predict", str(package), str(scans), "--out", str(tmp_path / "a")],
        elsewhere,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    summary = json.loads((tmp_path / "a" / "predict.json").read_text())
    assert summary["n_ok"] == 2 and summary["model"]["threshold"] == trained.threshold

    monai = _run(
        [
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            str(package / "configs" / "inference.yaml"),
            "--dataset_dir",
            str(scans),
            "--output_dir",
            str(tmp_path / "b"),
            "--device",
            "cpu",
        ],
        elsewhere,
    )
    assert monai.returncode == 0, monai.stderr[-3000:]
    for case in ("s0", "s1"):
        a = nib.load(tmp_path / "a" / f"{case}.nii.gz")
        b = nib.load(tmp_path / "b" / f"{case}.nii.gz")
        source = nib.load(scans / f"{case}_0000.nii.gz")
        assert a.shape == b.shape == source.shape
        np.testing.assert_allclose(b.affine, source.affine, atol=1e-5)
        assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
        assert np.asarray(a.dataobj).any()
