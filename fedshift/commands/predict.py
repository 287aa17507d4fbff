"""Segment new FLAIR scans with a model package (or a finished run folder).

MODEL is a package folder (configs/metadata.json, configs/inference.yaml,
models/model.pt: what a run writes to RUN/model/ and each site keeps) or a finished run
folder, whose final model is packaged on the fly. INPUT is NIfTI files or folders of
them (an nnU-Net imagesTs/ too: channel _0000 is the FLAIR). Each scan is checked (a
bad one is skipped with its reason), preprocessed exactly as in training (N4, brain
mask, z-score, the site's intensity map when the package has one), resampled to the
model's spacing, segmented by sliding window and cut at the package's threshold; the
mask is written on the scan's own grid as OUT/<case>.nii.gz (uint8 0/1). OUT also gets
lesions.csv (lesion counts, volumes in ml, centroids in scanner mm), predict.json
(the same plus timings per step and the model's metadata) and report.html. Exit code 1
when a scan failed, 2 on a usage error. Everything stays on this machine.

  fedshift predict runs/default/model scans/ --out masks/
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fedshift.inference.predict import open_model, predict_inputs

HELP = "segment new scans with a model package; masks on each scan's own grid"
log = logging.getLogger("fedshift.predict")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="model package folder or finished run folder")
    parser.add_argument("inputs", nargs="+", type=Path, help="NIfTI files or folders of them")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (the GPU when present), cpu, cuda or cuda:N (default auto)",
    )
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="also write the lesion probability as OUT/<case>_prob.nii.gz (float32)",
    )
    parser.add_argument("--no-report", action="store_true", help="do not write report.html")


def run(args: argparse.Namespace) -> int:
    bundle = open_model(args.model)
    summary = predict_inputs(
        bundle,
        args.inputs,
        args.out,
        device=args.device,
        probabilities=args.probabilities,
        report=not args.no_report,
    )
    for case in summary["cases"]:
        if case["status"] == "ok":
            print(f"{case['case']}: {case['n_lesions']} lesions, {case['volume_ml']:.2f} ml")
        else:
            print(f"{case['case']}: FAILED ({case['code']}): {case['reason']}")
    print(
        f"{summary['n_ok']} of {len(summary['cases'])} scans segmented in "
        f"{summary['seconds']:.1f} s on {summary['device']}; results in {args.out}/"
    )
    return 1 if summary["n_failed"] else 0
