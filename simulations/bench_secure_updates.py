"""What a change to the update costs against the plain run (issue 23): secure updates
(``fed.secure_updates=true``), the float16 upload (``fed.update_dtype=float16``),
site-level differential privacy at epsilon 8 or 1 (``fed.dp_epsilon``, delta and clip
norm at their defaults, the budget spread over the run's rounds), or two
torch threads per site instead of one (``simulation.cpus_per_site=2``: nothing about the
update changes, only the order of float sums inside training, so its Dice difference is
the floor that any other arm's difference is compared with). Same seed, default scenario
unless overridden; per seed the plain run first, then each arm.

    python simulations/bench_secure_updates.py --out runs/bench-secure-updates --seeds 0
    python simulations/bench_secure_updates.py --seeds 0 1 2 --arms secure float16 threads2 \
        -- fed.rounds=3

Prints and writes OUT/secure_updates.md: per seed and arm the training seconds per round
(median of rounds 2.., round 1 carries start-up), their ratio arm / plain (secure: issue
<= 1.3), the bytes a labelled site sent and received per training round (from its audit
log, against the fp32 model's size), the final test Dice difference arm - plain: the
largest over sites (issue: <= 0.002 with the same seed) and the mean over the labelled
sites; then per arm the paired mean difference over the seeds. Every run is plain
otherwise (no secure statistics, no intensity map). Finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_adaptation import fedshift_run, finished

PLAIN = ["fed.secure_stats=false", "fed.align_intensity=false"]
ARMS = {
    "plain": [],
    "secure": ["fed.secure_updates=true"],
    "float16": ["fed.update_dtype=float16"],
    "threads2": ["simulation.cpus_per_site=2"],
    "dp8": ["fed.dp_epsilon=8"],
    "dp1": ["fed.dp_epsilon=1"],
}


def run(arm: str, seed: int, out: Path, overrides: list[str]) -> Path:
    folder = out / arm / f"seed{seed}"
    if not finished(folder):
        command = ["simulate", *PLAIN, *ARMS[arm], f"seed={seed}", *overrides, f"out={folder}"]
        fedshift_run(command, folder.with_suffix(".log"), f"{arm} seed {seed}")
    return folder


def measure(folder: Path) -> dict:
    """Training seconds per round, final Dice per site, bytes per round of one site."""
    from fedshift.audit import find_logs, read_log, summarise

    metrics = json.loads((folder / "metrics.json").read_text())
    seconds = [r["seconds"]["train"] for r in metrics["rounds"]]
    final = {**metrics["final"]["sites"], **metrics["final"]["target"]}
    labelled = sorted(metrics["final"]["sites"])[0]
    audit = summarise(read_log(find_logs(folder)[labelled]))
    with np.load(folder / "checkpoints" / "round_001.npz") as w:
        model_bytes = sum(w[k].nbytes for k in w.files)
    return {
        "train_s": seconds,
        "round_s": float(np.median(seconds[1:] if len(seconds) > 1 else seconds)),
        "dice": {s: float(m["dice"]) for s, m in final.items()},
        "site": labelled,
        "labelled": sorted(metrics["final"]["sites"]),
        "sent_per_round": float(np.mean(list(audit.bytes_per_round.values()))),
        "received_per_round": float(np.mean(list(audit.received_per_round.values()))),
        "model_bytes": model_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-secure-updates"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--arms", nargs="+", default=["secure"], choices=[a for a in ARMS if a != "plain"]
    )
    parser.add_argument("overrides", nargs="*", help="run config key=value for every run")
    args = parser.parse_args()
    lines = [
        "| seed | arm | train s/round plain | arm | ratio | sent/round (x fp32 model) plain | "
        "arm | received/round plain | arm | Dice arm - plain: largest abs (site) | "
        "labelled mean |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    result: dict = {}
    for seed in args.seeds:
        p = measure(run("plain", seed, args.out, args.overrides))
        result[seed] = {"plain": p}
        for arm in args.arms:
            a = result[seed][arm] = measure(run(arm, seed, args.out, args.overrides))
            diff = {k: a["dice"][k] - p["dice"][k] for k in p["dice"]}
            worst = max(diff, key=lambda k: abs(diff[k]))
            labelled = float(np.mean([diff[k] for k in p["labelled"]]))
            a["dice_diff"], a["labelled_mean_diff"] = diff, labelled
            size = p["model_bytes"]
            lines.append(
                f"| {seed} | {arm} | {p['round_s']:.1f} | {a['round_s']:.1f} | "
                f"{a['round_s'] / p['round_s']:.2f} | {p['sent_per_round'] / size:.3f} | "
                f"{a['sent_per_round'] / size:.3f} | {p['received_per_round'] / size:.3f} | "
                f"{a['received_per_round'] / size:.3f} | {diff[worst]:+.4f} ({worst}) | "
                f"{labelled:+.4f} |"
            )
    lines += ["", "| arm | seeds | labelled-mean Dice difference, mean ± sd over seeds |"]
    lines += ["|---|---|---|"]
    for arm in args.arms:
        d = [result[seed][arm]["labelled_mean_diff"] for seed in args.seeds]
        sd = f"{np.std(d, ddof=1):.4f}" if len(d) > 1 else "n/a"
        lines.append(f"| {arm} | {len(d)} | {np.mean(d):+.4f} ± {sd} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "secure_updates.json").write_text(json.dumps(result, indent=1))
    text = "\n".join(lines) + "\n"
    (args.out / "secure_updates.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
