"""A real Flower simulation with ``fed.secure_stats=true`` and ``fed.align_intensity=true``
on tiny synthetic sites: the coordinator's secure sum equals the plain sum of the sites'
statistics, every site gets a diagnosis and its intensity map, diagnosis.html is written,
and no site's statistics appear in the clear in the coordinator's output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from leaks import holds_sequence

from fedshift.config import CONFIG_DIR, load_config
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunFolder
from fedshift.shift.stats import StatsLayout
from fedshift.site.folders import resolve_sites
from fedshift.site.worker import site_worker

pytestmark = pytest.mark.slow

SCENARIO = """
name: tiny
sites:
  a: {}
  b: {gamma: 1.2}
  c: {bias_field: 0.4}
  t: {labelled: false, noise: 0.05}
"""


def overrides(tmp: Path, out: Path) -> list[str]:
    return [
        f"out={out}",
        "fed.rounds=1",
        "fed.secure_stats=true",
        "fed.align_intensity=true",
        "fed.stats_samples=64",
        f"data.scenario={tmp / 'tiny.yaml'}",
        "data.synth_overrides=[voxel_mm=6,n_train=4,n_test=1]",
        f"data.synth_dir={tmp / 'data'}",
        f"data.cache_dir={tmp / 'cache'}",
        "seg.train.local_steps=1",
        "seg.train.patch_size=[16,16,16]",
        "seg.train.batch_size=1",
        "seg.eval.sw_batch_size=1",
    ]


def simulate(args: list[str]) -> str:
    """``fedshift simulate ARGS`` in a subprocess; its output (the run must succeed)."""
    proc = subprocess.run(
        [sys.executable, "-m", "fedshift.cli", "simulate", *args],
        env={**os.environ, "RAY_DEDUP_LOGS": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        start_new_session=True,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path, str]:
    tmp = tmp_path_factory.mktemp("secure-sim")
    (tmp / "tiny.yaml").write_text(SCENARIO)
    out = tmp / "run"
    args = overrides(tmp, out)
    return args, out, simulate(args)


@pytest.fixture(scope="module")
def plain(run: tuple[list[str], Path, str]) -> dict[str, np.ndarray]:
    """Each site's statistics computed directly, with the weights, the intensity map and the
    decision threshold of the last statistics round (after round 1: the final model), in
    another work folder."""
    args, out, _ = run
    cfg = resolve_sites(load_config(RunConfig, [CONFIG_DIR / "default.yaml"], args))
    state = RunFolder(out).load_checkpoint()
    assert state is not None and state.last_round == 1
    cfg = replace(cfg, out=str(out.parent / "plain"))
    # the decision threshold the coordinator sent with the last statistics round
    threshold = json.loads((out / "metrics.json").read_text())["federation"]["statistics"][-1][
        "threshold"
    ]
    assert threshold is not None  # after round 1: the threshold its validation tuned
    for p in cfg.all_sites:  # each site's own intensity map, fitted in the run
        name = Path(p).name
        shutil.copytree(
            out / "sites" / name / "shift", out.parent / "plain" / "sites" / name / "shift"
        )
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as each simulated site (simulation.cpus_per_site=1)
    try:
        return {
            Path(p).name: site_worker(cfg, p)
            .statistics(state.weights, 1, cfg.fed.stats_samples, threshold=threshold)
            .stats.to_vector()
            for p in cfg.all_sites
        }
    finally:
        torch.set_num_threads(before)


def test_secure_sum_equals_plain_sum(run, plain: dict[str, np.ndarray]) -> None:
    _, out, _ = run
    with np.load(out / "secure_sum.npz") as npz:
        total = npz["total"]
    expected = np.sum(list(plain.values()), axis=0)
    np.testing.assert_allclose(total, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    rounds = json.loads((out / "metrics.json").read_text())["federation"]["statistics"]
    assert [r["after_round"] for r in rounds] == [0, 1]  # before round 1, after the last
    for summary in rounds:
        assert summary["sites"] == ["a", "b", "c", "t"] and summary["n_clipped"] == 0
        assert summary["cases"] == 16 and summary["labelled_cases"] == 12


def test_diagnosis_has_every_site(run) -> None:
    _, out, _ = run
    diagnosis = json.loads((out / "diagnosis.json").read_text())
    assert set(diagnosis["sites"]) == {"a", "b", "c", "t"}
    for entry in diagnosis["sites"].values():
        assert isinstance(entry["shift"], list) and "intensity_w1" in entry["indicators"]
    with np.load(out / "reference.npz") as ref:
        assert ref["intensity_pmf"].sum() == pytest.approx(1.0)
    for site in ("a", "b", "c", "t"):  # each site fitted its own map; it stayed there
        assert (out / "sites" / site / "shift" / "intensity_map.npz").is_file()
    page = (out / "diagnosis.html").read_text()
    assert all(f"<h2>{site}</h2>" in page for site in ("a", "b", "c", "t"))
    assert "Shift diagnosis" in (out / "report.html").read_text()


def test_no_site_statistics_in_the_clear(run, plain: dict[str, np.ndarray]) -> None:
    """No site's intensity histogram (its non-zero counts in order, in any number format)
    appears in metrics.json, diagnosis.json or the run's output."""
    _, out, log_text = run
    texts = [(out / "metrics.json").read_text(), (out / "diagnosis.json").read_text(), log_text]
    intensity = StatsLayout(16).fields()["intensity"]
    for site, vector in plain.items():
        counts = [c for c in vector[intensity] if c > 0]
        assert len(counts) >= 5, site
        for text in texts:
            assert not holds_sequence(text, counts), site


def test_statistics_left_every_site_only_masked(run: tuple[list[str], Path, str]) -> None:
    """Each site's audit log: the statistics steps carried no array but the masked uint64
    vector; the reference step and every other reply no array shaped like an image."""
    from fedshift.audit import find_logs, read_log, summarise

    _, out, _ = run
    logs = find_logs(out)
    assert set(logs) == {"a", "b", "c", "t"}
    for path in logs.values():
        entries = read_log(path)
        audit = summarise(entries)
        assert not audit.image_like and audit.errors == 0
        assert audit.messages["query.secagg_keys"] >= 2  # before round 1 and after the last
        steps = {k: v for k, v in audit.arrays.items() if k[0].startswith("query.")}
        assert set(steps) == {("query.secagg_masked", "secagg-values", "uint64")}
        assert audit.plain_float <= {"train"}  # model weights (fed.secure_updates is off)
