"""Local-training throughput of :class:`SiteTrainer` against a bare MONAI loop.

Both loops train the same :class:`SegNet` (same initial weights) on the same
preprocessed site with the same patches per batch, DiceCE loss and AdamW, on the same
device (AMP on cuda). The bare loop is the MONAI-tutorial loop (CacheDataset ->
DataLoader -> forward -> DiceCELoss -> backward -> step) with nothing else; both drop
MONAI's MetaTensor wrapper before the forward pass. Runs alternate (bare, trainer, bare,
trainer, ...) after a warm-up; the script prints the ratio trainer / bare of the median
and of the best runs (on a shared machine other load only slows runs down, so the best
runs are the least noisy estimate). The goal is a ratio >= 0.95.

Usage::

    python simulations/bench_trainer.py SITE_DIR --steps 20 [--repeats 3] [--cache DIR]
        [--config FILE.yaml] [--set train.batch_size=2 ...]

SITE_DIR is in nnU-Net raw layout (dataset.json, imagesTr/<case>_0000.nii.gz,
labelsTr/<case>.nii.gz), e.g. a site of the synthetic federation::

    fedshift synth --out runs/data/default-seed0
    python simulations/bench_trainer.py runs/data/default-seed0/site0 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader
from monai.losses import DiceCELoss

from fedshift.config import load_config
from fedshift.data.layout import discover_site, site_items
from fedshift.model.config import SegConfig
from fedshift.model.data import derive_seed, train_transform
from fedshift.model.device import autocast, grad_scaler
from fedshift.model.network import SegNet, build_network
from fedshift.model.preprocess import PreprocessCache, warm_cache
from fedshift.model.trainer import SiteTrainer


def bare_monai_loop(
    model: SegNet,
    dataset: CacheDataset,
    cfg: SegConfig,
    device: torch.device,
    steps: int,
    seed: int,
) -> float:
    """``steps`` optimiser steps of the plain MONAI loop. Returns seconds (loader included)."""
    start = time.perf_counter()
    loader = DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=cfg.train.num_workers,
        # a small site is a few batches per epoch: without this the loop would restart its
        # worker processes every epoch and time that instead of training
        persistent_workers=cfg.train.num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    scaler = grad_scaler(device, cfg.train.amp)
    model.train()
    done, last = 0, torch.zeros(())
    while done < steps:
        for batch in loader:
            x = batch["image"].as_tensor().to(device)
            y = batch["label"].as_tensor().to(device)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, cfg.train.amp):
                loss = loss_fn(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            done, last = done + 1, loss.detach()
            if done == steps:
                break
    float(last)  # wait for the device
    return time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="site folder in nnU-Net raw layout")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per timed run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each loop")
    parser.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder")
    parser.add_argument("--config", type=Path, action="append", default=[], help="YAML settings")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads > 0:  # on a shared CPU, fewer threads than busy cores avoids OpenMP stalls
        torch.set_num_threads(args.threads)
    cfg = load_config(SegConfig, args.config, args.overrides)
    cfg.validate()
    site = discover_site(args.site)
    items = site_items(site, "train", labelled_only=True)
    cache_dir = args.cache or Path("runs") / "bench_cache" / site.name
    computed = warm_cache(items, PreprocessCache(cache_dir, cfg.preprocess))
    print(f"site {site.name}: {len(items)} labelled cases, preprocessed {computed} (rest cached)")

    trainer = SiteTrainer(cfg, items, [], cache_dir=cache_dir)
    device = trainer.device
    bare_model = build_network(cfg.model, seed=cfg.train.seed).to(device)
    bare_data = CacheDataset(items, transform=train_transform(cfg, trainer.cache), progress=False)
    if args.warmup > 0:
        trainer.train(args.warmup, round_index=0)
        bare_monai_loop(bare_model, bare_data, cfg, device, args.warmup, seed=0)

    voxels = args.steps * cfg.train.batch_size * int(np.prod(cfg.train.patch_size))
    bare_rates, trainer_rates = [], []
    for rep in range(args.repeats):
        # alternate which loop goes first, so a drift in machine load hits both alike
        order = ("bare", "trainer") if rep % 2 == 0 else ("trainer", "bare")
        for which in order:
            if which == "bare":
                seed = derive_seed(rep, 7)
                bare_s = bare_monai_loop(bare_model, bare_data, cfg, device, args.steps, seed)
                bare_rates.append(voxels / bare_s)
            else:
                ours_s = trainer.train(args.steps, round_index=rep + 1).seconds
                trainer_rates.append(voxels / ours_s)
        print(
            f"run {rep}: bare {bare_rates[-1]:,.0f} vox/s ({bare_s / args.steps:.3f} s/step), "
            f"trainer {trainer_rates[-1]:,.0f} vox/s ({ours_s / args.steps:.3f} s/step)"
        )
    bare, ours = statistics.median(bare_rates), statistics.median(trainer_rates)
    best_bare, best_ours = max(bare_rates), max(trainer_rates)
    ratio, best_ratio = ours / bare, best_ours / best_bare
    print(
        f"device {device} ({torch.get_num_threads()} CPU threads), "
        f"patch {tuple(cfg.train.patch_size)}, batch {cfg.train.batch_size}, "
        f"steps {args.steps} x {args.repeats}"
    )
    print(
        f"median throughput: bare MONAI {bare:,.0f} vox/s, SiteTrainer {ours:,.0f} vox/s, "
        f"ratio {ratio:.3f}"
    )
    print(
        f"best-run throughput (least disturbed by other load): bare {best_bare:,.0f} vox/s, "
        f"SiteTrainer {best_ours:,.0f} vox/s, ratio {best_ratio:.3f}"
    )
    verdict = "meets" if min(ratio, best_ratio) >= 0.95 else "check: below"
    print(f"{verdict} the 0.95 goal")
    return {
        "bare_voxels_per_s": bare,
        "trainer_voxels_per_s": ours,
        "ratio": ratio,
        "best_ratio": best_ratio,
    }


if __name__ == "__main__":
    main()
