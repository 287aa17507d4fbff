"""The picture a site keeps of one test case: its label beside the global model's
prediction. Stays in the site's work folder; never sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedshift.data.nifti import read_volume
from fedshift.render.mosaic import label_center, render_mosaic
from fedshift.render.png import write_png


def write_overlay(item: dict[str, Any], pred: np.ndarray, out: Path) -> None:
    """Write the truth | prediction mosaic of one case to ``out`` (PNG).

    Parameters
    ----------
    item : the case's item (``{"image", "label"}``, paths)
    pred : (X, Y, Z) bool, the predicted lesion voxels in the image's grid
    out : where the PNG goes (its folder is made)
    """
    image = read_volume(item["image"])
    truth = read_volume(item["label"]).as_float32() > 0.5
    center = label_center(truth)
    panels = [
        render_mosaic(image.as_float32(), m, image.zooms, center=center) for m in (truth, pred)
    ]
    gap = np.zeros((panels[0].shape[0], 8, 3), dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, np.concatenate([panels[0], gap, panels[1]], axis=1))
