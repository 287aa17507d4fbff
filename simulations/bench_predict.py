"""End-to-end speed of ``fedshift predict``: cases per minute and the step that dominates.

Synthetic FLAIR cases (``fedshift synth``'s generator, default scenario, first labelled
site) are written at the scan spacing of each scenario, then segmented by
:func:`fedshift.inference.predict.predict_inputs`, the function the command runs: read,
checks, N4, masks, z-score, resampling, sliding window, lesions, writing the masks,
lesions.csv, predict.json and report.html. Generation is not timed; loading the package
is not timed (once per command). Scenarios (scan mm -> model mm):

- ``3mm``: 3 mm scans, a 3 mm model (the default CPU federation);
- ``1mm``: 1 mm scans (about 182 x 218 x 182), a 1 mm model (a federation trained at 1 mm);
- ``1mm-3mm``: 1 mm scans, a 3 mm model (resampled to 3 mm before N4).

The model is the default ``SegConfig`` (UNet 16-32-64-128, 48^3 windows, overlap 0.5,
N4 shrink 4) with its seeded initial weights, unless ``--model`` names a package: the
work per case does not depend on the weights (the lesion table and the report do a
little). Goal: >= 2 cases/min at 1 mm on 2 CPU cores.

    python simulations/bench_predict.py [--cases 3] [--scenarios 3mm,1mm,1mm-3mm]
        [--threads 2] [--device cpu] [--model PACKAGE | --seg KEY=VALUE ...]
        [--work DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import torch

from fedshift.bundle import load_bundle, write_bundle
from fedshift.config import CONFIG_DIR, load_config
from fedshift.data.synth.config import SynthConfig
from fedshift.data.synth.federation import synth_case
from fedshift.inference.predict import predict_inputs
from fedshift.inference.segment import STEPS
from fedshift.model.config import SegConfig
from fedshift.model.network import build_network, get_weights

#: scenario -> (scan voxel mm, model voxel mm)
SCENARIOS = {"3mm": (3.0, 3.0), "1mm": (1.0, 1.0), "1mm-3mm": (1.0, 3.0)}


def write_cases(folder: Path, voxel_mm: float, n: int) -> tuple[int, ...]:
    """``n`` synthetic test cases at ``voxel_mm``; returns their shape."""
    cfg = load_config(
        SynthConfig, [CONFIG_DIR / "scenarios" / "default.yaml"], [f"voxel_mm={voxel_mm:g}"]
    )
    site = next(name for name, spec in cfg.sites.items() if spec.labelled)
    folder.mkdir(parents=True, exist_ok=True)
    shape: tuple[int, ...] = ()
    for i in range(n):
        image, _truth, affine, _ = synth_case(cfg, site, "test", i, None)
        nib.save(nib.Nifti1Image(image, affine), str(folder / f"case{i:02d}_0000.nii.gz"))
        shape = image.shape
    return shape


def untrained_package(folder: Path, model_mm: float, overrides: list[str]) -> Path:
    seg = load_config(SegConfig, overrides=overrides)
    return write_bundle(
        folder,
        weights=get_weights(build_network(seg.model, seed=0)),
        seg_cfg=seg,
        threshold=0.5,
        sites={"bench": 0},
        val_dice=None,
        run_config_hash="bench",
        spacing=(model_mm,) * 3,
    )


def run_scenario(name: str, args: argparse.Namespace, work: Path) -> dict:
    scan_mm, model_mm = SCENARIOS[name]
    scans = work / f"scans-{scan_mm:g}mm"
    if not scans.is_dir():
        write_cases(scans, scan_mm, args.cases)
    shape = nib.load(next(scans.iterdir())).shape
    package = args.model or untrained_package(
        work / f"model-{model_mm:g}mm", model_mm, list(args.seg)
    )
    bundle = load_bundle(package)
    start = time.perf_counter()
    summary = predict_inputs(
        bundle, [scans], work / f"out-{name}", device=args.device, progress=False
    )
    seconds = time.perf_counter() - start
    n = summary["n_ok"]
    steps = {s: summary["timings_s"][s] / max(n, 1) for s in STEPS}
    return {
        "scenario": name,
        "scan_mm": scan_mm,
        "model_mm": list(bundle.spacing),
        "shape": list(shape),
        "cases": n,
        "seconds": seconds,
        "cases_per_minute": 60.0 * n / seconds,
        "per_case_s": steps,
        "other_s": seconds / max(n, 1) - sum(steps.values()),
        "dominant": max(steps, key=steps.get),
    }


def show(row: dict) -> None:
    shape = "x".join(str(s) for s in row["shape"])
    print(
        f"{row['scenario']:8s} scan {row['scan_mm']:g} mm ({shape}), model "
        f"{row['model_mm'][0]:g} mm: {row['cases_per_minute']:.2f} cases/min "
        f"({row['seconds'] / row['cases']:.1f} s/case over {row['cases']} cases); "
        f"dominant step: {row['dominant']}"
    )
    parts = [f"{s} {v:.2f}" for s, v in row["per_case_s"].items() if v >= 0.005]
    print("         per case (s): " + ", ".join(parts) + f", report+tables {row['other_s']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=3, help="cases per scenario")
    parser.add_argument("--scenarios", default="3mm,1mm,1mm-3mm", help=",".join(SCENARIOS))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", type=Path, help="a package instead of the untrained one")
    parser.add_argument(
        "--seg",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="settings of the untrained package's SegConfig, e.g. preprocess.n4_shrink=8 "
        "eval.sw_overlap=0.25: what a federation trained and validated with them would get",
    )
    parser.add_argument("--work", type=Path, help="keep cases and outputs here")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    if args.model and args.seg:
        parser.error("--seg sets the untrained package; a --model has its own settings")
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, device {args.device}, "
        f"{args.cases} cases per scenario; model: "
        + (str(args.model) if args.model else f"untrained SegConfig {' '.join(args.seg)}".strip())
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = args.work or Path(tmp)
        for name in args.scenarios.split(","):
            rows.append(run_scenario(name.strip(), args, work))
            show(rows[-1])
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    ok = [r for r in rows if r["scan_mm"] == 1.0 and r["model_mm"][0] == 1.0]
    if ok:
        verdict = "met" if ok[0]["cases_per_minute"] >= 2 else "missed"
        print(f"goal >= 2 cases/min at 1 mm (1 mm model): {verdict}")


if __name__ == "__main__":
    main()
