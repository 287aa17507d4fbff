"""``fedshift evaluate``: score a model package on a site's labelled cases.

Each case is segmented by the very pipeline ``fedshift predict`` runs
(:func:`fedshift.inference.segment.segment_scan`: checks, N4, brain mask, z-score, the
site's intensity map, resampling to the package's spacing, sliding window, the package's
threshold, back to the scan's grid) and scored on the scan's own grid against its label
with the metric code training uses (:func:`fedshift.model.metrics.case_metrics`), plus
HD95 (``monai.metrics.compute_hausdorff_distance``, 95th percentile, in mm). A case at the
package's spacing is not resampled, so its numbers are those training's evaluation gives.

Lesion-wise definition (detection by overlap, as MetricsReloaded names it; Maier-Hein et
al. 2024): lesions are connected components (26 neighbours by default,
``eval.connectivity``); a true lesion is detected when at least 10 % of its voxels are
predicted (``eval.detection_overlap``), and a predicted lesion is correct when at least
10 % of its voxels are true lesion. Lesion precision = correct predicted / predicted,
recall = detected true / true, F1 their harmonic mean. The 10 % overlap is MSSEG-2016's
detection criterion (Commowick et al. 2018, alpha = 0.1); unlike MSSEG-2016 there is no
minimum lesion size and no rule against one predicted lesion covering several true ones,
so F1 can read higher than MSSEG-2016's on cases with many small, confluent lesions.
Summary values are means over cases (not pooled over lesions). Everything stays at the
site.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance

from fedshift import __version__
from fedshift.bundle.io import ModelBundle
from fedshift.data.layout import Case, discover_site
from fedshift.data.nifti import Volume, read_volume, reorient_to_ras
from fedshift.errors import DataError, UsageError
from fedshift.inference.predict import pick_device
from fedshift.inference.segment import Segmentation, segment_scan
from fedshift.model.metrics import case_metrics, mean_metrics
from fedshift.readiness.checks import grid_findings, integrity_findings

log = logging.getLogger(__name__)

#: metrics of a case, in the order the console table shows them
COLUMNS = (
    "dice",
    "lesion_precision",
    "lesion_recall",
    "lesion_f1",
    "avd",
    "hd95",
    "n_true_lesions",
    "n_pred_lesions",
)
DEFINITION = (
    "lesion-wise detection by overlap (MetricsReloaded; MSSEG-2016's alpha = 10 %): a true "
    "lesion is detected when >= 10 % of its voxels are predicted, a predicted lesion is "
    "correct when >= 10 % of its voxels are lesion; 26-connected components; means over cases"
)


def hd95(pred: np.ndarray, truth: np.ndarray, zooms: tuple[float, ...]) -> float:
    """95th-percentile symmetric Hausdorff distance (mm) of two (X, Y, Z) binary masks by
    ``monai.metrics.compute_hausdorff_distance``; NaN when either mask is empty."""
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if not pred.any() or not truth.any():
        return math.nan
    with warnings.catch_warnings():  # MONAI 1.5 warns about its own internal argument
        warnings.filterwarnings("ignore", "monai.metrics.utils get_mask_edges", FutureWarning)
        value = compute_hausdorff_distance(
            torch.from_numpy(pred)[None, None],
            torch.from_numpy(truth)[None, None],
            include_background=True,
            percentile=95,
            spacing=[float(z) for z in zooms[:3]],
        )
    return float(value.reshape(-1)[0])


def _label(path: Path, seg: Segmentation) -> tuple[np.ndarray, tuple[float, ...]]:
    """A case's label (RAS+, bool) and its voxel sizes, checked against the image grid."""
    label = read_volume(path)
    found = integrity_findings(label, str(path), check_constant=False)
    if not found or all(f.severity != "error" for f in found):
        image = Volume(seg.image_ras, seg.affine_ras, seg.zooms_ras, seg.header, path, ())
        found += grid_findings(image, label, str(path))
    errors = [f for f in found if f.severity == "error"]
    if errors:
        raise DataError(errors[0].code, errors[0].message, str(path))
    return np.asarray(label.data) > 0, tuple(label.zooms[:3])


