"""Rater calibration: a site's annotations of shared calibration cases against a published
reference standard.

Comparing a site's labels with the global model's predictions (the ``annotation``
descriptors) is relative: it says how the site's raters differ from the federation's
mix of raters, and when the federation's raters split evenly (two that annotate small
lesions, two that do not) there is no majority to call "unshifted"
(``docs/results/diagnosis-validation.md``). Multi-centre studies settle this with calibration
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
