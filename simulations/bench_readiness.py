"""Readiness throughput (cases/s) on synthetic sites at 3 mm and 1 mm.

Generates one site per voxel size (or reuses it under --work), then times
``run_readiness`` end to end (reading, checks, IQMs, report writing). Goal: >= 2 cases/s
at 1 mm on 2 cores.

    python simulations/bench_readiness.py --cases 12 --workers 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from fedshift.data.synth.config import SiteSpec, SynthConfig
from fedshift.data.synth.federation import write_federation
from fedshift.readiness.runner import run_readiness


def make_site(work: Path, voxel_mm: float, n_cases: int) -> Path:
    out = work / f"site_{voxel_mm:g}mm_{n_cases}"
    if not (out / "truth.json").is_file():
        cfg = SynthConfig(
            name="bench",
            seed=0,
            voxel_mm=voxel_mm,
            n_train=n_cases,
            n_test=0,
            sites={"bench": SiteSpec(bias_field=0.3, ghosting_fraction=0.1)},
        )
        write_federation(cfg, out, overwrite=True)
    return out / "bench"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=12, help="cases per site (default 12)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--work", type=Path, default=None, help="folder to keep generated sites")
    parser.add_argument("--voxels", type=float, nargs="+", default=[3.0, 1.0])
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="fedshift-bench-"))
    print(
        f"readiness throughput, {args.cases} cases per site, {args.workers} workers, "
        f"{os.cpu_count()} CPUs"
    )
    rows = []
    for voxel in args.voxels:
        site = make_site(work, voxel, args.cases)
        out = work / f"report_{voxel:g}mm"
        start = time.perf_counter()
        report = run_readiness(site, out, workers=args.workers)
        seconds = time.perf_counter() - start
        rate = report["n_cases"] / seconds
        rows.append((voxel, report["n_cases"], seconds, rate, report["level"]))
        print(
            f"  {voxel:g} mm: {report['n_cases']} cases in {seconds:.1f} s = {rate:.2f} cases/s "
            f"(level {report['level']}, {report['n_usable']} usable)"
        )
    for voxel, _, _, rate, _ in rows:
        if voxel == 1.0:
            verdict = "meets" if rate >= 2.0 else "misses"
            print(f"goal >= 2 cases/s at 1 mm: {verdict} it ({rate:.2f} cases/s)")


if __name__ == "__main__":
    main()
