"""Cost of an aligned training step (JDOT or moments) against a plain one.

Same site, same model, same patches, same process: a :class:`SiteTrainer` and an
:class:`AlignedTrainer` (reference: a run's broadcast ``reference.npz``) train
``--steps`` steps each, alternating, ``--repeats`` times after a warm-up; prints the
median and best seconds per step and the ratios aligned / plain. The goal for JDOT is a
ratio <= 1.15.

    python simulations/bench_aligned_step.py runs/data/default-seed0/site0 \\
        runs/bench-adaptation/fedshift/seed0/reference.npz --steps 10 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from fedshift.config import CONFIG_DIR, load_config
from fedshift.data.layout import discover_site, site_items
from fedshift.model.aligned import AlignedTrainer
from fedshift.model.trainer import SiteTrainer
from fedshift.runconfig import RunConfig
from fedshift.shift.reference import Reference


def seconds_per_step(trainer: SiteTrainer, steps: int, round_index: int) -> float:
    start = time.perf_counter()
    trainer.train(num_steps=steps, round_index=round_index)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path)
    parser.add_argument("reference", type=Path, help="reference.npz of a secure-stats run")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"))
    parser.add_argument("overrides", nargs="*", help="run config overrides (seg.*)")
    args = parser.parse_intermixed_args()  # overrides may follow the options
    cfg = load_config(RunConfig, [CONFIG_DIR / "default.yaml"], args.overrides).seg
    with np.load(args.reference) as data:
        reference = Reference.from_arrays({k: data[k] for k in data.files})
    layout = discover_site(args.site)
    items = site_items(layout, "train", labelled_only=True)
    cache = args.cache / layout.name
    trainers = {
        "plain": SiteTrainer(cfg, items, [], cache, seed=0),
        "jdot": AlignedTrainer(cfg, items, [], cache, reference=reference, method="jdot", seed=0),
        "moments": AlignedTrainer(
            cfg, items, [], cache, reference=reference, method="moments", seed=0
        ),
    }
    for t in trainers.values():  # warm-up: caches, allocator, threads
        seconds_per_step(t, 2, 0)
    times: dict[str, list[float]] = {k: [] for k in trainers}
    for r in range(args.repeats):
        for name, t in trainers.items():
            times[name].append(seconds_per_step(t, args.steps, r + 1))
    print(f"{layout.name}: {len(items)} cases, patch {cfg.train.patch_size}, batch "
          f"{cfg.train.batch_size}, {args.steps} steps x {args.repeats} (alternating)")  # fmt: skip
    for name, values in times.items():
        print(f"  {name:8s} median {statistics.median(values):.3f} s/step, best {min(values):.3f}")
    for name in ("jdot", "moments"):
        med = statistics.median(times[name]) / statistics.median(times["plain"])
        best = min(times[name]) / min(times["plain"])
        print(f"  {name} / plain: {med:.3f} (median), {best:.3f} (best)")
    align = cfg.align
    print(f"  JDOT: {align.n_voxels} voxels x {align.n_reference} references, solver "
          f"{align.solver}")  # fmt: skip


if __name__ == "__main__":
    main()
