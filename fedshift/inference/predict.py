"""``fedshift predict``: segment new scans with a model package.

For each scan (:func:`fedshift.inference.segment.segment_scan`) the mask is written on the
scan's own grid as ``OUT/<case>.nii.gz`` (uint8 0/1; with ``probabilities`` also
``OUT/<case>_prob.nii.gz``), then ``OUT/lesions.csv``, ``OUT/predict.json`` and
``OUT/report.html`` describe all of them. A scan that fails a check is skipped with its
reason and the others go on. Every file is written under a temporary name and renamed,
so an interrupted run leaves no half-written file. Everything stays at the site.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from fedshift import __version__, atomic
from fedshift.bundle.from_run import bundle_from_run
from fedshift.bundle.io import ModelBundle, load_bundle
from fedshift.bundle.layout import METADATA
from fedshift.data.nifti import is_nifti, strip_nifti_suffix
from fedshift.errors import ConfigError, DataError, UsageError
from fedshift.inference.report import case_figures, predict_report
from fedshift.inference.segment import STEPS, Segmentation, nifti_like, segment_scan
from fedshift.model.device import choose_device

log = logging.getLogger(__name__)

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
#: the nnU-Net folder of test images, used when a folder holds no scan itself
IMAGES_TS = "imagesTs"


@dataclass(frozen=True)
class ScanInput:
    """One scan to segment and the case name its outputs take."""

    case: str
    path: Path


def case_name(path: Path) -> str:
    """``case_0000.nii.gz`` -> ``case``; ``scan.nii`` -> ``scan``."""
    stem = strip_nifti_suffix(path.name)
    match = _CHANNEL.match(stem)
    return match.group("case") if match and match.group("channel") == "0000" else stem


def _scans_in(folder: Path) -> list[Path]:
    """NIfTI files directly in ``folder`` (an nnU-Net folder's other channels skipped);
    those of ``folder/imagesTs`` when it holds none."""
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and is_nifti(p)):
        match = _CHANNEL.match(strip_nifti_suffix(path.name))
        if match and match.group("channel") != "0000":
            continue  # another channel of an nnU-Net case: FedShift segments FLAIR (0000)
        found.append(path)
    if not found and (folder / IMAGES_TS).is_dir():
        return _scans_in(folder / IMAGES_TS)
    return found


def find_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[ScanInput]:
    """The scans named by files and folders, in the order given.

    Raises
    ------
    UsageError
        a path does not exist, nothing to segment was found, or two scans would write the
        same ``<case>.nii.gz``.
    """
    scans: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            scans.extend(_scans_in(path))
        elif path.exists():
            scans.append(path)  # named explicitly: checked (and reported) like any scan
        else:
            raise UsageError(f"input {str(path)!r} does not exist")
    if not scans:
        raise UsageError("no .nii or .nii.gz scan found in the inputs")
    inputs = [ScanInput(case_name(p), p) for p in scans]
    seen: dict[str, Path] = {}
    for scan in inputs:
        if scan.case in seen and seen[scan.case].resolve() != scan.path.resolve():
            raise UsageError(
                f"{seen[scan.case]} and {scan.path} would both be written as {scan.case}.nii.gz"
            )
        seen[scan.case] = scan.path
    unique = {s.path.resolve(): s for s in inputs}
    return list(unique.values())


def open_model(path: str | os.PathLike[str]) -> ModelBundle:
    """A model package, or the package of a finished run folder (built in a temporary
    folder with :func:`fedshift.bundle.bundle_from_run`; the run folder is not changed).

    Raises
    ------
    BundleError
        ``path`` is neither, or the package is refused (the message names the file).
    """
    root = Path(path)
    if (root / METADATA).is_file() or not (root / "checkpoints").is_dir():
        return load_bundle(root)
    with tempfile.TemporaryDirectory(prefix="fedshift-model-") as tmp:
        bundle = load_bundle(bundle_from_run(root, Path(tmp) / "model"))
    log.info("built the model package of run %s (fedshift predict uses it in memory)", root)
    return replace(bundle, root=root.resolve())


def pick_device(name: str) -> torch.device:
    """``auto`` (cuda when present), ``cpu`` or ``cuda[:N]``; a clear error otherwise."""
    try:
        return choose_device(name, key="--device")
    except ConfigError as exc:  # one line naming --device and what is allowed
        raise UsageError(str(exc)) from None


def _write_nifti(path: Path, img: nib.Nifti1Image) -> None:
    atomic.write_with(path, lambda tmp: nib.save(img, str(tmp)))


def _case_record(scan: ScanInput, seg: Segmentation, files: dict[str, str]) -> dict[str, Any]:
    return {
        "case": scan.case,
        "input": str(scan.path),
        "status": "ok",
        **files,
        "shape": list(seg.mask.shape),
        "spacing_mm": [round(z, 4) for z in seg.zooms],
        "orientation": "".join(seg.orientation),
        "model_grid": list(seg.model_shape),
        "n_lesions": len(seg.lesions),
        "volume_ml": seg.volume_ml,
        "lesions": [
            {"voxels": les.voxels, "volume_ml": les.volume_ml, "centroid_mm": list(les.centroid_mm)}
            for les in seg.lesions
        ],
        "timings_s": {step: seg.timings.get(step, 0.0) for step in STEPS},
    }


def _failed(scan: ScanInput, code: str, reason: str) -> dict[str, Any]:
    return {"case": scan.case, "input": str(scan.path), "status": "failed", "code": code,
            "reason": reason}  # fmt: skip


def lesions_csv(cases: Sequence[dict[str, Any]]) -> str:
    """One ``total`` row per segmented case (lesion count, volume), then one row per
    lesion (volume, centroid in scanner mm)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "case",
            "lesion",
            "n_lesions",
            "volume_ml",
            "centroid_x_mm",
            "centroid_y_mm",
            "centroid_z_mm",
        ]  # fmt: skip
    )
    for case in cases:
        if case["status"] != "ok":
            continue
        writer.writerow([case["case"], "total", case["n_lesions"], f"{case['volume_ml']:.4f}"])
        for i, les in enumerate(case["lesions"], start=1):
            x, y, z = les["centroid_mm"]
            writer.writerow(
                [case["case"], i, "", f"{les['volume_ml']:.4f}", f"{x:.2f}", f"{y:.2f}", f"{z:.2f}"]
            )
    return out.getvalue()


