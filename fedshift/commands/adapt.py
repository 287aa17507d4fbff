"""Adapt a model package to this site's scanner on its own images, without labels.

MODEL is the package the site received (RUN/sites/<site>/model in a simulation,
WORK/model in a deployment, or a run's global RUN/model); SITE_DIR the site's folder in
nnU-Net layout (imagesTr/ for --split train, imagesTs/ for --split test; labels, if any,
are not read). Each image goes through the package's own preprocessing (N4, brain mask,
z-score, the site's intensity map, resampling to the model's grid: exactly what
`fedshift predict` feeds the network), then the method adapts a copy of the network:

  jdot    DeepJDOT against the federation's reference Gaussians (Damodaran 2018)
  tent    entropy minimisation + class-ratio prior (Wang 2021; Bateson 2022)
  pseudo  self-training on the model's confident voxels
  adabn   batch-norm statistics of this site's images (Li 2016; batch-norm networks only)

jdot and tent need the federation's reference inside the package (runs with secure
statistics). A collapse guard stops the adaptation, keeping the last good weights, when
the predicted lesion load leaves the federation's range. The adapted package is written
at --out in the same layout, its threshold unchanged, the adaptation recorded in its
metadata; `fedshift predict` and `fedshift evaluate` use it as any package. MODEL is
never modified and nothing leaves this machine. Settings: key=value (steps, lr,
batch_size, patch_size, max_images, seed, guard.*, jdot.*, tent.*, pseudo.*).

  fedshift adapt runs/default/sites/target/model runs/data/default-seed0/target \
      --out runs/target-adapted
  fedshift adapt WORK/model /data/hospital --method tent --steps 100 tent.prior_weight=0.5
  fedshift predict runs/target-adapted runs/data/default-seed0/target/imagesTs --out masks/
  fedshift evaluate runs/target-adapted runs/data/default-seed0/target --split test
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fedshift.adapt.config import METHOD_NAMES, AdaptConfig
from fedshift.adapt.run import adapt_package
from fedshift.config import load_config

HELP = "adapt a model package to this site's images without labels (jdot, tent, pseudo, adabn)"
#: the key=value settings, also taken after an option (fedshift.cli)
SETTINGS = "settings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model package folder (RUN/model, WORK/model)")
    parser.add_argument("site_dir", type=Path, help="site folder in nnU-Net layout")
    parser.add_argument("--out", type=Path, required=True, help="folder of the adapted package")
    parser.add_argument(
        "--method",
        choices=METHOD_NAMES,
        default=None,
        help="adaptation method (default jdot)",
    )
    parser.add_argument("--steps", type=int, default=None, help="adaptation steps (default 50)")
    parser.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="the images adapted on: imagesTr (train, default) or imagesTs (test)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (the GPU when present), cpu, cuda or cuda:N (default auto)",
    )
    parser.add_argument(
        "settings",
        nargs="*",
        metavar="key=value",
        help="settings, e.g. lr=1e-3 guard.every=5 tent.prior_weight=0.5 pseudo.hi=0.8",
    )


def run(args: argparse.Namespace) -> int:
    overrides = list(args.settings)
    if args.method is not None:
        overrides.append(f"method={args.method}")
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    cfg = load_config(AdaptConfig, [], overrides)
    result = adapt_package(
        args.model, args.site_dir, args.out, cfg, split=args.split, device=args.device
    )
    record = result.record
    guard = record["guard"]
    print(
        f"{record['method']}: {record['steps_run']} of {record['steps_asked']} steps on "
        f"{record['images']} images in {record['seconds']:.1f} s on {record['device']}"
    )
    print(
        f"predicted lesion load {guard['values'][0]['lesion_ml']:.3g} -> "
        f"{guard['values'][-1]['lesion_ml']:.3g} mL per case (allowed "
        f"{guard['range_ml'][0]:.3g}-{guard['range_ml'][1]:.3g}); {record['stop_reason']}"
    )
    print(f"adapted package: {result.package}")
    return 0
