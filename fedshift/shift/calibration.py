"""Rater calibration: a site's annotations of shared calibration cases against a published
reference standard.

Comparing a site's labels with the global model's predictions (the ``annotation``
descriptors) is relative: it says how the site's raters differ from the federation's
mix of raters, and when the federation's raters split evenly (two that annotate small
lesions, two that do not) there is no majority to call "unshifted"
(``runs/diag5-seed0/annotation``). Multi-centre studies settle this with calibration
cases: the same few public images, annotated by every centre's raters and compared with
a reference standard. A site that has them keeps them in its folder::

    SITE/calibration/images/<case>_0000.nii.gz   the shared calibration images
    SITE/calibration/reference/<case>.nii.gz      the published reference standard
    SITE/calibration/labels/<case>.nii.gz         this site's raters' annotation of them

The images and the reference are public (the same at every site); the site's labels of
them are not patient data. What the site reports are three scalars
(:class:`Calibration`): mean log ratios of its lesion volume and count to the
reference's, per case, and the Dice of its labels against the reference. Being measured
against a fixed standard, they do not depend on the other sites, the global model or the
site's scanner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedshift.data.layout import scan_calibration
from fedshift.data.nifti import read_volume
from fedshift.errors import DataError
from fedshift.model.metrics import dice
from fedshift.shift.descriptors import annotation


@dataclass(frozen=True)
class Calibration:
    """A site's annotation of the calibration cases against the reference standard.

    Attributes
    ----------
    cases : how many calibration cases the site annotated
    volume : mean over cases of ``log((label mL + 0.1) / (reference mL + 0.1))``: > 0 the
        site's raters draw lesions larger than the standard
    count : mean over cases of ``log((label lesions + 1) / (reference lesions + 1))``: < 0
        they annotate fewer lesions (misses small ones)
    dice : mean voxel Dice against the reference
    """

    cases: int
    volume: float
    count: float
    dice: float


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