def _model_summary(bundle: ModelBundle) -> dict[str, Any]:
    info = bundle.info
    keep = ("version", "created", "run_config_hash", "label_map", "input", "threshold",
            "threshold_source", "sites", "val_dice", "preprocessing", "intensity_alignment",
            "site", "source", "adaptation")  # fmt: skip
    return {
        "package": str(bundle.root),
        **{k: info.get(k) for k in keep},
        "intensity_map": bundle.intensity_map is not None,
    }


def _progress(items: list[ScanInput], show: bool | None) -> Iterable[ScanInput]:
    from tqdm import tqdm

    return tqdm(items, desc="predict", unit="scan", disable=None if show is None else not show)


def predict_one(
    bundle: ModelBundle,
    model: torch.nn.Module,
    scan: ScanInput,
    out_dir: Path,
    device: torch.device,
    probabilities: bool,
) -> tuple[dict[str, Any], Segmentation | None]:
    """Segment and write one scan; a bad scan gives a ``failed`` record, never raises
    (except on interrupt)."""
    try:
        seg = segment_scan(bundle, model, scan.path, device, keep_probability=probabilities)
    except DataError as exc:
        return _failed(scan, exc.code, str(exc)), None
    except Exception as exc:  # an unforeseen scan must not stop the others
        log.exception("predict: %s failed", scan.path)
        return _failed(scan, "predict_failed", f"{type(exc).__name__}: {exc}"), None
    start = time.perf_counter()
    files = {"mask": f"{scan.case}.nii.gz"}
    _write_nifti(out_dir / files["mask"], nifti_like(seg.mask, seg, "fedshift lesion mask"))
    if seg.probability is not None:
        files["probabilities"] = f"{scan.case}_prob.nii.gz"
        prob = nifti_like(seg.probability.astype(np.float32), seg, "fedshift lesion probability")
        _write_nifti(out_dir / files["probabilities"], prob)
    seg.timings["write"] = time.perf_counter() - start
    return _case_record(scan, seg, files), seg


def predict_inputs(
    bundle: ModelBundle,
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    device: str = "auto",
    probabilities: bool = False,
    report: bool = True,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Segment every scan of ``inputs`` (files or folders) into ``out_dir``.

    Returns the content of ``predict.json``: ``{"model": ..., "device": ..., "cases":
    [{"case", "status": "ok" | "failed", ...}], "n_ok", "n_failed", "timings_s", ...}``.
    """
    scans = find_inputs(inputs)
    out = Path(out_dir)
    clash = {s.path.resolve() for s in scans} & {
        (out / f"{s.case}{suffix}").resolve() for s in scans for suffix in (".nii.gz", ".nii")
    }
    if clash:
        raise UsageError(f"--out {out} would overwrite the input {sorted(clash)[0]}")
    torch_device = pick_device(device)
    out.mkdir(parents=True, exist_ok=True)
    model = bundle.network.to(torch_device).eval()
    started = time.perf_counter()
    cases: list[dict[str, Any]] = []
    figures: list[dict[str, str]] = []  # rendered at once: no scan is kept in memory
    for scan in _progress(scans, progress):
        record, seg = predict_one(bundle, model, scan, out, torch_device, probabilities)
        cases.append(record)
        if seg is not None and report:
            figures.extend(case_figures(scan.case, seg))
        if record["status"] != "ok":
            log.warning("skipped %s: %s", scan.path, record["reason"])
    seconds = time.perf_counter() - started
    ok = [c for c in cases if c["status"] == "ok"]
    summary = {
        "fedshift_version": __version__,
        "model": _model_summary(bundle),
        "device": str(torch_device),
        "probabilities": probabilities,
        "cases": cases,
        "n_ok": len(ok),
        "n_failed": len(cases) - len(ok),
        "seconds": seconds,
        "cases_per_minute": 60.0 * len(cases) / seconds if seconds > 0 else math.nan,
        "timings_s": {step: sum(c["timings_s"][step] for c in ok) for step in STEPS},
    }
    atomic.write_text(out / "lesions.csv", lesions_csv(cases))
    if report:
        atomic.write_text(out / "report.html", predict_report(summary, figures))
        summary["report"] = "report.html"
    atomic.write_json(out / "predict.json", summary)
    return summary
