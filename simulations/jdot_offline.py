"""Offline JDOT experiment: adapt the final global model of finished runs at their
unlabelled target, with the JDOT term alone, and compare the target's test Dice before and
after. A fast loop (about 20 s per adaptation on 2 cores) for studying the alignment term
outside a federated run.

    python simulations/jdot_offline.py runs/bench-adaptation/fedavg/seed0 ...
    python simulations/jdot_offline.py RUN ... --variant alpha=1 --variant lesion_fraction=0.1

Each run needs its secure statistics (``fed.secure_stats=true``): the target's work folder
holds the reference of the final model and, with ``fed.align_intensity``, its intensity
map. The folder is copied, never changed. A variant is a list of ``seg.align`` overrides
(comma separated, ``name=value``) on today's defaults; ``threshold=0.5`` replaces the
federation's decision threshold for the target's own labels. ``--variant supervised`` is
the ceiling for the same budget: the same steps at the same learning rate
(``unlabelled_lr_scale`` x ``train.lr``; ``supervised,unlabelled_lr_scale=1``: the
labelled sites' rate) trained with the labelled sites' loss on the target's *training
labels*, read from the copy of the target that ``bench_adaptation.py --methods oracle``
wrote (OUT/oracle-data/seed<k>, found beside the run; its images are checked byte for byte
against the run's target). "after" scores the adapted model at the federation's threshold
and at 0.5 (its own boundary for labels it was trained on). Otherwise the target's labels
are read only to score.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from fedshift.config import load_config
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunFolder
from fedshift.shift.config import AlignConfig
from fedshift.shift.descriptors import KernelSummary
from fedshift.site.worker import site_worker


def parse_variant(text: str) -> dict[str, str]:
    if text == "default":
        return {}
    options = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        options[name] = value or "true"  # a bare name is a flag: supervised
    return options


def drop_stale_descriptors(path: Path) -> None:
    """Remove descriptor summaries an older FedShift wrote in another layout from the
    scratch copy of a reference: the JDOT term reads only its Gaussians."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    stale = []
    for key in [k for k in arrays if k.startswith("descriptors.")]:
        try:
            KernelSummary.from_vector(key.split(".", 1)[1], arrays[key])
        except ValueError:
            stale.append(key)
    if stale:
        print(f"{path}: dropping {', '.join(stale)} (older layout)", flush=True)
        np.savez(path, **{k: v for k, v in arrays.items() if k not in stale})


def labelled_copy(run: Path, target: Path) -> Path:
    """The target with its training labels, as the benchmark's oracle runs hold it."""
    copy = run.parent.parent / "oracle-data" / run.name / target.name
    if not (copy / "labelsTr").is_dir():
        raise SystemExit(
            f"--variant supervised needs the target with its training labels at {copy}: "
            f"run bench_adaptation.py --out {run.parent.parent} --methods oracle first"
        )
    for folder in ("imagesTr", "imagesTs"):
        ours, theirs = sorted((target / folder).iterdir()), sorted((copy / folder).iterdir())
        if [f.name for f in ours] != [f.name for f in theirs] or any(
            a.read_bytes() != b.read_bytes() for a, b in zip(ours, theirs, strict=True)
        ):
            raise SystemExit(f"{copy / folder} does not hold the images of {target / folder}")
    return copy


def adapt(run: Path, variant: dict[str, str], steps: int, scratch: Path) -> dict[str, float]:
    """Target Dice / lesion F1 of the run's final model before and after ``steps`` JDOT
    steps at the target."""
    cfg = load_config(RunConfig, [run / "config.yaml"], [])
    options = dict(variant)
    threshold = options.pop("threshold", None)
    supervised = options.pop("supervised", None) is not None
    align = AlignConfig()  # today's defaults, not those the run stored
    align = dataclasses.replace(
        align, **{k: type(getattr(align, k))(v) for k, v in options.items()}
    )
    train = dataclasses.replace(cfg.seg.train, local_steps=steps)
    if supervised:  # the learning rate the target adapts with, unless the variant says
        train = dataclasses.replace(train, lr=train.lr * align.unlabelled_lr_scale)
    cfg = dataclasses.replace(
        cfg,
        seg=dataclasses.replace(
            cfg.seg,
            align=dataclasses.replace(align, method="none" if supervised else "jdot"),
            train=train,
        ),
    )
    target = Path(cfg.data.target[0])
    work = scratch / "target"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(run / "sites" / target.name, work)
    drop_stale_descriptors(work / "shift" / "reference.npz")
    # scores as the run did (the federation's threshold: the target has no validation
    # labels); trains on the labelled copy for the supervised ceiling
    worker = site_worker(cfg, target, work)
    worker.cache_dir = Path(cfg.data.cache_dir) / target.name  # shared preprocessing
    learner = worker
    if supervised:
        learner = site_worker(cfg, labelled_copy(run, target), work)
        learner.cache_dir = scratch / "cache"  # its own: it holds the training labels
    state = RunFolder(run).load_checkpoint()
    if state is None or state.weights is None:
        raise SystemExit(f"{run} has no checkpoint")
    weights = state.weights
    federation = json.loads((run / "metrics.json").read_text())["final"]["target_threshold"]
    pseudo = float(threshold) if threshold is not None else federation
    start = time.perf_counter()
    before = worker.evaluate(weights, "test", threshold=federation)
    trainer = learner.trainer(pseudo)
    trainer.train(global_weights=weights, round_index=1)
    after = worker.evaluate(trainer.get_weights(), "test", threshold=federation)
    # the adapted model was trained on labels read at `pseudo`: its own boundary is 0.5
    at_half = worker.evaluate(trainer.get_weights(), "test", threshold=0.5)
    return {
        "dice_after_05": at_half["dice"],
        "f1_after_05": at_half["lesion_f1"],
        "dice_before": before["dice"],
        "f1_before": before["lesion_f1"],
        "dice_after": after["dice"],
        "f1_after": after["lesion_f1"],
        "lesions_after": after["n_pred_lesions"],
        "threshold": federation,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    parser.add_argument("--variant", action="append", default=[], help="e.g. alpha=1,lam=0")
    parser.add_argument("--steps", type=int, default=30, help="adaptation steps")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    variants = args.variant or ["default"]
    results = []
    print(
        "| run | variant | Dice before | Dice after | F1 before | F1 after | lesions "
        "| Dice after @0.5 | F1 after @0.5 |"
    )
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for run in args.runs:
            for text in variants:
                got = adapt(run, parse_variant(text), args.steps, Path(scratch))
                results.append({"run": str(run), "variant": text, **got})
                print(
                    f"| {run} | {text} | {got['dice_before']:.3f} | {got['dice_after']:.3f} "
                    f"| {got['f1_before']:.3f} | {got['f1_after']:.3f} "
                    f"| {got['lesions_after']:.1f} | {got['dice_after_05']:.3f} "
                    f"| {got['f1_after_05']:.3f} |",
                    flush=True,
                )
                if args.out:
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
