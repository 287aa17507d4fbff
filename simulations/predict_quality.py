"""What the fast 1 mm inference settings cost in segmentation quality.

``simulations/bench_predict.py`` showed that a 1 mm model predicts at >= 2 cases/min on
2 CPU cores only with N4 fitted on an 8x-shrunk image (``seg.preprocess.n4_shrink=8``,
default 4) and sliding windows overlapping by a quarter (``seg.eval.sw_overlap=0.25``,
default 0.5). This script scores one model package, case by case, under each combination
of the two settings on labelled test cases (``fedshift evaluate``'s code: same reader,
preprocessing, sliding window and metrics), and compares every variant with the package's
own settings: mean Dice, lesion F1, seconds per case, and the paired per-case Dice
difference with its 95 % bootstrap interval.

The model is trained with the package's settings (by default N4 shrink 4): a variant that
predicts with N4 shrink 8 sees slightly different inputs than training did, so a
difference it shows is an upper bound on what a federation trained with shrink 8 loses.

    fedshift baseline centralized out=runs/q1mm \\
        'data.synth_overrides=[voxel_mm=1,n_train=4,n_test=3]' data.synth_dir=runs/data/q1mm
    python simulations/predict_quality.py runs/q1mm/model \\
        runs/data/q1mm/site0 runs/data/q1mm/site1 runs/data/q1mm/site2 runs/data/q1mm/site3 \\
        --json runs/q1mm/predict_quality.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
from paired_cases import paired

from fedshift.bundle import ModelBundle, load_bundle
from fedshift.inference.evaluate import evaluate_site


def variant(bundle: ModelBundle, n4_shrink: int, sw_overlap: float) -> ModelBundle:
    """The package with two inference settings replaced (in memory; nothing written)."""
    seg = bundle.seg
    seg = dataclasses.replace(
        seg,
        preprocess=dataclasses.replace(seg.preprocess, n4_shrink=n4_shrink),
        eval=dataclasses.replace(seg.eval, sw_overlap=sw_overlap),
    )
    return dataclasses.replace(bundle, seg=seg)


def score(bundle: ModelBundle, sites: list[Path]) -> dict[str, dict[str, float]]:
    """case -> {dice, lesion_f1, seconds} over the test split of every site."""
    cases: dict[str, dict[str, float]] = {}
    for site in sites:
        result = evaluate_site(bundle, site, "test", device="cpu", progress=False)
        for r in result["cases"]:
            if r["status"] != "ok":
                raise SystemExit(f"{r['image']}: {r['reason']}")
            cases[f"{site.name}/{r['case']}"] = {
                "dice": float(r["dice"]),
                "lesion_f1": float(r["lesion_f1"]),
                "seconds": float(r["seconds"]),
            }
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="model package folder")
    parser.add_argument("sites", type=Path, nargs="+", help="labelled site folders")
    parser.add_argument("--shrink", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--overlap", type=float, nargs="+", default=[0.5, 0.25])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the per-case scores here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.model)
    own = (bundle.seg.preprocess.n4_shrink, bundle.seg.eval.sw_overlap)
    print(
        f"model {args.model} (trained at {bundle.spacing} mm, N4 shrink {own[0]}, "
        f"overlap {own[1]}), torch {torch.__version__}, {args.threads} threads"
    )
    settings = [own] + [s for s in itertools.product(args.shrink, args.overlap) if s != own]
    scores = {}
    for shrink, overlap in settings:
        t0 = time.perf_counter()
        scores[(shrink, overlap)] = score(variant(bundle, shrink, overlap), args.sites)
        print(f"  scored N4 shrink {shrink}, overlap {overlap} ({time.perf_counter() - t0:.0f} s)")
    rng = np.random.default_rng(0)
    base = scores[own]
    head = f"{'N4 shrink':>9} {'overlap':>7} {'Dice':>6} {'F1':>6} {'s/case':>7}"
    print(f"\n{head}  Dice - own [95% CI]")
    for (shrink, overlap), cases in scores.items():
        dice = {k: v["dice"] for k, v in cases.items()}
        mean, low, high, n = paired(dice, {k: v["dice"] for k, v in base.items()}, rng)
        print(
            f"{shrink:>9} {overlap:>7.2f} {np.mean(list(dice.values())):6.3f} "
            f"{np.mean([v['lesion_f1'] for v in cases.values()]):6.3f} "
            f"{np.mean([v['seconds'] for v in cases.values()]):7.1f}  "
            f"{mean:+.4f} [{low:+.4f}, {high:+.4f}] over {n} cases"
        )
    if args.json:
        out = {f"shrink{s}_overlap{o:g}": c for (s, o), c in scores.items()}
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
