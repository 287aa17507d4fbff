"""What secure model updates cost (issue 23): the same run plain and with
``fed.secure_updates=true`` (same seed, default scenario unless overridden), alternating
plain / secure per seed so that both see the same machine.

    python simulations/bench_secure_updates.py --out runs/bench-secure-updates --seeds 0
    python simulations/bench_secure_updates.py --seeds 0 1 2 -- fed.rounds=3

Prints and writes OUT/secure_updates.md: per seed the training seconds per round (median
of rounds 2.., round 1 carries start-up), their ratio secure / plain (issue: <= 1.3), the
bytes a labelled site sent and received per training round (from its audit log, against
the fp32 model's size), and the final test Dice per site of both runs with the largest
difference (issue: <= 0.002 with the same seed). Every run is plain otherwise (no
secure statistics, no intensity map). Finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_adaptation import fedshift_run, finished

PLAIN = ["fed.secure_stats=false", "fed.align_intensity=false"]
ARMS = {"plain": [], "secure": ["fed.secure_updates=true"]}


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
        "sent_per_round": float(np.mean(list(audit.bytes_per_round.values()))),
        "received_per_round": float(np.mean(list(audit.received_per_round.values()))),
        "model_bytes": model_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-secure-updates"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("overrides", nargs="*", help="run config key=value for every run")
    args = parser.parse_args()
    lines = [
        "| seed | train s/round plain | secure | ratio | sent/round (x fp32 model) plain | "
        "secure | received/round plain | secure | max abs Dice difference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    result = {}
    for seed in args.seeds:
        m = {arm: measure(run(arm, seed, args.out, args.overrides)) for arm in ARMS}
        p, s = m["plain"], m["secure"]
        diff = max(abs(p["dice"][k] - s["dice"][k]) for k in p["dice"])
        size = p["model_bytes"]
        lines.append(
            f"| {seed} | {p['round_s']:.1f} | {s['round_s']:.1f} | "
            f"{s['round_s'] / p['round_s']:.2f} | {p['sent_per_round'] / size:.3f} | "
            f"{s['sent_per_round'] / size:.3f} | {p['received_per_round'] / size:.3f} | "
            f"{s['received_per_round'] / size:.3f} | {diff:.4f} |"
        )
        result[seed] = m
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "secure_updates.json").write_text(json.dumps(result, indent=1))
    text = "\n".join(lines) + "\n"
    (args.out / "secure_updates.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
