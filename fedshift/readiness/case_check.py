"""All checks of one case (image channels, label, extra raters), runnable in a worker.

:func:`check_case` is a picklable top-level function taking a :class:`CaseTask` and
returning a :class:`CaseResult`; it never raises on bad data and never writes a file.
Site-level judgements (duplicates, IQM outliers, the level) need every case and are made
afterwards by :mod:`fedshift.readiness.assemble`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from fedshift.data.layout import Case
from fedshift.data.nifti import Volume, read_volume
from fedshift.errors import DataError
from fedshift.findings import Finding, finding
from fedshift.readiness.checks import grid_findings, integrity_findings
from fedshift.readiness.identifiers import header_findings
from fedshift.readiness.iqm import Segmentation, iqms_from_segmentation, segment
from fedshift.readiness.labels import (
    label_stats,
    label_value_findings,
    outside_findings,
    outside_fraction,
    pairwise_dice,
    rater_summary,
)
from fedshift.readiness.site_config import ReadinessSettings

#: the main label's name among raters
MAIN_RATER = "labelsTr"
#: a brain mask smaller than this fraction of the head is not trusted for label checks
MIN_BRAIN_FRACTION = 0.2


@dataclass(frozen=True)
class CaseTask:
    """What a worker needs to check one case."""

    case: Case
    root: Path
    modality: str = "FLAIR"
    settings: ReadinessSettings = field(default_factory=ReadinessSettings)

    def rel(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)


@dataclass
class CaseResult:
    """What the checks of one case found. Stays at the site."""

    case_id: str
    split: str
    findings: list[Finding] = field(default_factory=list)
    image_readable: bool = False
    has_label: bool = False
    digest: str | None = None
    iqms: dict[str, float] | None = None
    label_stats: dict[str, Any] | None = None
    raters: dict[str, Any] | None = None


def image_digest(data: np.ndarray) -> str:
    """Hash of the voxel values (as float32, RAS+) and shape: equal for identical data,
    whatever the file's dtype, compression or storage orientation."""
    values = np.ascontiguousarray(data, dtype=np.float32)
    h = hashlib.sha256(repr(values.shape).encode())
    h.update(values.view(np.uint8).reshape(-1).data)
    return h.hexdigest()[:32]


def _read(path: Path, file: str, found: list[Finding]) -> Volume | None:
    try:
        return read_volume(path)
    except DataError as exc:
        found.append(finding(exc.code, str(exc), file))
        return None


def _has_error(found: list[Finding]) -> bool:
    return any(f.severity == "error" for f in found)


def _check_image(task: CaseTask, path: Path, result: CaseResult) -> tuple[Volume | None, bool]:
    """Read one channel, run header and integrity checks: (volume or None, integrity ok)."""
    file = task.rel(path)
    vol = _read(path, file, result.findings)
    if vol is None:
        return None, False
    result.findings.extend(header_findings(vol.header, file))
    integrity = integrity_findings(vol, file)
    result.findings.extend(integrity)
    return vol, not _has_error(integrity)


def _label_mask(seg: Segmentation) -> np.ndarray:
    """Brain mask (one voxel of margin) for label checks; the head if the brain looks wrong."""
    if np.count_nonzero(seg.brain) < MIN_BRAIN_FRACTION * np.count_nonzero(seg.head):
        return seg.head
    return ndimage.binary_dilation(seg.brain, iterations=1)


def _check_label(
    task: CaseTask, path: Path, image: Volume | None, seg: Segmentation | None, result: CaseResult
) -> Volume | None:
    """Checks of the case's label; returns the label when it is a readable 3D volume."""
    file = task.rel(path)
    label = _read(path, file, result.findings)
    if label is None:
        return None
    result.findings.extend(header_findings(label.header, file))
    result.findings.extend(integrity_findings(label, file, check_constant=False))
    if image is not None:
        result.findings.extend(grid_findings(image, label, file))
    if label.data.ndim != 3:
        return None
    result.findings.extend(label_value_findings(label.data, file))
    mask = np.asarray(label.data) > 0
    same_grid = image is not None and image.data.shape == label.data.shape
    if same_grid and seg is not None:
        fraction = outside_fraction(mask, _label_mask(seg), seg.step)
        result.findings.extend(outside_findings(fraction, file, task.settings.max_outside_fraction))
        result.label_stats = label_stats(mask, label.zooms, seg.image, seg.tissues["wm"], seg.step)
    else:
        result.label_stats = label_stats(mask, label.zooms)
    return label


def _check_raters(task: CaseTask, label: Volume | None, result: CaseResult) -> None:
    """Pairwise Dice of the main label and every extra rater; rater file problems are
    warnings (the file is not trained on), except identifying text."""
    masks: dict[str, np.ndarray] = {}
    if label is not None:
        masks[MAIN_RATER] = np.asarray(label.data) > 0
    shape = label.data.shape if label is not None else None
    for rater, path in sorted(task.case.raters.items()):
        file = task.rel(path)
        found: list[Finding] = []
        vol = _read(path, file, found)
        if vol is not None:
            found.extend(header_findings(vol.header, file))
            found.extend(integrity_findings(vol, file, check_constant=False))
            if label is not None:
                found.extend(grid_findings(label, vol, file, what=f"rater {rater}'s label"))
        result.findings.extend(
            f
            if f.code == "identifying_text" or f.severity != "error"
            else replace(f, severity="warning")
            for f in found
        )
        if vol is not None and vol.data.ndim == 3 and not _has_error(found):
            shape = shape or vol.data.shape
            if vol.data.shape == shape:
                masks[rater] = np.asarray(vol.data) > 0
    if len(masks) >= 2:
        where = task.case.label or next(iter(task.case.raters.values()))
        summary, found = rater_summary(
            pairwise_dice(masks), sorted(masks), task.rel(where), task.settings.min_rater_dice
        )
        result.raters = summary
        result.findings.extend(found)


def _check(task: CaseTask, result: CaseResult) -> None:
    case = task.case
    image, image_ok = _check_image(task, case.image, result)
    seg = None
    if image is not None:
        result.image_readable = True
        for extra in case.images[1:]:
            channel, _ = _check_image(task, extra, result)
            if channel is not None:
                result.findings.extend(grid_findings(image, channel, task.rel(extra), "channel"))
        if image.data.ndim == 3:
            data = image.as_float32()
            result.digest = image_digest(data)
            if image_ok:
                seg = segment(data, image.zooms, task.modality, task.settings.max_iqm_voxels)
                result.iqms = iqms_from_segmentation(seg)
    label = None
    if case.label is not None:
        result.has_label = True
        label = _check_label(task, case.label, image, seg, result)
    if case.raters:
        _check_raters(task, label, result)


def check_case(task: CaseTask) -> CaseResult:
    """Run every per-case check. Never raises: an unforeseen failure becomes a
    ``check_failed`` finding on the case, so one bad case never stops a site's report."""
    result = CaseResult(task.case.case_id, task.case.split)
    try:
        _check(task, result)
    except Exception as exc:  # one unforeseen file must not stop the site's report
        result.findings.append(
            finding(
                "check_failed",
                f"checks stopped on this case: {type(exc).__name__}: {exc}",
                task.rel(task.case.image),
            )
        )
    return result
