"""Findings: the one vocabulary for problems found in a site's data.

Readiness, the data layout scanner and the NIfTI reader all report problems as
:class:`Finding` objects whose ``code`` is one of :data:`CODES`. A finding stays at the
site: only counts and the readiness level ever leave the hospital.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]

#: code -> (default severity, what it means)
CODES: dict[str, tuple[Severity, str]] = {
    "unreadable": (
        "error",
        "not a NIfTI file, corrupt or truncated, or claims more data than it holds",
    ),
    "non_finite": ("error", "NaN or infinite voxel values"),
    "not_3d": ("error", "image is not a 3D volume"),
    "bad_affine": ("error", "affine is singular, zero or not finite"),
    "bad_spacing": ("error", "voxel sizes are zero, negative, absurd or extremely anisotropic"),
    "constant_image": ("error", "every voxel has the same value"),
    "missing_label": ("error", "a training image has no label file"),
    "missing_image": ("error", "a label file has no image"),
    "shape_mismatch": ("error", "image and label have different shapes"),
    "affine_mismatch": ("error", "image and label are not on the same voxel grid in space"),
    "label_values": ("error", "label holds values other than 0 and 1"),
    "empty_label": ("warning", "label has no foreground voxel"),
    "identifying_text": ("error", "header text looks like a name, date or identifier"),
    "duplicate": ("error", "identical voxel data in two cases"),
    "iqm_outlier": ("error", "an image quality metric is far from the site's (robust z-score)"),
    "label_outside_brain": ("error", "label voxels lie outside the head"),
    "rater_disagreement": ("warning", "raters of the same case disagree strongly"),
    "unstructured": ("error", "the folder is not in nnU-Net v2 raw layout"),
    "unlabelled_site": ("info", "the site has no training labels (a target site)"),
    "calibration": (
        "warning",
        "a calibration label cannot be compared with the reference standard (not used)",
    ),
    "unexpected_file": ("warning", "a file in the layout that FedShift does not use"),
    "attestation_missing": ("warning", "a human attestation is not given in the site config"),
    "unusual_input": ("info", "valid but unusual input, handled"),
    "check_failed": ("error", "a check could not run on this file; see the message"),
}


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about one file or the whole site.

    Parameters
    ----------
    code : one of :data:`CODES`.
    severity : ``"error"`` makes the case unusable; warnings and infos do not.
    message : one sentence for a person, naming the value that is wrong.
    file : the file concerned, relative to the site folder, or ``None`` for the site.
    """

    code: str
    severity: Severity
    message: str
    file: str | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code!r}; known: {sorted(CODES)}")
        if self.severity not in ("error", "warning", "info"):
            raise ValueError(f"severity must be error, warning or info, got {self.severity!r}")

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def finding(
    code: str, message: str, file: str | None = None, severity: Severity | None = None
) -> Finding:
    """Build a finding with the code's default severity unless one is given."""
    return Finding(code, severity or CODES[code][0], message, file)
