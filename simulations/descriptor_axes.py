"""Does the acquisition rule place each site right, one descriptor at a time?

The diagnosis names a site's acquisition shift when, on some acquisition descriptor
(noise, contrast, non-uniformity, sharpness; :mod:`fedshift.shift.descriptors`), its
median case lies at least one scale from the federation's median case
(:func:`fedshift.shift.descriptors.median_offsets`). This study reads a generated
federation's raw training images, computes each case's descriptors with today's code
(the path a site takes, N4 included), and prints per site its medians, its offset per
descriptor, the verdict of the rule, and the exact per-descriptor kernel similarity to
the rest (what an earlier rule compared), next to what the scenario planted.

    python simulations/descriptor_axes.py runs/data/acquisition-seed0

Reads only; brain masks come from the preprocessing cache (``--cache``), made on first use.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fedshift.config import CONFIG_DIR, load_config
from fedshift.model.preprocess import PreprocessCache
from fedshift.runconfig import RunConfig
from fedshift.shift.descriptors import FAMILIES, KernelSummary, median_offsets
from fedshift.shift.diagnosis import DiagnosisConfig, diagnose
from fedshift.shift.indicators import OFFSET, SiteIndicators
from fedshift.site.descriptors import appearance_of

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
        values = appearance_of({"image": image}, pre.mask, tuple(pre.zooms), cache.cfg)
        rows.append([values[n] for n in names])
    if len(rows) < 2:
        raise SystemExit(f"{site}: {len(rows)} training image(s); need at least 2")
    return np.asarray(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("federation", type=Path, help="a `fedshift synth` output folder")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/descriptor-axes"))
    parser.add_argument(
        "--offset", type=float, default=DiagnosisConfig.offset, help="the diagnosis offset"
    )
    parser.add_argument("--json", type=Path, help="also write the per-case descriptors here")
    args = parser.parse_args()
    truth_file = args.federation / "truth.json"
    truth = json.loads(truth_file.read_text())["sites"] if truth_file.is_file() else {}
    names = [n for n, _ in FAMILIES["acquisition"]]
    scales = np.array([s for _, s in FAMILIES["acquisition"]])
    cfg = load_config(RunConfig, [CONFIG_DIR / "default.yaml"])
    cache = PreprocessCache(args.cache / args.federation.name, cfg.seg.preprocess)
    sites = sorted(p for p in args.federation.iterdir() if (p / "imagesTr").is_dir())
    rows = {}
    for s in sites:
        rows[s.name] = site_rows(s, cache, names)
        print(f"  {s.name}: {len(rows[s.name])} cases described", flush=True)
    if args.json:
        args.json.write_text(json.dumps({k: v.tolist() for k, v in rows.items()}))
    summaries = {
        k: KernelSummary.of("acquisition", [dict(zip(names, r, strict=True)) for r in x])
        for k, x in rows.items()
    }
    federation = sum(summaries.values(), KernelSummary.zeros("acquisition"))
    width = max(13, *(len(n) + 1 for n in names))
    print(
        f"{args.federation}: median case per site; offset from the federation's median "
        f"case in scales (named at |offset| >= {args.offset:g}); per-descriptor similarity"
    )
    print(f"  {'site':8s} " + " ".join(f"{n:>{width}s}" for n in names) + "   planted")
    for name, summary in summaries.items():
        spec = truth.get(name, {}).get("spec", {})
        planted = {k: spec[k] for k in PLANTED if k in spec and spec[k] != (k == "gamma")}
        med = summary.medians()
        print(f"  {name:8s} " + " ".join(f"{med[n]:+{width}.3f}" for n in names) + f"   {planted}")
    print(f"  {'offset':8s} " + " ".join(f"{n:>{width}s}" for n in names) + "   verdict")
    for name, summary in summaries.items():
        offsets = median_offsets(summary, federation) or {}
        indicators = SiteIndicators(name, **{OFFSET[n]: v for n, v in offsets.items()})
        (found,) = diagnose([indicators], DiagnosisConfig(offset=args.offset))
        verdict = found.evidence if found.shift else "-"
        print(
            f"  {name:8s} " + " ".join(f"{offsets[n]:+{width}.2f}" for n in names) + f"   {verdict}"
        )
    print(f"  {'similar':8s} " + " ".join(f"{n:>{width}s}" for n in names))
    for name, own in rows.items():
        rest = np.concatenate([x for other, x in rows.items() if other != name])
        axes = [
            kernel_similarity(own[:, [i]], rest[:, [i]], scales[[i]]) for i in range(len(names))
        ]
        print(f"  {name:8s} " + " ".join(f"{a:{width}.2f}" for a in axes))


if __name__ == "__main__":
    main()
