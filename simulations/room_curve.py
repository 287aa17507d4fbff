"""Room for adaptation: how much better than FedAvg + each site's intensity map a model can
get at a target scanner, against the strength of a physical shift. No adaptive method runs.

A federation of labelled sites (the scenario's labelled sites) trains with FedAvg and each
site's 1-D intensity OT map (``fedshift simulate``, secure statistics on), once per seed, for
the largest budget; its checkpoints give the smaller budgets. The target hospital joins
after training, as a hospital that receives the model does: it fits its own intensity map
onto the federation's reference histogram (``RUN/reference.npz``, the labelled sites' pooled
histogram) and is scored with the federation's decision threshold -- the floor. The ceiling
is supervised fine-tuning at the target *with its labels*, from that model and map, for
``--finetune-steps`` optimiser steps (the start and budget a site-local label-free method
gets), its threshold tuned on its own validation cases. Room = ceiling - floor, paired per
case, with a 95 % bootstrap interval.

Every point of a sweep is the same target anatomy and lesions (cases draw from the site
name and seed) under another acquisition: the points differ only by physics.

    python simulations/room_curve.py --out runs/room --seeds 0 --rounds 5 20
    python simulations/room_curve.py --out runs/room --points ti-null:ti_ms=2500 ti-short:ti_ms=1200

At the largest budget each point also runs ``fedshift adapt`` (``--methods``, label-free,
on the target's training images) from the floor package -- the final global model plus the
target's map -- and scores the adapted package like the floor: the share of the room a
site-local method recovers.

Writes OUT/room.json (per seed, budget and point: per-case Dice of floor, ceiling and
adapted models, the room and its interval) and OUT/room.md. Finished pieces (federation
runs, per-point scores, adapted packages) are reused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from paired_cases import paired

from fedshift.adapt import AdaptConfig, adapt_package
from fedshift.bundle import load_bundle, site_bundle
from fedshift.config import find_preset, load_config
from fedshift.data.synth.config import SiteSpec, SynthConfig
from fedshift.data.synth.federation import write_federation
from fedshift.model import evaluate as ev
from fedshift.model.data import LABEL_KEY
from fedshift.model.device import choose_device
from fedshift.model.network import build_network, set_weights
from fedshift.model.preprocess import PreprocessCache
from fedshift.model.trainer import SiteTrainer
from fedshift.policy import federation_threshold
from fedshift.runconfig import RunConfig
from fedshift.shift.intensity import IntensityMap, quantile_map
from fedshift.shift.reference import Reference
from fedshift.shift.stats import intensity_histogram
from fedshift.shift.tissue import separability, tissue_order
from fedshift.site.worker import SiteWorker

TARGET = "target"


# -- the federation -------------------------------------------------------------------


def scenario_config(scenario: str, seed: int, overrides: list[str]) -> SynthConfig:
    preset = find_preset(scenario, "scenarios")
    return load_config(SynthConfig, [preset], [f"seed={seed}", *overrides])


def labelled_config(scenario: str, seed: int, overrides: list[str]) -> SynthConfig:
    """The scenario with its labelled sites only (the federation that trains)."""
    cfg = scenario_config(scenario, seed, overrides)
    sites = {name: spec for name, spec in cfg.sites.items() if spec.labelled}
    return replace(cfg, sites=sites)


def target_spec(scenario: str, seed: int, overrides: list[str]) -> SiteSpec:
    cfg = scenario_config(scenario, seed, overrides)
    targets = [spec for spec in cfg.sites.values() if not spec.labelled]
    return targets[0] if targets else SiteSpec()


def train_federation(args: argparse.Namespace, seed: int, data: Path, run: Path) -> None:
    """``fedshift simulate`` on the labelled sites (FedAvg + intensity map), reused when done."""
    if (run / "metrics.json").is_file() and (run / "reference.npz").is_file():
        print(f"  reusing {run}")
        return
    sites = sorted(p for p in data.iterdir() if (p / "dataset.json").is_file())
    cmd = [
        sys.executable,
        "-m",
        "fedshift.cli",
        "simulate",
        f"out={run}",
        f"seed={seed}",
        f"fed.rounds={max(args.rounds)}",
        "fed.aggregator=fedavg",
        "fed.secure_stats=true",
        "fed.align_intensity=true",
        "seg.align.method=none",
        f"data.sites=[{','.join(str(p) for p in sites)}]",
        f"data.cache_dir={args.out / 'cache'}",
        *args.run_overrides,
    ]
    print("  " + " ".join(cmd[2:]))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  federation trained in {time.perf_counter() - t0:.0f} s")


def checkpoint(run: Path, rnd: int) -> list[np.ndarray]:
    with np.load(run / "checkpoints" / f"round_{rnd:03d}.npz") as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


def round_threshold(run: Path, rnd: int) -> float:
    """The decision threshold the labelled sites tuned on validation in round ``rnd`` (the
    final evaluation's for the last round): the one a site without labels uses."""
    metrics = json.loads((run / "metrics.json").read_text())
    rounds = {r["round"]: r for r in metrics["rounds"]}
    if rnd == max(rounds) and metrics.get("final", {}).get("target_threshold") is not None:
        return float(metrics["final"]["target_threshold"])
    val = {
        site: {k.removeprefix("val_"): v for k, v in m.items() if k.startswith("val_")}
        for site, m in rounds[rnd]["sites"].items()
    }
    threshold = federation_threshold(val, count_key="num-examples")
    if threshold is None:
        raise SystemExit(f"{run}: round {rnd} has no tuned validation threshold")
    return threshold


# -- one target point -----------------------------------------------------------------


def write_target(
    base: SynthConfig, spec: SiteSpec, folder: Path, n_train: int, n_test: int
) -> Path:
    """The target under one acquisition, with training labels (for the ceiling only)."""
    if (folder / "truth.json").is_file():
        return folder / TARGET
    spec = replace(spec, labelled=True, n_train=n_train, n_test=n_test)
    cfg = replace(base, sites={TARGET: spec}, calibration_cases=0)
    write_federation(cfg, folder, overwrite=True)
    return folder / TARGET


def fit_map(cache: PreprocessCache, items: list[dict], reference: Reference) -> IntensityMap:
    """The target's own intensity map: its training images' brain histogram (standard
    preprocessing) onto the federation's, as ``SiteWorker.receive_reference`` fits it."""
    own = np.zeros_like(reference.intensity_pmf)
    for item in items:
        pre = cache.get(item["image"], aligned=False)
        own += intensity_histogram(pre.image, pre.mask, reference.intensity_edges)
    return quantile_map(own, reference.intensity_pmf, reference.intensity_edges)


#: the rank statistics :func:`tissue_contrast` reports (means over test cases)
CONTRAST_KEYS = ("lesion_auc_nawm", "lesion_auc_gm", "csf_rank")


def tissue_contrast(items: list[dict], cache: PreprocessCache) -> dict[str, float]:
    """Why a monotone map cannot help, per test case then averaged: the AUC of intensity
    for lesion against normal-appearing WM and GM proxies, and where CSF ranks among the
    deep brain's intensities (:mod:`fedshift.shift.tissue`; rank statistics, so the
    intensity map changes none of them)."""
    rows = []
    for item in items:
        if LABEL_KEY not in item:
            continue
        pre = cache.get(item["image"], aligned=False)
        label = np.asanyarray(nib.as_closest_canonical(nib.load(item[LABEL_KEY])).dataobj) > 0
        rows.append({**separability(pre.image, pre.mask, label, pre.zooms),
                     **tissue_order(pre.image, pre.mask, pre.zooms)})  # fmt: skip
    return {k: float(np.nanmean([r[k] for r in rows])) for k in CONTRAST_KEYS}


def labelled_contrast(data: Path, run_cfg: RunConfig, work: Path, seed: int) -> dict[str, float]:
    """:func:`tissue_contrast` over the federation's labelled sites' test cases."""
    rows = []
    for site in sorted(p for p in data.iterdir() if (p / "dataset.json").is_file()):
        worker = SiteWorker(
            site, work / site.name, run_cfg.seg, seed=seed, cache_dir=work / "cache"
        )
        rows.append(
            tissue_contrast(
                worker.splits()[2], PreprocessCache(work / "cache", run_cfg.seg.preprocess)
            )
        )
    return {k: float(np.mean([r[k] for r in rows])) for k in CONTRAST_KEYS}


def per_case(predictions: list, cfg: Any, threshold: float) -> dict[str, float]:
    result = ev.results_from(predictions, cfg, threshold)
    return {case: float(m["dice"]) for case, m in result.per_case.items()}


def score_point(
    site_dir: Path,
    work: Path,
    run_cfg: RunConfig,
    weights: list[np.ndarray],
    threshold: float,
    reference: Reference,
    finetune_steps: int,
    seed: int,
) -> dict[str, Any]:
    """Floor (model + own map, federation threshold), no-map score, and the ceiling."""
    worker = SiteWorker(site_dir, work, run_cfg.seg, seed=seed, cache_dir=work / "cache")
    train, val, test = worker.splits()
    seg = worker.seg
    device = choose_device(seg.train.device)
    standard = PreprocessCache(work / "cache", seg.preprocess)
    mapping = fit_map(standard, train + val, reference)
    mapped = PreprocessCache(work / "cache", seg.preprocess, mapping)
    model = build_network(seg.model, seed=worker.seed).to(device)
    set_weights(model, weights)
    floor = per_case(ev.predict_labelled(model, test, mapped, seg, device), seg, threshold)
    nomap = per_case(ev.predict_labelled(model, test, standard, seg, device), seg, threshold)
    t0 = time.perf_counter()
    trainer = SiteTrainer(seg, train, val, cache_dir=work / "cache", intensity_map=mapping)
    trainer.set_weights(weights)
    trainer.train(num_steps=finetune_steps, round_index=1)
    tuned_model = build_network(seg.model, seed=worker.seed).to(device)
    set_weights(tuned_model, trainer.get_weights())
    val_pred = ev.predict_labelled(tuned_model, val, mapped, seg, device)
    tuned, _ = ev.threshold_from(val_pred, seg)
    ceiling = per_case(ev.predict_labelled(tuned_model, test, mapped, seg, device), seg, tuned)
    return {
        "floor": floor,
        "nomap": nomap,
        "ceiling": ceiling,
        "ceiling_threshold": tuned,
        "map": {"x": mapping.x.tolist(), "y": mapping.y.tolist()},
        "finetune_seconds": time.perf_counter() - t0,
    }


def room(scores: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """Floor, ceiling and room (ceiling - floor, paired per case, 95 % bootstrap)."""
    gain, low, high, n = paired(scores["ceiling"], scores["floor"], rng)
    return {
        "floor_mean": float(np.mean(list(scores["floor"].values()))),
        "nomap_mean": float(np.mean(list(scores["nomap"].values()))),
        "ceiling_mean": float(np.mean(list(scores["ceiling"].values()))),
        "room": gain,
        "low": low,
        "high": high,
        "n_cases": n,
    }


def interval(r: dict[str, Any], key: str = "room") -> str:
    """``+0.123 [+0.045, +0.201]``: a paired mean difference and its 95 % interval."""
    return f"{r[key]:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]"


# -- site-local adaptation from the floor ---------------------------------------------


def adapt_arms(
    site_dir: Path,
    work: Path,
    run: Path,
    mapping: IntensityMap,
    scores: dict[str, Any],
    args: argparse.Namespace,
    seed: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """``fedshift adapt`` (each of ``args.methods``) from the target's floor package: the
    final global model (``RUN/model``) plus the target's own intensity map, adapted on the
    target's training images without their labels, scored like the floor (same
    preprocessing and test cases, the package's federation threshold). Per method: the
    mean Dice, the paired gain over the floor, the share of the room it recovers, and the
    adaptation record's stop reason and seconds."""
    floor_pkg = work / "packages" / "floor"
    if not (floor_pkg / "configs" / "metadata.json").is_file():
        site_bundle(run / "model", floor_pkg, mapping, site=TARGET)
    bundle = load_bundle(floor_pkg)
    seg, device = bundle.seg, torch.device("cpu")
    mapped = PreprocessCache(work / "cache", seg.preprocess, mapping)
    _, _, test = SiteWorker(site_dir, work, seg, seed=seed, cache_dir=work / "cache").splits()
    out: dict[str, Any] = {}
    span = scores["ceiling_mean"] - scores["floor_mean"]
    tag = ",".join(args.adapt_set)
    for method in args.methods:
        label = f"{method}[{tag}]" if tag else method
        pkg = work / "packages" / label.replace("[", "_").replace("]", "").replace(",", "_")
        settings = [f"method={method}", f"steps={args.adapt_steps}", f"seed={seed}"]
        cfg = load_config(AdaptConfig, [], [*settings, *args.adapt_set])
        if not (pkg / "configs" / "metadata.json").is_file():
            adapt_package(floor_pkg, site_dir, pkg, cfg, split="train", device="cpu")
        adapted = load_bundle(pkg)
        record = adapted.info["adaptation"]
        model = adapted.network.to(device)
        dice = per_case(
            ev.predict_labelled(model, test, mapped, seg, device), seg, bundle.threshold
        )
        gain, low, high, _ = paired(dice, scores["floor"], rng)
        out[label] = {
            "dice": dice,
            "mean": float(np.mean(list(dice.values()))),
            "gain": gain,
            "low": low,
            "high": high,
            "room_recovered": gain / span if span > 0 else float("nan"),
            "stop_reason": record["stop_reason"],
            "steps_run": record["steps_run"],
            "seconds": record.get("seconds"),
        }
    return out


# -- the sweep ------------------------------------------------------------------------


def parse_points(texts: list[str]) -> dict[str, dict[str, str]]:
    """``NAME:key=value,key=value`` -> {NAME: {key: value}} (SiteSpec fields of the target)."""
    points = {}
    for text in texts:
        name, _, body = text.partition(":")
        pairs = [p for p in body.split(",") if p]
        points[name] = dict(p.split("=", 1) for p in pairs)
    return points


def spec_for(base: SiteSpec, changes: dict[str, str]) -> SiteSpec:
    fields = asdict(base)
    for key, value in changes.items():
        if key not in fields:
            raise SystemExit(f"{key!r} is not a SiteSpec field; valid: {', '.join(fields)}")
        if isinstance(fields[key], bool):
            fields[key] = value == "true"
        else:
            fields[key] = type(fields[key])(float(value))
    return SiteSpec(**fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/room"))
    parser.add_argument("--scenario", default="hard", help="labelled sites + base target")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rounds", type=int, nargs="+", default=[5, 20])
    parser.add_argument("--points", nargs="+", default=None, help="NAME:key=value,... (target)")
    parser.add_argument("--synth", nargs="*", default=[], help="scenario overrides, key=value")
    parser.add_argument(
        "--target-cases", type=int, nargs=2, default=[10, 10], metavar=("TRAIN", "TEST")
    )
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument(
        "--methods",
        nargs="*",
        default=["jdot", "tent", "pseudo"],
        help="fedshift adapt methods run from the floor at the largest budget (none: skip)",
    )
    parser.add_argument(
        "--adapt-steps", type=int, default=100, help="fedshift adapt --steps (as --finetune-steps)"
    )
    parser.add_argument(
        "--adapt-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="fedshift adapt settings for an ablation (e.g. lr=1e-3); its results are kept "
        "under METHOD[KEY=VALUE] beside the defaults'",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("run_overrides", nargs="*", help="run config key=value for the federation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    points = parse_points(args.points or DEFAULT_POINTS)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "room.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    rng = np.random.default_rng(0)
    for seed in args.seeds:
        base = labelled_config(args.scenario, seed, args.synth)
        data = args.out / f"seed{seed}" / "federation"
        if not (data / "truth.json").is_file():
            write_federation(base, data, overwrite=True)
        run = args.out / f"seed{seed}" / "fedavg_intensity"
        train_federation(args, seed, data, run)
        run_cfg = load_config(RunConfig, [run / "config.yaml"])
        with np.load(run / "reference.npz") as npz:
            reference = Reference.from_arrays({k: npz[k] for k in npz.files})
        base_target = target_spec(args.scenario, seed, args.synth)
        labelled = None  # the labelled sites' contrast, computed once per seed when needed
        for name, changes in points.items():
            spec = spec_for(base_target, changes)
            site = write_target(
                base, spec, args.out / f"seed{seed}" / "targets" / name, *args.target_cases
            )
            for rnd in args.rounds:
                key = f"seed{seed}/round{rnd}/{name}"
                if key in results:
                    continue
                scores = score_point(
                    site,
                    args.out / f"seed{seed}" / "work" / name,
                    run_cfg,
                    checkpoint(run, rnd),
                    round_threshold(run, rnd),
                    reference,
                    args.finetune_steps,
                    seed,
                )
                r = {"point": name, "changes": changes, "seed": seed, "rounds": rnd,
                     **scores, **room(scores, rng)}  # fmt: skip
                results[key] = r
                print(
                    f"  {key:<32} floor {r['floor_mean']:.3f} (no map {r['nomap_mean']:.3f})  "
                    f"ceiling {r['ceiling_mean']:.3f}  room {interval(r)}"
                )
                results_path.write_text(json.dumps(results, indent=1))
            final = results[f"seed{seed}/round{max(args.rounds)}/{name}"]
            if "contrast" not in final:
                work = args.out / f"seed{seed}" / "work" / name
                worker = SiteWorker(site, work, run_cfg.seg, seed=seed, cache_dir=work / "cache")
                cache = PreprocessCache(work / "cache", run_cfg.seg.preprocess)
                final["contrast"] = tissue_contrast(worker.splits()[2], cache)
                if labelled is None:
                    labelled = labelled_contrast(
                        data, run_cfg, args.out / f"seed{seed}" / "work" / "labelled", seed
                    )
                final["contrast_labelled"] = labelled
                results_path.write_text(json.dumps(results, indent=1))
            tag = ",".join(args.adapt_set)
            labels = [f"{m}[{tag}]" if tag else m for m in args.methods]
            if any(label not in final.get("adapted", {}) for label in labels):
                work = args.out / f"seed{seed}" / "work" / name
                mapping = IntensityMap(x=np.array(final["map"]["x"]), y=np.array(final["map"]["y"]))
                arms = adapt_arms(site, work, run, mapping, final, args, seed, rng)
                final.setdefault("adapted", {}).update(arms)
                for method, a in arms.items():
                    print(
                        f"    {method:<7} {a['mean']:.3f}  vs floor {interval(a, 'gain')}, "
                        f"{a['room_recovered']:.0%} of the room ({a['stop_reason']})"
                    )
                results_path.write_text(json.dumps(results, indent=1))
    write_table(results, args.out / "room.md")
    pooled = pooled_table(results, np.random.default_rng(0))
    with (args.out / "room.md").open("a") as f:
        f.write("\nOver seeds (adapted columns: gain over the floor):\n\n" + pooled)
    print(pooled)


def write_table(results: dict[str, Any], path: Path) -> None:
    """OUT/room.md: one row per seed, budget and point; adapted methods as extra columns
    (Dice, and the paired gain over the floor) where they ran."""
    methods = sorted({m for r in results.values() for m in r.get("adapted", {})})
    head = ["point", "changes", "seed", "rounds", "no map", "floor (map)", "ceiling (fine-tune)",
            "room [95% CI]", "AUC lesion/NAWM, /GM; CSF rank", *methods]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results.values():
        changes = ", ".join(f"{k}={v}" for k, v in r["changes"].items()) or "(base target)"
        cells = [r["point"], changes, str(r["seed"]), str(r["rounds"]), f"{r['nomap_mean']:.3f}",
                 f"{r['floor_mean']:.3f}", f"{r['ceiling_mean']:.3f}",
                 interval(r)]  # fmt: skip
        c = r.get("contrast")
        cells.append(", ".join(f"{c[k]:.2f}" for k in CONTRAST_KEYS) if c else "")
        for m in methods:
            a = r.get("adapted", {}).get(m)
            cells.append(f"{a['mean']:.3f} ({interval(a, 'gain')})"
                         if a else "")  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def pooled_table(results: dict[str, Any], rng: np.random.Generator) -> str:
    """Per point and budget, over every seed present: the mean floor and ceiling, the room
    and each adapted method's gain over the floor, paired per case with cases of all seeds
    pooled (95 % bootstrap), and the seeds' own rooms."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in results.values():
        groups.setdefault((r["point"], r["rounds"]), []).append(r)
    methods = sorted({m for r in results.values() for m in r.get("adapted", {})})
    head = ["point", "rounds", "seeds", "floor", "ceiling", "room, cases pooled [95% CI]",
            "room per seed", *methods]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (point, rounds), rows in groups.items():
        rows = sorted(rows, key=lambda r: r["seed"])

        def cases(key: str, rows: list[dict[str, Any]] = rows) -> dict[str, float]:
            return {f"{r['seed']}/{c}": v for r in rows for c, v in r[key].items()}

        room, low, high, _ = paired(cases("ceiling"), cases("floor"), rng)
        room_ci = {"room": room, "low": low, "high": high}
        cells = [point, str(rounds), ",".join(str(r["seed"]) for r in rows),
                 f"{np.mean([r['floor_mean'] for r in rows]):.3f}",
                 f"{np.mean([r['ceiling_mean'] for r in rows]):.3f}", interval(room_ci),
                 ", ".join(f"{r['room']:+.3f}" for r in rows)]  # fmt: skip
        for m in methods:
            have = [r for r in rows if m in r.get("adapted", {})]
            if not have:
                cells.append("")
                continue
            adapted = {
                f"{r['seed']}/{c}": v for r in have for c, v in r["adapted"][m]["dice"].items()
            }
            floor = {f"{r['seed']}/{c}": v for r in have for c, v in r["floor"].items()}
            mean, low, high, _ = paired(adapted, floor, rng)
            gain = {"gain": mean, "low": low, "high": high}
            cells.append(f"{interval(gain, 'gain')} ({len(have)} seed{'s' * (len(have) > 1)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: the default sweep: changes to the `hard` scenario's target (2D FLAIR at 1.5 T, 5 mm
#: slices + 1 mm gap, CSF inflow, standard TR/TE/TI 9000/110/2500 ms). CSF/WM signal
#: ratio from the equation at TR 9000, TE 110: TI 2500 ~0.1, 2200 ~0.5, 1900 ~1.3,
#: 1600 ~2.3 (the tissues change order from about TI 2000 down)
_STD_1_5T = "tr_ms=9000,te_ms=110"
DEFAULT_POINTS: list[str] = [
    "3T-3D:field_t=3.0,slice_thickness_mm=0,slice_gap_mm=0,csf_inflow=0",  # like the labelled
    "1.5T-3D:slice_thickness_mm=0,slice_gap_mm=0,csf_inflow=0",  # the field alone
    "1.5T-2D:",  # the scenario's target
    f"TI2200:{_STD_1_5T},ti_ms=2200",
    f"TI1900:{_STD_1_5T},ti_ms=1900",
    f"TI1600:{_STD_1_5T},ti_ms=1600",
]


if __name__ == "__main__":
    main()
