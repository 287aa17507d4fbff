"""The adaptation benchmark's command line: --report-only on a folder without finished runs."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "simulations" / "bench_adaptation.py"


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
