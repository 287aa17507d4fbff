"""Where the time of a federated run goes, in one run on this machine.

1. Local-training throughput (voxels/s) of FedShift's SiteTrainer against a bare MONAI
   loop on the same model, data and patches (``bench_trainer.py``); goal >= 0.95x.
2. A short Flower simulation on the default synthetic federation: the wall time of each
   round against the compute it contains (the sites' own training + evaluation seconds,
   spread over the simulation's parallel slots); goal <= 1.10x. The one-time start-up of
   the simulation engine (Ray, actors) and the readiness round are reported on their own
   lines.

    python simulations/bench_federation.py [--rounds 3] [--steps 20] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_trainer  # noqa: E402

from fedshift.config import CONFIG_DIR, load_config  # noqa: E402
from fedshift.fl.simulation import run_flower_simulation  # noqa: E402
from fedshift.runconfig import RunConfig  # noqa: E402
from fedshift.site.folders import resolve_sites  # noqa: E402


def round_overhead(cfg: RunConfig) -> None:
    start = time.perf_counter()
    state, wall = run_flower_simulation(cfg)
    total = time.perf_counter() - start
    n_sites = len(cfg.all_sites)
    slots = max(1, min(n_sites, int((os.cpu_count() or 1) // cfg.simulation.cpus_per_site)))
    timing = state.record.timing
    rounds = state.record.rounds
    in_rounds = sum(r.seconds["train"] + r.seconds["evaluate"] for r in rounds)
    startup = wall - timing["serverapp_s"] + timing["wait_for_sites_s"]
    print(f"simulation engine start-up before the first message (once): {startup:.1f} s")
    print(
        f"readiness round (once; includes the actors' start-up): {timing['readiness_s']:.1f} s; "
        f"final evaluation: "
        f"{timing['final_evaluation_s']:.1f} s; whole run {total:.1f} s"
    )
    ratios = []
    for entry in rounds:
        sites = entry.sites.values()
        compute = sum(
            s.get("train_train_seconds", 0.0) + s.get("val_eval_seconds", 0.0) for s in sites
        )
        wall_round = entry.seconds["train"] + entry.seconds["evaluate"]
        ideal = compute / slots
        ratios.append(wall_round / ideal)
        print(
            f"round {entry.round}: wall {wall_round:.1f} s, site compute {compute:.1f} s over "
            f"{slots} parallel slots = {ideal:.1f} s, ratio {wall_round / ideal:.2f}"
        )
    steady = ratios[1:] or ratios  # round 1 also fills the preprocessing cache
    print(
        f"rounds in total: {in_rounds:.1f} s; steady-state ratio (rounds 2+): "
        f"{sum(steady) / len(steady):.2f} (goal <= 1.10)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="local steps per round")
    parser.add_argument("--out", default="runs/bench_federation")
    args = parser.parse_args()
    cfg = resolve_sites(
        load_config(
            RunConfig,
            [CONFIG_DIR / "default.yaml"],
            [f"out={args.out}", f"fed.rounds={args.rounds}", f"seg.train.local_steps={args.steps}"],
        )
    )
    print("== 1. local training: SiteTrainer vs bare MONAI loop (site0 of the default federation)")
    bench_trainer.main(
        [
            cfg.data.sites[0],
            "--steps",
            str(args.steps),
            "--repeats",
            "3",
            "--cache",
            str(Path(cfg.data.cache_dir) / Path(cfg.data.sites[0]).name),
        ]
    )
    print("== 2. simulated rounds: wall time vs the compute they contain")
    round_overhead(replace(cfg, resume=False))


if __name__ == "__main__":
    main()
