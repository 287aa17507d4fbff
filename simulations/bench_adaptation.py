"""Adaptation benchmark: every method on the same federation, same preprocessing and
augmentation, several seeds; Dice and lesion F1 per labelled site and on the unlabelled
target.

    python simulations/bench_adaptation.py                         # default scenario, seeds 0 1 2
    python simulations/bench_adaptation.py --seeds 0 --methods fedavg fedshift oracle
    python simulations/bench_adaptation.py --sites DIR DIR DIR --target DIR --out runs/mine
    python simulations/bench_adaptation.py -- fed.rounds=8 seg.train.local_steps=40

Methods (one run folder each, OUT/<run>/seed<k>; a run that reached its final evaluation
is reused, so an interrupted benchmark continues):

    local, centralized            baselines outside Flower (fedshift/baselines.py)
    centralized_jdot              pooled data + DeepJDOT towards the target's images
    fedavg, fedprox               Flower's strategies, standard preprocessing
    fedavg_bures                  the fedavg model, each site's Bures map before the head
    fedavg_intensity              fedavg with each site's 1-D intensity OT map
    moments                       FedHarmony-style moment matching (+ intensity map)
    fedshift                      JDOT against the reference (+ intensity map); unlabelled
                                  sites adapt on the JDOT term alone
    fedshift_bures                the fedshift model, each site's Bures map before the head
    fedshift_nomap                ablation: fedshift without the intensity map (JDOT alone)
    fedshift_fast                 fedshift with the GPU step-cost settings: Sinkhorn
                                  (tolerance 1e-3) solved at every 2nd labelled step
    fedshift_targetonly           ablation: only the unlabelled target adds the JDOT term
                                  (the labelled sites train as in fedavg_intensity)
    fedshift_lowweight            fedshift with the target's update averaged in at a quarter
                                  of its case count (fed.unlabelled_weight=0.25)
    oracle                        fedavg with the target's training labels too (synthetic
                                  scenarios only: the ceiling no adaptation can pass)
    oracle_intensity              the oracle with each site's intensity map: the ceiling
                                  for what embedding alignment can add to the map

Secure statistics run in fedavg, moments and fedshift (the Bures variants need them).

After the table (unless --report-only, or with --step-cost) it times an aligned training
step against a plain one in this process (simulations/bench_aligned_step.py: the first
labelled site and reference of a finished fedshift run, default and GPU alignment
settings, alternating) and prints the ratios against the issue's <= 1.15.

Writes OUT/benchmark.json ({"methods": {NAME: {"target_dice": [per seed],
"target_lesion_f1": [...], "site_dice": {SITE: [...]}}}, ...}) and OUT/benchmark.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: the settings that bring an aligned step within 1.15x a plain one on a GPU
#: (docs/gpu-check.md): Sinkhorn stopped at 1e-3, the coupling solved every 2nd step
FAST_ALIGN = ["seg.align.solver=sinkhorn", "seg.align.tol=1e-3", "seg.align.every=2"]

#: runs that are baselines outside Flower (`fedshift baseline NAME`)
BASELINES = ("local", "centralized", "centralized_jdot")
#: run name -> config overrides. Every federated run states both fed.secure_stats and
#: fed.align_intensity: configs/default.yaml turns both on (the main job), the runs here
#: must not inherit them silently
RUNS: dict[str, list[str]] = {
    "local": [],
    "centralized": [],
    "centralized_jdot": [],
    "fedavg": ["fed.aggregator=fedavg", "fed.secure_stats=true", "fed.align_intensity=false"],
    "fedprox": ["fed.aggregator=fedprox", "fed.secure_stats=false", "fed.align_intensity=false"],
    "fedavg_intensity": [
        "fed.aggregator=fedavg",
        "fed.secure_stats=true",
        "fed.align_intensity=true",
    ],
    "moments": ["seg.align.method=moments", "fed.secure_stats=true", "fed.align_intensity=true"],
    "fedshift": ["seg.align.method=jdot", "fed.secure_stats=true", "fed.align_intensity=true"],
    "fedshift_nomap": [
        "seg.align.method=jdot",
        "fed.secure_stats=true",
        "fed.align_intensity=false",
    ],
    "fedshift_fast": [
        "seg.align.method=jdot",
        "fed.secure_stats=true",
        "fed.align_intensity=true",
        *FAST_ALIGN,
    ],
    "fedshift_targetonly": [
        "seg.align.method=jdot",
        "fed.secure_stats=true",
        "fed.align_intensity=true",
        "seg.align.labelled=false",
    ],
    "fedshift_lowweight": [
        "seg.align.method=jdot",
        "fed.secure_stats=true",
        "fed.align_intensity=true",
        "fed.unlabelled_weight=0.25",
    ],
    "oracle": ["fed.aggregator=fedavg", "fed.secure_stats=false", "fed.align_intensity=false"],
    "oracle_intensity": [
        "fed.aggregator=fedavg",
        "fed.secure_stats=true",
        "fed.align_intensity=true",
    ],
}
#: method -> (run, which final metrics)
METHODS: dict[str, tuple[str, str]] = {
    "local": ("local", "final"),
    "fedavg": ("fedavg", "final"),
    "fedprox": ("fedprox", "final"),
    "fedavg_bures": ("fedavg", "bures"),
    "fedavg_intensity": ("fedavg_intensity", "final"),
    "moments": ("moments", "final"),
    "fedshift": ("fedshift", "final"),
    "fedshift_bures": ("fedshift", "bures"),
    "fedshift_nomap": ("fedshift_nomap", "final"),
    "fedshift_fast": ("fedshift_fast", "final"),
    "fedshift_targetonly": ("fedshift_targetonly", "final"),
    "fedshift_lowweight": ("fedshift_lowweight", "final"),
    "centralized": ("centralized", "final"),
    "centralized_jdot": ("centralized_jdot", "final"),
    "oracle": ("oracle", "final"),
    "oracle_intensity": ("oracle_intensity", "final"),
}
NOT_IMPLEMENTED: tuple[str, ...] = ()
#: runs that train the target with its labels (synthetic scenarios only)
ORACLES = ("oracle", "oracle_intensity")


def finished(folder: Path) -> bool:
    """A run that got to its final evaluation (metrics.json is also written every round)."""
    path = folder / "metrics.json"
    return path.is_file() and bool(json.loads(path.read_text()).get("final"))


def fedshift_run(command: list[str], log_path: Path, label: str) -> None:
    """``fedshift COMMAND...`` in a subprocess, its output in ``log_path``; exits on failure."""
    print(f"{label}: fedshift {' '.join(command)}", flush=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        cmd = [sys.executable, "-m", "fedshift.cli", *command]
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed ({proc.returncode}); see {log_path}")
    print(f"{label}: {time.perf_counter() - start:.0f} s", flush=True)


def run_once(run: str, seed: int, out: Path, data: list[str], extra: list[str]) -> Path:
    folder = out / run / f"seed{seed}"
    if finished(folder):
        print(f"{run} seed {seed}: reusing {folder}", flush=True)
        return folder
    overrides = [*RUNS[run], f"seed={seed}", f"out={folder}", *data, *extra]
    if run in ORACLES:
        overrides += [
            "data.synth_overrides=[sites.target.labelled=true]",
            f"data.synth_dir={out / 'oracle-data' / f'seed{seed}'}",
        ]
    command = ["baseline", run] if run in BASELINES else ["simulate"]
    fedshift_run([*command, *overrides], out / run / f"seed{seed}.log", f"{run} seed {seed}")
    return folder


def scores(folder: Path, which: str, target_names: set[str] | None) -> dict:
    final = json.loads((folder / "metrics.json").read_text())["final"]
    final = final.get("bures", {}) if which == "bures" else final
    sites, target = dict(final.get("sites", {})), dict(final.get("target", {}))
    if target_names:  # oracle: the target trained as a labelled site
        target.update({k: sites.pop(k) for k in list(sites) if k in target_names})
    return {"sites": sites, "target": target}


def seconds_per_step(folder: Path, sites: set[str] | None = None) -> float:
    """Mean training seconds per step over rounds and (labelled) sites of a run."""
    rounds = json.loads((folder / "metrics.json").read_text())["rounds"]
    values = [
        m["train_train_seconds"] / m["train_steps"]
        for r in rounds
        for site, m in r["sites"].items()
        if "train_steps" in m and (sites is None or site in sites)
    ]
    return float(np.mean(values)) if values else float("nan")


def controlled_step_cost(
    out: Path, seeds: list[int], overrides: list[str], steps: int = 10, repeats: int = 3
) -> str:
    """JDOT / plain step time measured in this process (simulations/bench_aligned_step.py):
    the first labelled site of the first finished fedshift run, its broadcast reference,
    the default alignment settings and the GPU ones (:data:`FAST_ALIGN`), alternating."""
    runs = [out / "fedshift" / f"seed{s}" for s in seeds]
    run = next((r for r in runs if finished(r) and (r / "reference.npz").is_file()), None)
    if run is None:
        return ""
    from bench_aligned_step import measure  # simulations/ is on sys.path when run as a script
    from omegaconf import OmegaConf

    config = OmegaConf.load(run / "config.yaml")
    site = Path(config.data.sites[0])
    print(f"\nstep cost: {site.name} of {run}, {steps} steps x {repeats}", flush=True)
    variants = [("fedshift", "jdot", []), ("fedshift_fast", "jdot", FAST_ALIGN)]
    _, ratios = measure(
        site,
        run / "reference.npz",
        variants,
        overrides,
        steps,
        repeats,
        Path(config.data.cache_dir),
    )
    return (
        f"\nAligned / plain step time, measured alternately in one process on {site.name} of "
        f"{run.name} ({steps} steps x {repeats}, median of the per-repeat ratios; goal <= "
        f"1.15): fedshift {ratios['fedshift']:.3f}, fedshift_fast {ratios['fedshift_fast']:.3f}.\n"
    )


def target_names(data: list[str], extra: list[str]) -> set[str]:
    """Names of the unlabelled target sites of the benchmark's federation."""
    from fedshift.config import CONFIG_DIR, load_config
    from fedshift.runconfig import RunConfig
    from fedshift.site.folders import resolve_sites

    cfg = resolve_sites(load_config(RunConfig, [CONFIG_DIR / "default.yaml"], [*data, *extra]))
    return {Path(p).resolve().name for p in cfg.data.target}


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def markdown(result: dict, seeds: list[int]) -> str:
    methods = result["methods"]
    sites = sorted({s for m in methods.values() for s in m["site_dice"]})
    head = ["method", "seeds", *sites, "mean labelled", "target Dice", "target lesion F1"]
    lines = [
        f"Seeds {seeds}; mean ± sd over the seeds a method has (a single value: one seed). "
        "Dice on each site's test split.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, m in methods.items():
        per_seed_mean = [
            float(np.mean([m["site_dice"][s][i] for s in sites if s in m["site_dice"]]))
            for i in range(len(m["target_dice"]))
        ]
        cells = [" ".join(map(str, m["seeds"]))]
        cells += [_mean_sd(m["site_dice"].get(s, [])) for s in sites]
        cells += [
            _mean_sd(per_seed_mean),
            _mean_sd(m["target_dice"]),
            _mean_sd(m["target_lesion_f1"]),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name in result.get("missing", []):
        lines.append(f"| {name} | not implemented |" + " |" * (len(head) - 2))
    return "\n".join(lines) + "\n"


def _labelled_mean(entry: dict, i: int) -> float:
    return float(np.mean([dice[i] for dice in entry["site_dice"].values()]))


def criteria(result: dict, method: str = "fedshift") -> str:
    """The issue's bar, per seed that has ``method``, fedavg and oracle: target gain over
    FedAvg (>= 0.10), share of the FedAvg-oracle gap closed (>= 0.5), change of the
    labelled sites' mean Dice (>= -0.01)."""
    methods = result["methods"]
    if not all(m in methods for m in (method, "fedavg", "oracle")):
        return ""
    index = {m: {seed: i for i, seed in enumerate(methods[m]["seeds"])} for m in methods}
    lines = [
        f"\n{method} against the bar, per seed (target gain over fedavg >= 0.10, share of the "
        "fedavg-oracle gap closed >= 0.5, labelled mean change >= -0.01):\n",
        "| seed | target gain | gap closed | labelled change | better than every federated "
        "method on the target |",
        "|---|---|---|---|---|",
    ]
    federated = [m for m in ("fedavg", "fedprox", "moments") if m in methods]
    for seed in methods[method]["seeds"]:
        if seed not in index["fedavg"] or seed not in index["oracle"]:
            continue
        ours, base, top = (
            methods[m]["target_dice"][index[m][seed]] for m in (method, "fedavg", "oracle")
        )
        gap = top - base
        closed = f"{(ours - base) / gap:.2f}" if gap > 0 else "no gap"
        labelled = _labelled_mean(methods[method], index[method][seed]) - _labelled_mean(
            methods["fedavg"], index["fedavg"][seed]
        )
        rivals = [methods[m]["target_dice"][index[m][seed]] for m in federated if seed in index[m]]
        better = all(ours > r for r in rivals)
        lines.append(
            f"| {seed} | {ours - base:+.3f} | {closed} | {labelled:+.3f} | "
            f"{'yes' if better else 'no'} ({', '.join(m for m in federated if seed in index[m])}) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-adaptation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--sites", nargs="+", default=[], help="labelled site folders")
    parser.add_argument("--target", nargs="+", default=[], help="unlabelled target folders")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: tabulate the finished runs (a method lists the seeds it has)",
    )
    parser.add_argument(
        "--step-cost",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time an aligned step against a plain one in this process after the table "
        "(about a minute on a CPU; default: on, off with --report-only)",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides for every run")
    args = parser.parse_args()
    data: list[str] = []
    if args.sites or args.target:
        if not (args.sites and args.target):
            parser.error("--sites and --target go together")
        data = [f"data.sites={json.dumps(args.sites)}", f"data.target={json.dumps(args.target)}"]
        if any(m in ORACLES for m in args.methods):
            print("the oracles need the target's training labels: left out for --sites/--target")
            args.methods = [m for m in args.methods if m not in ORACLES]
    result: dict = {"methods": {}, "seeds": args.seeds, "missing": list(NOT_IMPLEMENTED)}
    names = target_names(data, args.overrides)
    costs = []
    for seed in args.seeds:
        for method in args.methods:
            run, which = METHODS[method]
            folder = args.out / run / f"seed{seed}"
            if args.report_only and not finished(folder):
                continue
            folder = run_once(run, seed, args.out, data, args.overrides)
            got = scores(folder, which, names if run in ORACLES else None)
            entry = result["methods"].setdefault(
                method, {"seeds": [], "target_dice": [], "target_lesion_f1": [], "site_dice": {}}
            )
            entry["seeds"].append(seed)
            targets = list(got["target"].values())
            entry["target_dice"].append(float(np.mean([t["dice"] for t in targets])))
            entry["target_lesion_f1"].append(float(np.mean([t["lesion_f1"] for t in targets])))
            for site, m in got["sites"].items():
                entry["site_dice"].setdefault(site, []).append(float(m["dice"]))
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "benchmark.json").write_text(json.dumps(result, indent=1))
        plain, aligned = (args.out / r / f"seed{seed}" for r in ("fedavg", "fedshift"))
        if finished(plain) and finished(aligned):
            labelled = set(json.loads((plain / "metrics.json").read_text())["final"]["sites"])
            costs.append(seconds_per_step(aligned, labelled) / seconds_per_step(plain, labelled))
    if not result["methods"]:
        parser.error(
            f"no finished runs under {args.out} for seeds {args.seeds} and methods "
            f"{args.methods} (a finished run has a final evaluation in OUT/RUN/seedN/metrics.json)"
        )
    text = markdown(result, args.seeds) + criteria(result)
    if costs:
        result["aligned_step_cost"] = costs
        (args.out / "benchmark.json").write_text(json.dumps(result, indent=1))
        text += (
            "\nAligned (fedshift) / plain (fedavg) training seconds per step on the labelled "
            f"sites: {', '.join(f'{c:.2f}' for c in costs)} (per seed; whole runs made at "
            "different times, so machine load enters; simulations/bench_aligned_step.py "
            "alternates the two on one site for the controlled ratio).\n"
        )
    if args.step_cost or (args.step_cost is None and not args.report_only):
        text += controlled_step_cost(args.out, args.seeds, args.overrides)
    (args.out / "benchmark.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
