"""Paired per-case comparison of finished benchmark runs: is a Dice difference between two
methods larger than the case-to-case noise?

    python simulations/paired_cases.py runs/bench-adaptation \\
        --methods fedavg_intensity moments fedshift --baseline fedavg --seeds 0 1 2

For every method and seed, the final global model (the run's last checkpoint) is scored
again, case by case: on each labelled site's test cases with the threshold tuned on that
site's validation cases, and on the target's with the federation's threshold, as the run
did. Each recomputed mean is checked against the run's metrics.json. Then, per method
against the baseline, the mean per-case Dice difference on the labelled sites and on the
target, per seed and pooled over seeds, with a 95 % bootstrap interval over cases (paired:
the same case of the same seed under both models). An interval that holds 0 means the
cases cannot tell the two methods apart.

Methods are run folders of ``simulations/bench_adaptation.py`` (OUT/<method>/seed<k>) whose
final model is the one scored (not the Bures variants). In the oracle runs the target
trains as a labelled site; its cases still count as the target's (the sites the baseline
holds as its target). Nothing in the runs is changed.
Writes OUT/paired_cases.json and prints a table; the per-case scores of each run are kept
in OUT/paired_cases/ for the next call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from fedshift.config import load_config
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunFolder
from fedshift.site.worker import site_worker

Cases = dict[tuple[int, str, str], float]  # (seed, site, case) -> Dice


def final_weights(run: Path) -> list[np.ndarray]:
    state = RunFolder(run).load_checkpoint()
    if state is None or state.weights is None:
        raise SystemExit(f"{run} has no checkpoint")
    return state.weights


def score_run(run: Path, seed: int) -> tuple[Cases, Cases]:
    """Per-case test Dice of the run's final model: (labelled sites, target)."""
    # the run's own folder, wherever it now lies: the sites' intensity maps are in it
    cfg = dataclasses.replace(load_config(RunConfig, [run / "config.yaml"], []), out=str(run))
    final = json.loads((run / "metrics.json").read_text())["final"]
    weights = final_weights(run)
    labelled: Cases = {}
    target: Cases = {}
    for data_dir in cfg.all_sites:
        worker = site_worker(cfg, data_dir)
        is_target = data_dir in cfg.data.target
        threshold = final.get("target_threshold") if is_target else None
        result, _ = worker.evaluate_cases(weights, "test", threshold)
        name = Path(data_dir).name
        reported = final["target" if is_target else "sites"].get(name, {}).get("dice")
        mean = float(np.nanmean([c["dice"] for c in result.per_case.values()]))
        if reported is not None and abs(mean - reported) > 1e-6:
            raise SystemExit(
                f"{run}: {name} scores {mean:.6f} now but {reported:.6f} in metrics.json; "
                "the data or the code changed since the run"
            )
        into = target if is_target else labelled
        into.update({(seed, name, case): m["dice"] for case, m in result.per_case.items()})
    return labelled, target


def cached_scores(run: Path, seed: int, path: Path) -> tuple[Cases, Cases]:
    """:func:`score_run`, kept in ``path`` (beside the runs, not in them) for the next call."""
    if path.is_file() and path.stat().st_mtime > (run / "metrics.json").stat().st_mtime:
        saved = json.loads(path.read_text())
    else:
        labelled, target = score_run(run, seed)
        saved = {
            part: [[site, case, dice] for (_, site, case), dice in cases.items()]
            for part, cases in (("labelled", labelled), ("target", target))
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(saved))
    return tuple(  # type: ignore[return-value]
        {(seed, site, case): float(dice) for site, case, dice in saved[part]}
        for part in ("labelled", "target")
    )


def paired(
    a: Cases, b: Cases, rng: np.random.Generator, reps: int = 5000
) -> tuple[float, float, float, int]:
    """Mean of a - b over the shared cases with finite Dice, and its 95 % bootstrap interval."""
    keys = [k for k in a if k in b and np.isfinite(a[k]) and np.isfinite(b[k])]
    diff = np.array([a[k] - b[k] for k in keys])
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    means = diff[rng.integers(0, diff.size, (reps, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high), int(diff.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the benchmark's output folder")
    parser.add_argument("--methods", nargs="+", required=True)
    parser.add_argument("--baseline", default="fedavg")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--bootstrap", type=int, default=5000, help="bootstrap resamples")
    args = parser.parse_args()
    scored: dict[str, tuple[Cases, Cases]] = {}
    for method in [args.baseline, *args.methods]:
        labelled: Cases = {}
        target: Cases = {}
        for seed in args.seeds:
            run = args.out / method / f"seed{seed}"
            if not (run / "metrics.json").is_file():
                raise SystemExit(f"{run} holds no finished run")
            lab, tar = cached_scores(
                run, seed, args.out / "paired_cases" / f"{method}-seed{seed}.json"
            )
            labelled.update(lab)
            target.update(tar)
            print(f"scored {run}: {len(lab)} labelled and {len(tar)} target cases", flush=True)
        scored[method] = (labelled, target)
    # an oracle run trains the target as a labelled site: its cases count as the target's
    target_sites = {site for _, site, _ in scored[args.baseline][1]}
    for labelled, target in scored.values():
        for key in [k for k in labelled if k[1] in target_sites]:
            target[key] = labelled.pop(key)
    rng = np.random.default_rng(0)
    rows = []
    print(f"\nper-case test Dice, method - {args.baseline} (mean [95% bootstrap], cases)")
    print("| method | seed | labelled sites | target |")
    print("|---|---|---|---|")
    base = scored[args.baseline]
    for method in args.methods:
        for seed in [*args.seeds, None]:
            row: dict[str, object] = {"method": method, "seed": "all" if seed is None else seed}
            cells = []
            for part, name in ((0, "labelled"), (1, "target")):
                a, b = scored[method][part], base[part]
                if seed is not None:
                    a = {k: v for k, v in a.items() if k[0] == seed}
                mean, low, high, n = paired(a, b, rng, args.bootstrap)
                row[name] = {"mean": mean, "low": low, "high": high, "cases": n}
                cells.append(f"{mean:+.3f} [{low:+.3f}, {high:+.3f}], {n}")
            rows.append(row)
            print(f"| {method} | {row['seed']} | {cells[0]} | {cells[1]} |", flush=True)
    (args.out / "paired_cases.json").write_text(
        json.dumps({"baseline": args.baseline, "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
