"""Cost of an aligned training step (JDOT or moments) against a plain one.

Same site, same model, same patches, same process: a :class:`SiteTrainer` and an
:class:`AlignedTrainer` (reference: a run's broadcast ``reference.npz``) train
``--steps`` steps each, alternating, ``--repeats`` times after a warm-up; prints the
median and best seconds per step and the ratios aligned / plain. The goal for JDOT is a
ratio <= 1.15. ``--variant`` adds aligned trainers with their own settings, all alternating
in one process (so machine load hits them alike); besides the median and best ratios each
prints the median of the per-repeat ratios, the steadiest of the three. ``--breakdown``
then times the parts of each JDOT variant's term on a fixed batch (waiting for the device
after each part), to show where an aligned step's extra time goes.

    python simulations/bench_aligned_step.py runs/data/default-seed0/site0 \\
        runs/bench-adaptation/fedshift/seed0/reference.npz --steps 10 --repeats 3
    python simulations/bench_aligned_step.py SITE REFERENCE --variant emd=jdot \\
        --variant sk=jdot:seg.align.solver=sinkhorn,seg.align.tol=1e-4 \\
        --variant sk_every2=jdot:seg.align.solver=sinkhorn,seg.align.every=2
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
from fedshift.model.data import IMAGE_KEY, LABEL_KEY, train_loader
from fedshift.model.preprocess import MASK_KEY
from fedshift.model.trainer import SiteTrainer, batch_to_device
from fedshift.runconfig import RunConfig
from fedshift.shift.jdot import coupling, jdot_cost, matched_lesion_count, sample_by_class
from fedshift.shift.reference import Reference


def seconds_per_step(trainer: SiteTrainer, steps: int, round_index: int) -> float:
    start = time.perf_counter()
    trainer.train(num_steps=steps, round_index=round_index)
    return (time.perf_counter() - start) / steps


def breakdown(trainer: AlignedTrainer, repeats: int = 20) -> None:
    """Milliseconds per call of each part of the JDOT term, on one batch of ``trainer``."""
    import torch

    align, device = trainer.cfg.align, trainer.device
    loader = train_loader(trainer.dataset, trainer.cfg.train, 1, 0, pin_memory=False)
    batch = batch_to_device(next(iter(loader)), device)
    with torch.no_grad():
        features = trainer.model.features(batch[IMAGE_KEY])
    head = trainer.model.f
    weight, bias = head.weight.reshape(head.out_channels, -1), head.bias

    def mark(marks: list[float]) -> None:
        """Wait for the device, then note the time."""
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        marks.append(time.perf_counter())

    names = ("voxel draw", "reference draw", "cost", "coupling")
    parts: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats + 2):  # the first two warm up
        marks = [time.perf_counter()]
        x, x_cls, x_les = sample_by_class(
            features, batch[LABEL_KEY], batch[MASK_KEY], align.n_voxels, align.lesion_fraction
        )
        mark(marks)
        n_les = matched_lesion_count(align.n_reference, x_les, len(x_cls))
        r, y = trainer.sampler.draw(align.n_reference, n_les)
        mark(marks)
        cost = jdot_cost(x, weight, bias, r, y, align.alpha, align.lam)
        mark(marks)
        coupling(cost, align)
        mark(marks)
        for name, a, b in zip(names, marks[:-1], marks[1:], strict=True):
            parts[name].append(1e3 * (b - a))
    line = ", ".join(f"{k} {statistics.median(v[2:]):.2f}" for k, v in parts.items())
    print(f" JDOT term parts on {device} (ms, median of {repeats}): {line}")


Variant = tuple[str, str, list[str]]  # (name, "jdot" | "moments", seg.* overrides)


def parse_variant(text: str) -> Variant:
    """``NAME=METHOD[:OVERRIDE,...]`` -> (name, method, overrides); e.g.
    ``sk2=jdot:seg.align.solver=sinkhorn,seg.align.every=2``."""
    name, _, rest = text.partition("=")
    method, _, overrides = rest.partition(":")
    if not name or method not in ("jdot", "moments"):
        raise argparse.ArgumentTypeError(
            f"--variant {text!r}: expected NAME=jdot|moments[:OVERRIDE,...]"
        )
    return name, method, [o for o in overrides.split(",") if o]


def measure(
    site: Path,
    reference_path: Path,
    variants: list[Variant],
    overrides: list[str],
    steps: int,
    repeats: int,
    cache_root: Path,
) -> tuple[dict[str, SiteTrainer], dict[str, float]]:
    """Time each variant's aligned trainer against one plain trainer, alternating, and
    print the table; returns the trainers and each variant's median per-repeat ratio."""

    def seg_config(extra: list[str]):
        return load_config(RunConfig, [CONFIG_DIR / "default.yaml"], overrides + extra).seg

    cfg = seg_config([])
    with np.load(reference_path) as data:
        reference = Reference.from_arrays({k: data[k] for k in data.files})
    layout = discover_site(site)
    items = site_items(layout, "train", labelled_only=True)
    cache = cache_root / layout.name
    trainers: dict[str, SiteTrainer] = {"plain": SiteTrainer(cfg, items, [], cache, seed=0)}
    for name, method, extra in variants:
        trainers[name] = AlignedTrainer(
            seg_config(extra), items, [], cache, reference=reference, method=method, seed=0
        )
    for t in trainers.values():  # warm-up: caches, allocator, threads
        seconds_per_step(t, 2, 0)
    times: dict[str, list[float]] = {k: [] for k in trainers}
    for r in range(repeats):
        for name, t in trainers.items():
            times[name].append(seconds_per_step(t, steps, r + 1))
    device = trainers["plain"].device
    print(f"{layout.name}: {len(items)} cases, patch {cfg.train.patch_size}, batch "
          f"{cfg.train.batch_size}, {steps} steps x {repeats} (alternating), "
          f"device {device}")  # fmt: skip
    for name, values in times.items():
        print(f"  {name:8s} median {statistics.median(values):.3f} s/step, best {min(values):.3f}")
    plain = times["plain"]
    ratios: dict[str, float] = {}
    for name, method, _ in variants:
        t = trainers[name]
        assert isinstance(t, AlignedTrainer)
        align = t.cfg.align
        paired = statistics.median(a / p for a, p in zip(times[name], plain, strict=True))
        med = statistics.median(times[name]) / statistics.median(plain)
        best = min(times[name]) / min(plain)
        what = (
            f"{align.n_voxels} voxels x {align.n_reference} references, solver "
            f"{align.solver} (tol {align.tol:g}), every {align.every}"
            if method == "jdot"
            else f"{align.n_voxels} voxels, every {align.every}"
        )
        print(f"  {name} / plain: {med:.3f} (median), {best:.3f} (best), {paired:.3f} "
              f"(median of the repeats' ratios) -- {method}: {what}")  # fmt: skip
        ratios[name] = paired
    return trainers, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path)
    parser.add_argument("reference", type=Path, help="reference.npz of a secure-stats run")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"))
    parser.add_argument("--breakdown", action="store_true", help="time the JDOT term's parts")
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=None,
        metavar="NAME=METHOD[:OVERRIDE,...]",
        help="an aligned trainer to time against the plain one, with its own seg.* overrides "
        "on top of the common ones (repeatable; default: jdot=jdot and moments=moments). "
        "All variants alternate with the plain trainer in one process.",
    )
    parser.add_argument("overrides", nargs="*", help="run config overrides (seg.*)")
    args = parser.parse_intermixed_args()  # overrides may follow the options
    variants = args.variant or [("jdot", "jdot", []), ("moments", "moments", [])]
    trainers, _ = measure(
        args.site, args.reference, variants, args.overrides, args.steps, args.repeats, args.cache
    )
    if args.breakdown:
        for name, method, _ in variants:
            trainer = trainers[name]
            if method == "jdot" and isinstance(trainer, AlignedTrainer):
                print(f"  {name}:", end="")
                breakdown(trainer)


if __name__ == "__main__":
    main()
