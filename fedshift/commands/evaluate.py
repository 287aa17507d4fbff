"""Score a model package on a site's labelled cases, with the metric code of training.

MODEL is a package folder or a finished run folder; SITE_DIR a site in nnU-Net layout
(imagesTs/ + labelsTs/ for --split test, imagesTr/ + labelsTr/ for --split train). Each
case goes through the same pipeline as `fedshift predict` and is scored on its own grid:
Dice, lesion-wise precision / recall / F1, absolute volume difference (ml) and HD95 (mm,
MONAI), per case and as means over cases.

Lesion-wise definition: detection by overlap (MetricsReloaded's name for it): lesions are
26-connected components; a true lesion is detected when >= 10 % of its voxels are
predicted, a predicted lesion is correct when >= 10 % of its voxels are lesion (the
overlap criterion of MSSEG-2016, Commowick et al. 2018, alpha = 0.1, without its minimum
lesion size or its rule on one prediction covering several lesions). Exit code 1 when a
case failed. The per-case numbers stay at the site.

  fedshift evaluate runs/default/model runs/data/default-seed0/site0 --out site0-test.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fedshift import atomic
from fedshift.inference.evaluate import evaluate_site, table
from fedshift.inference.predict import open_model

HELP = "score a model package on a site's labelled cases (Dice, lesion F1, AVD, HD95)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model package folder or finished run folder")
    parser.add_argument("site_dir", type=Path, help="site folder in nnU-Net layout")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def run(args: argparse.Namespace) -> int:
    bundle = open_model(args.model)
    result = evaluate_site(bundle, args.site_dir, args.split, args.device)
    print(table(result))
    print(f"threshold {result['threshold']:.2f}; {result['definition']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(args.out, result)
        print(f"results in {args.out}")
    return 1 if result["summary"]["n_failed"] else 0
