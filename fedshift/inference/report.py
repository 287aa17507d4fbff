"""``report.html`` of ``fedshift predict``: a table of the cases and a few slices of each
scan with its lesions outlined and orientation letters (the shared renderer of
:mod:`fedshift.render`). The page stays at the site: it shows patients' scans."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from fedshift import __version__
from fedshift.data.nifti import reorient_to_ras
from fedshift.inference.segment import Segmentation
from fedshift.render.mosaic import render_mosaic
from fedshift.render.pages import num, render
from fedshift.render.png import png_bytes

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: mosaics (three slices each) per case: through its largest lesions
MOSAICS_PER_CASE = 2


def outline(mask: np.ndarray) -> np.ndarray:
    """The voxels of a (X, Y, Z) mask that touch its outside (one-voxel rim)."""
    mask = np.asarray(mask) > 0
    return mask & ~ndimage.binary_erosion(mask)


def case_figures(case: str, seg: Segmentation, height: int = 180) -> list[dict[str, str]]:
    """Up to :data:`MOSAICS_PER_CASE` mosaics (``{"case", "caption", "png_base64"}``)
    through the largest lesions, in RAS+ display order."""
    mask_ras, _, _ = reorient_to_ras(seg.mask, seg.affine)
    rim = outline(mask_ras)
    inverse = np.linalg.inv(seg.affine_ras)
    centres: list[tuple[str, tuple[int, int, int] | None]] = []
    for i, lesion in enumerate(seg.lesions[:MOSAICS_PER_CASE], start=1):
        voxel = inverse @ np.array([*lesion.centroid_mm, 1.0])
        idx = np.clip(np.rint(voxel[:3]), 0, np.asarray(mask_ras.shape) - 1).astype(int)
        where = ", ".join(f"{c:.0f}" for c in lesion.centroid_mm)
        caption = f"{case}: lesion {i}, {lesion.volume_ml:.2f} ml at ({where}) mm"
        centres.append((caption, (int(idx[0]), int(idx[1]), int(idx[2]))))
    if not centres:
        centres.append((f"{case}: no lesion found (middle of the scan)", None))
    figures = []
    zooms = np.sqrt((seg.affine_ras[:3, :3] ** 2).sum(axis=0))
    for caption, centre in centres:
        rgb = render_mosaic(
            seg.image_ras, rim, tuple(zooms), center=centre, height=height, affine=seg.affine_ras
        )
        data = base64.b64encode(png_bytes(rgb)).decode("ascii")
        figures.append({"case": case, "caption": caption, "png_base64": data})
    return figures


def predict_report(summary: Mapping[str, Any], figures: Sequence[Mapping[str, str]]) -> str:
    """The page for ``predict.json``'s content and the cases' figures."""
    model = summary["model"]
    cases = summary["cases"]
    ok = [c for c in cases if c["status"] == "ok"]
    sites = model.get("sites") or {}
    spacing = (model.get("input") or {}).get("spacing_mm", [])
    note = ""
    if model.get("intensity_alignment") and not model.get("intensity_map"):
        note = (
            "The federation trained on intensity-aligned scans, and this package holds no "
            "site intensity map: use the package of the site the scans come from."
        )
    return render(
        TEMPLATES,
        "predict.html.j2",
        version=__version__,
        n_ok=len(ok),
        n_cases=len(cases),
        n_failed=len(cases) - len(ok),
        device=summary["device"],
        seconds=summary["seconds"],
        package=model["package"],
        model_version=model.get("version"),
        created=model.get("created"),
        threshold=model.get("threshold"),
        spacing=" x ".join(num(float(s), 2) for s in spacing),
        sites=", ".join(f"{k} ({v} cases)" for k, v in sites.items()) or "unknown sites",
        val_dice=model.get("val_dice"),
        intensity_note=note,
        rows=[
            [
                c["case"],
                c["n_lesions"],
                num(c["volume_ml"], 2),
                " x ".join(str(n) for n in c["shape"]),
                " x ".join(num(z, 2) for z in c["spacing_mm"]),
                c["orientation"],
                num(sum(c["timings_s"].values()), 1),
            ]
            for c in ok
        ],
        failed=[[c["case"], c["code"], c["reason"], c["input"]] for c in cases if c not in ok],
        figures=list(figures),
    )
