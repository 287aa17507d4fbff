"""Federated optimisation against pooled training (issue 22, part 3): how much of
centralized training's Dice each aggregator reaches, at two budgets, on held-apart seeds.

Methods: local and centralized (``fedshift baseline``), fedavg, fedprox and the server
optimisers fedavgm, fedadam, fedyogi (``fedshift simulate fed.aggregator=NAME``). Every
run is plain (no secure statistics, no intensity map), so only the optimisation differs.

Budgets:
- ``steps``: the same total optimiser steps: R rounds x L local steps at each of S sites
  for the federation, R x (S x L) pooled steps for centralized (the run config as given);
- ``wall``: the same wall time with sites in parallel: each site runs per round as many
  steps as centralized does (``seg.train.local_steps`` = S x L); baselines unchanged.

The server learning rate of fedavgm / fedadam / fedyogi is picked on ``--tune-seeds``
(highest mean labelled validation Dice of the last round, ``steps`` budget), from
``--lr-grid``; the table uses ``--seeds`` only, which must not overlap the tuning seeds.

    python simulations/bench_federated_opt.py --out runs/bench-fedopt
    python simulations/bench_federated_opt.py --seeds 0 --tune-seeds 10 --budgets steps \\
        --methods fedavg fedadam centralized -- fed.rounds=10

Writes OUT/federated_opt.json (per method, budget and seed: final test Dice per site and
target, validation Dice per round, seconds per round), OUT/federated_opt.md (the table and
the issue's criteria) and OUT/convergence.png (validation Dice against round and against
wall time, mean over seeds). Finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_adaptation import fedshift_run, finished

PLAIN = ["fed.secure_stats=false", "fed.align_intensity=false"]
BASELINES = ("local", "centralized")
FEDERATED = ("fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi")
SERVER_OPTIMISERS = ("fedavgm", "fedadam", "fedyogi")
#: server learning rates tried per optimiser (Reddi et al. 2021 tune eta on a log grid)
LR_GRID = {"fedavgm": [0.5, 1.0], "fedadam": [0.01, 0.03, 0.1], "fedyogi": [0.01, 0.03, 0.1]}


def run(name: str, overrides: list[str], folder: Path) -> Path:
    """``fedshift baseline NAME`` or ``fedshift simulate fed.aggregator=NAME`` into
    ``folder`` (reused when it reached its final evaluation)."""
    if finished(folder):
        return folder
    if name in BASELINES:
        command = ["baseline", name, *PLAIN, *overrides]
    else:
        command = ["simulate", f"fed.aggregator={name}", *PLAIN, *overrides]
    command.append(f"out={folder}")
    fedshift_run(command, folder.with_suffix(".log"), str(folder))
    return folder


def summary(folder: Path) -> dict:
    """Final test Dice per labelled site and target, validation Dice and seconds per round."""
    metrics = json.loads((folder / "metrics.json").read_text())
    final = metrics["final"]
    curve, seconds = [], []
    for r in metrics["rounds"]:
        val = [m["val_dice"] for m in r["sites"].values() if "val_dice" in m]
        curve.append(float(np.mean(val)) if val else float("nan"))
        seconds.append(float(sum(r.get("seconds", {}).values())))
    return {
        "sites": {s: float(m["dice"]) for s, m in final["sites"].items()},
        "target": float(np.mean([t["dice"] for t in final.get("target", {}).values()] or [np.nan])),
        "val_curve": curve,
        "round_seconds": seconds,
    }


def local_steps(overrides: list[str]) -> tuple[int, int]:
    """(sites, local steps) of the run config the overrides give."""
    from fedshift.config import CONFIG_DIR, load_config
    from fedshift.runconfig import RunConfig
    from fedshift.site.folders import resolve_sites

    cfg = resolve_sites(load_config(RunConfig, [CONFIG_DIR / "default.yaml"], overrides))
    return len(cfg.data.sites), cfg.seg.train.local_steps


def tune(args: argparse.Namespace, method: str) -> float:
    """The server learning rate with the best last-round validation Dice on the tuning
    seeds (``steps`` budget)."""
    best, best_dice = None, -1.0
    for lr in LR_GRID[method]:
        dice = []
        for seed in args.tune_seeds:
            folder = args.out / "tune" / f"{method}-lr{lr:g}" / f"seed{seed}"
            run(method, [f"fed.server_lr={lr}", f"seed={seed}", *args.overrides], folder)
            dice.append(summary(folder)["val_curve"][-1])
        print(f"tune {method} server_lr {lr:g}: last-round val Dice {np.mean(dice):.3f}")
        if np.mean(dice) > best_dice:
            best, best_dice = lr, float(np.mean(dice))
    assert best is not None
    return best


def table(result: dict) -> str:
    lines = [
        "| budget | method | server lr | labelled Dice | / centralized | worst site / its "
        "centralized | target Dice |",
        "|---|---|---|---|---|---|---|",
    ]
    for budget, methods in result["budgets"].items():
        central = methods.get("centralized")
        for name, runs in methods.items():
            mean = [np.mean(list(r["sites"].values())) for r in runs]
            ratio = worst = "–"
            if central:
                c_mean = [np.mean(list(r["sites"].values())) for r in central]
                ratio = f"{np.mean(mean) / np.mean(c_mean):.2f}"
                worst = f"{min(_site_ratios(runs, central)):.2f}"
            lr = result["server_lr"].get(name, "")
            lines.append(
                f"| {budget} | {name} | {lr} | {_mean_sd(mean)} | {ratio} | {worst} | "
                f"{_mean_sd([r['target'] for r in runs])} |"
            )
    return "\n".join(lines) + "\n"


def _site_ratios(runs: list[dict], central: list[dict]) -> list[float]:
    sites = runs[0]["sites"]
    return [
        float(np.mean([r["sites"][s] for r in runs]) / np.mean([c["sites"][s] for c in central]))
        for s in sites
    ]


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = list(result["budgets"])
    fig, axes = plt.subplots(len(budgets), 2, figsize=(10, 3.6 * len(budgets)), squeeze=False)
    for row, budget in enumerate(budgets):
        for name, runs in result["budgets"][budget].items():
            if name in BASELINES:
                mean = np.mean([np.mean(list(r["sites"].values())) for r in runs])
                for ax in axes[row]:
                    ax.axhline(mean, ls="--", lw=1, color="k" if name == "centralized" else "grey")
                continue
            curve = np.mean([r["val_curve"] for r in runs], axis=0)
            wall = np.cumsum(np.mean([r["round_seconds"] for r in runs], axis=0))
            axes[row][0].plot(np.arange(1, curve.size + 1), curve, marker=".", label=name)
            axes[row][1].plot(wall, curve, marker=".", label=name)
        axes[row][0].set(xlabel="round", ylabel="labelled val Dice", title=f"{budget} budget")
        axes[row][1].set(xlabel="wall seconds (sum of rounds)", title="dashed: test Dice")
        axes[row][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-fedopt"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tune-seeds", type=int, nargs="+", default=[10])
    parser.add_argument(
        "--budgets", nargs="+", default=["steps", "wall"], choices=["steps", "wall"]
    )
    parser.add_argument("--methods", nargs="+", default=[*BASELINES, *FEDERATED],
                        choices=[*BASELINES, *FEDERATED])  # fmt: skip
    parser.add_argument(
        "--lr-grid",
        nargs="+",
        default=[],
        metavar="METHOD=LR,LR",
        help=f"replace a method's server learning rates to try (default {LR_GRID})",
    )
    parser.add_argument("overrides", nargs="*", help="run config key=value for every run")
    args = parser.parse_args()
    for item in args.lr_grid:
        method, _, values = item.partition("=")
        if method not in LR_GRID or not values:
            parser.error(
                f"--lr-grid {item!r}: expected METHOD=LR[,LR...] for one of {list(LR_GRID)}"
            )
        LR_GRID[method] = [float(v) for v in values.split(",")]
    if set(args.seeds) & set(args.tune_seeds):
        parser.error(f"--seeds {args.seeds} and --tune-seeds {args.tune_seeds} must not overlap")
    sites, steps = local_steps(args.overrides)
    result: dict = {"seeds": args.seeds, "tune_seeds": args.tune_seeds, "server_lr": {},
                    "sites": sites, "local_steps": steps, "budgets": {}}  # fmt: skip
    for method in args.methods:
        if method in SERVER_OPTIMISERS:
            result["server_lr"][method] = tune(args, method)
    for budget in args.budgets:
        extra = [] if budget == "steps" else [f"seg.train.local_steps={sites * steps}"]
        for method in args.methods:
            lr = result["server_lr"].get(method)
            opts = [f"fed.server_lr={lr}"] if lr is not None else []
            runs = []
            for seed in args.seeds:
                per_budget = "steps" if method in BASELINES else budget
                folder = args.out / per_budget / method / f"seed{seed}"
                runs.append(summary(run(method, [*opts, f"seed={seed}", *args.overrides,
                                                 *([] if method in BASELINES else extra)],
                                        folder)))  # fmt: skip
            result["budgets"].setdefault(budget, {})[method] = runs
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "federated_opt.json").write_text(json.dumps(result, indent=1))
    text = (
        f"{sites} labelled sites, {steps} local steps per round (steps budget), seeds "
        f"{args.seeds}, server learning rates tuned on seeds {args.tune_seeds}.\n\n" + table(result)
    )
    (args.out / "federated_opt.md").write_text(text)
    plot(result, args.out / "convergence.png")
    print(text)


if __name__ == "__main__":
    main()
