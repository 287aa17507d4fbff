"""The adaptation benchmark: --report-only on a folder without finished runs; its runs' settings."""

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "simulations" / "bench_adaptation.py"
_spec = importlib.util.spec_from_file_location("bench_adaptation", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_report_only_without_runs_names_the_folder(tmp_path):
    # an unfinished run (metrics.json without its final evaluation) does not count
    unfinished = tmp_path / "fedavg" / "seed0"
    unfinished.mkdir(parents=True)
    (unfinished / "metrics.json").write_text('{"rounds": [], "final": {}}')
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--report-only", "--seeds", "0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert f"no finished runs under {tmp_path}" in done.stderr
    assert not (tmp_path / "benchmark.md").exists()


def test_every_federated_run_states_both_statistics_flags() -> None:
    """configs/default.yaml turns secure statistics and the intensity map on; a benchmark
    run that left them out would silently inherit them (fedavg would become fedavg + map)."""
    for run, overrides in bench.RUNS.items():
        if run in bench.BASELINES:
            continue
        keys = {o.split("=", 1)[0] for o in overrides}
        assert {"fed.secure_stats", "fed.align_intensity"} <= keys, run
