"""How a simulated federation scales with its number of sites (issue 23, part 6): 8, 16
and 32 labelled sites plus one unlabelled target on small volumes, the same settings
otherwise, one simulation each; wall time per round and the peak memory of the whole
process tree (the simulate command, Ray and its workers) against the number of sites.

    python simulations/bench_scale.py --out runs/bench-scale
    python simulations/bench_scale.py --sites 4 8 --secure -- fed.rounds=3

Each site: 3 training cases and 1 test case at 6 mm, 2 local steps on 16^3 patches, so
the figures measure the federation's machinery (messages, aggregation, the secure sums
with ``--secure``), not training. Peak memory is the largest sum of the resident set
sizes of the command's process tree, sampled every 0.5 s from /proc. Prints and writes
OUT/scale.md and OUT/scale.json; time per round should grow at most linearly in the
number of sites (the ratio column: seconds per round per site, against the smallest).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SMALL = [
    "data.synth_overrides=[voxel_mm=6,n_train=3,n_test=1,calibration_cases=0]",
    "seg.train.local_steps=2",
    "seg.train.patch_size=[16,16,16]",
    "seg.train.batch_size=1",
    "seg.eval.sw_batch_size=1",
    "fed.align_intensity=false",
]


def scenario(n_sites: int) -> str:
    """A scenario with ``n_sites`` labelled sites and one unlabelled target, no shift."""
    lines = [f"name: scale{n_sites}", "sites:"]
    lines += [f"  site{i:02d}: {{}}" for i in range(n_sites)]
    lines.append("  target: {labelled: false}")
    return "\n".join(lines) + "\n"


def tree_rss(root: int) -> int:
    """Bytes resident in process ``root`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * page
        except (OSError, ValueError):
            continue  # the process ended while we looked
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def simulate(n_sites: int, out: Path, secure: bool, overrides: list[str]) -> dict:
    folder = out / f"sites{n_sites}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scenario.yaml").write_text(scenario(n_sites))
    args = [
        f"data.scenario={folder / 'scenario.yaml'}",
        f"data.synth_dir={folder / 'data'}",
        f"data.cache_dir={folder / 'cache'}",
        f"fed.secure_stats={str(secure).lower()}",
        f"fed.secure_updates={str(secure).lower()}",
        *SMALL,
        *overrides,
        f"out={folder / 'run'}",
    ]
    cmd = [sys.executable, "-m", "fedshift.cli", "simulate", *args]
    print(f"{n_sites} sites: fedshift simulate {' '.join(args)}", flush=True)
    start, peak = time.perf_counter(), 0
    with (folder / "simulate.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.5)
    if proc.returncode != 0:
        raise SystemExit(f"{n_sites} sites failed ({proc.returncode}); see {folder}/simulate.log")
    metrics = json.loads((folder / "run" / "metrics.json").read_text())
    rounds = [sum(r["seconds"].values()) for r in metrics["rounds"]]
    return {
        "sites": n_sites,
        "wall_s": time.perf_counter() - start,
        "round_s": rounds,
        "median_round_s": float(np.median(rounds[1:] if len(rounds) > 1 else rounds)),
        "peak_rss_gb": peak / 2**30,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-scale"))
    parser.add_argument("--sites", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--secure", action="store_true", help="secure statistics and updates")
    parser.add_argument("overrides", nargs="*", help="run config key=value for every run")
    args = parser.parse_args()
    results = [simulate(n, args.out, args.secure, args.overrides) for n in sorted(args.sites)]
    base = results[0]["median_round_s"] / results[0]["sites"]
    lines = [
        "| sites | s per round (median of rounds 2..) | s per round per site / smallest's | "
        "peak memory (GB) | wall (s) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        per_site = r["median_round_s"] / r["sites"] / base
        lines.append(
            f"| {r['sites']} | {r['median_round_s']:.1f} | {per_site:.2f} | "
            f"{r['peak_rss_gb']:.2f} | {r['wall_s']:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(results, indent=1))
    (args.out / "scale.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
