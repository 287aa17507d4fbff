"""Measuring a site's rater calibration from its calibration folder (reads its files).

The result, :class:`fedshift.shift.calibration.Calibration`, and what it means are in
:mod:`fedshift.shift.calibration`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedshift.data.layout import scan_calibration
from fedshift.data.nifti import read_volume
from fedshift.errors import DataError
from fedshift.model.metrics import dice
from fedshift.shift.calibration import Calibration
from fedshift.shift.case_descriptors import annotation


def measure_calibration(site_dir: str | Path) -> Calibration | None:
    """The site's :class:`Calibration`, or ``None`` without calibration labels.

    Raises
    ------
    DataError
        code ``calibration`` for a label without a reference or with another grid.
    """
    pairs, problems = scan_calibration(Path(site_dir))
    if problems:
        raise DataError("calibration", problems[0].message, problems[0].file)
    rows, dices = [], []
    for case, label_path, reference_path in pairs:
        label, reference = read_volume(label_path), read_volume(reference_path)
        if label.data.shape != reference.data.shape or not np.allclose(
            label.affine, reference.affine, atol=1e-3
        ):
            raise DataError(
                "calibration",
                f"calibration label {case!r} is on another grid than its reference "
                f"(shape {label.data.shape} vs {reference.data.shape})",
                str(label_path),
            )
        mine, standard = label.data > 0, reference.data > 0
        rows.append(annotation(mine, standard, reference.zooms))
        dices.append(dice(mine, standard))
    if not rows:
        return None
    return Calibration(
        cases=len(rows),
        volume=float(np.mean([r["volume_agreement"] for r in rows])),
        count=float(np.mean([r["count_agreement"] for r in rows])),
        dice=float(np.mean(dices)),
    )
