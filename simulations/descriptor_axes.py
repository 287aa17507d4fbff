"""Would comparing acquisition descriptors one axis at a time place each site right?

The diagnosis compares a site's acquisition descriptors (noise, contrast, non-uniformity,
sharpness; :mod:`fedshift.shift.descriptors`) with the rest of the federation jointly.
On the ``acquisition`` scenario that names site0, the one unchanged scanner, because every
other site moves it on some axis (README, diagnosis section). This study asks whether a
per-axis rule (a site is shifted when its similarity on any single descriptor is low)
would do better. It reads a generated federation's raw training images, computes each
case's descriptors with today's code, and prints per site the joint similarity and the
similarity per descriptor, with exact Gaussian kernels at the family's scales (a run uses
random features of the same kernel), next to what the scenario planted.

    python simulations/descriptor_axes.py runs/data/acquisition-seed0

Reads only; brain masks come from the preprocessing cache (``--cache``), made on first use.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fedshift.config import CONFIG_DIR, load_config
from fedshift.data.masks import head_mask
from fedshift.data.nifti import read_volume
from fedshift.model.preprocess import PreprocessCache
from fedshift.runconfig import RunConfig
from fedshift.shift.descriptors import FAMILIES, appearance

#: the scenario's acquisition settings shown beside each site (truth.json spec keys)
PLANTED = ("gamma", "bias_field", "noise", "blur_mm", "slice_thickness_mm")


def kernel_similarity(own: np.ndarray, rest: np.ndarray, scales: np.ndarray) -> float:
    """:func:`fedshift.shift.descriptors.similarity` with the exact kernel: mean k(own,
    rest) over sqrt(mean k(own, own') * mean k(rest, rest')), distinct pairs only."""

    def gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-(((a[:, None, :] - b[None, :, :]) / scales) ** 2).sum(-1) / 2)

    def self_mean(a: np.ndarray) -> float:
        g = gram(a, a)
        return (g.sum() - np.trace(g)) / (len(a) * (len(a) - 1))

    return float(gram(own, rest).mean() / np.sqrt(self_mean(own) * self_mean(rest)))


def site_rows(site: Path, cache: PreprocessCache, names: list[str]) -> np.ndarray:
    rows = []
    for image in sorted((site / "imagesTr").glob("*.nii.gz")):
        pre = cache.get(image, aligned=False)
        raw = read_volume(image).as_float32()
        values = appearance(raw, pre.mask, head_mask(raw), tuple(pre.zooms))
        rows.append([values[n] for n in names])
    if len(rows) < 2:
        raise SystemExit(f"{site}: {len(rows)} training image(s); need at least 2")
    return np.asarray(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("federation", type=Path, help="a `fedshift synth` output folder")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/descriptor-axes"))
    parser.add_argument("--threshold", type=float, default=0.5, help="the diagnosis threshold")
    args = parser.parse_args()
    truth_file = args.federation / "truth.json"
    truth = json.loads(truth_file.read_text())["sites"] if truth_file.is_file() else {}
    names = [n for n, _ in FAMILIES["acquisition"]]
    scales = np.array([s for _, s in FAMILIES["acquisition"]])
    cfg = load_config(RunConfig, [CONFIG_DIR / "default.yaml"])
    cache = PreprocessCache(args.cache / args.federation.name, cfg.seg.preprocess)
    sites = sorted(p for p in args.federation.iterdir() if (p / "imagesTr").is_dir())
    rows = {s.name: site_rows(s, cache, names) for s in sites}
    print(f"{args.federation}: acquisition descriptors, site means, then similarity to the "
          f"rest (named when below {args.threshold:g})")  # fmt: skip
    print(f"  {'site':8s} " + " ".join(f"{n:>13s}" for n in names) + "   planted")
    for name, x in rows.items():
        spec = truth.get(name, {}).get("spec", {})
        planted = {k: spec[k] for k in PLANTED if k in spec and spec[k] != (k == "gamma")}
        print(f"  {name:8s} " + " ".join(f"{v:+13.2f}" for v in x.mean(0)) + f"   {planted}")
    print(f"  {'site':8s} {'joint':>6s} " + " ".join(f"{n:>13s}" for n in names) + "  per-axis")
    for name, own in rows.items():
        rest = np.concatenate([x for other, x in rows.items() if other != name])
        joint = kernel_similarity(own, rest, scales)
        axes = [
            kernel_similarity(own[:, [i]], rest[:, [i]], scales[[i]]) for i in range(len(names))
        ]
        verdict = "named" if min(axes) < args.threshold else "-"
        print(f"  {name:8s} {joint:6.2f} " + " ".join(f"{a:13.2f}" for a in axes) + f"  {verdict}")


if __name__ == "__main__":
    main()