def score_case(
    bundle: ModelBundle, model: torch.nn.Module, case: Case, device: torch.device
) -> dict[str, Any]:
    """Segment one labelled case and score it; a failure gives a ``failed`` record."""
    record: dict[str, Any] = {"case": case.case_id, "image": str(case.image)}
    if case.label is None:
        return {**record, "status": "failed", "code": "missing_label", "reason": "no label"}
    try:
        seg = segment_scan(bundle, model, case.image, device)
        truth, zooms = _label(case.label, seg)
    except DataError as exc:
        return {**record, "status": "failed", "code": exc.code, "reason": str(exc)}
    except Exception as exc:  # one unforeseen case must not stop the others
        log.exception("evaluate: %s failed", case.image)
        reason = f"{type(exc).__name__}: {exc}"
        return {**record, "status": "failed", "code": "predict_failed", "reason": reason}
    pred, _, _ = reorient_to_ras(seg.mask, seg.affine)
    ev = bundle.seg.eval
    metrics = case_metrics(pred > 0, truth, zooms, ev.detection_overlap, ev.connectivity)
    metrics["hd95"] = hd95(pred > 0, truth, zooms)
    return {**record, "status": "ok", **metrics, "seconds": sum(seg.timings.values())}


def evaluate_site(
    bundle: ModelBundle,
    site_dir: str | os.PathLike[str],
    split: str = "test",
    device: str = "auto",
    progress: bool | None = None,
) -> dict[str, Any]:
    """Score ``bundle`` on the labelled cases of ``split`` of a site folder (nnU-Net layout).

    Returns ``{"summary": {"dice", "lesion_precision", "lesion_recall", "lesion_f1", "avd",
    "avd_percent", "hd95", ..., "n_cases", "n_failed"}, "cases": [...], ...}``.

    Raises
    ------
    UsageError
        the split holds no labelled case.
    """
    from tqdm import tqdm

    if split not in ("test", "train"):
        raise UsageError(f"--split {split!r}: expected test or train")
    layout = discover_site(site_dir)
    cases = [c for c in layout.split(split) if c.label is not None]  # type: ignore[arg-type]
    unlabelled = len(layout.split(split)) - len(cases)  # type: ignore[arg-type]
    if unlabelled:
        log.info("evaluate: %d %s cases have no label and are not scored", unlabelled, split)
    if not cases:
        folder = "labelsTs" if split == "test" else "labelsTr"
        raise UsageError(f"{layout.root} has no labelled {split} case (no {folder}/ labels)")
    torch_device = pick_device(device)
    model = bundle.network.to(torch_device).eval()
    shown = tqdm(
        cases, desc="evaluate", unit="case", disable=None if progress is None else not progress
    )
    records = [score_case(bundle, model, case, torch_device) for case in shown]
    ok = [r for r in records if r["status"] == "ok"]
    summary = mean_metrics([{k: r[k] for k in (*COLUMNS, "avd_percent")} for r in ok])
    summary["n_failed"] = float(len(records) - len(ok))
    return {
        "fedshift_version": __version__,
        "model": str(bundle.root),
        "site": str(layout.root),
        "split": split,
        "threshold": bundle.threshold,
        "definition": DEFINITION,
        "summary": summary,
        "cases": records,
    }


def table(result: dict[str, Any]) -> str:
    """The console table: one row per case, then the mean over cases."""
    head = ["case", "dice", "prec", "recall", "F1", "AVD ml", "HD95 mm", "true", "pred"]
    rows = []
    for r in result["cases"]:
        if r["status"] == "ok":
            rows.append([r["case"], *(_cell(k, r[k]) for k in COLUMNS)])
        else:
            rows.append([r["case"], f"failed ({r['code']})"] + [""] * (len(COLUMNS) - 1))
    rows.append(["mean", *(_cell(k, result["summary"].get(k)) for k in COLUMNS)])
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [head, *rows]
    )


def _cell(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if key.startswith("n_"):
        return f"{float(value):.1f}".removesuffix(".0")
    return f"{float(value):.3f}"
