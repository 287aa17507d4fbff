"""A site's readiness, run once per data content, and the part of it that may leave.

The full report (:func:`fedshift.readiness.runner.run_readiness`: findings per case, file
names) stays in the site's work folder; :class:`Readiness` is what the site reports.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedshift.data.layout import SiteLayout
from fedshift.data.nifti import ras_voxel_sizes
from fedshift.errors import DataError
from fedshift.readiness.runner import run_readiness

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    """The part of a readiness report that may leave the site."""

    site: str
    level: str
    n_cases: int
    n_usable: int
    labelled: bool
    spacing: tuple[float, float, float] | None = None  # median voxel size (mm, RAS)


def training_spacing(layout: SiteLayout, n: int = 5) -> tuple[float, float, float] | None:
    """Median voxel size (mm, RAS axes) of the site's first ``n`` training images, read
    from their headers (the model package records what the federation trained at);
    ``None`` without a readable training image."""
    sizes = []
    for case in layout.split("train")[:n]:
        try:
            sizes.append(ras_voxel_sizes(case.image))
        except (DataError, OSError):
            continue
    if not sizes:
        return None
    median = np.median(np.asarray(sizes), axis=0)
    return float(median[0]), float(median[1]), float(median[2])


def fingerprint(layout: SiteLayout) -> str:
    """Changes when any file of the site changes (path, size, mtime)."""
    h = hashlib.sha256()
    for path in sorted(p for p in layout.root.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(layout.root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cached_readiness(layout: SiteLayout, out: Path) -> dict[str, Any]:
    """The site's readiness report, run into ``out`` once per data content and read back
    from ``out/readiness.json`` while no file of the site changed (:func:`fingerprint`).
    Stays at the site."""
    stamp = out / "fingerprint.txt"
    current = fingerprint(layout)
    if stamp.is_file() and stamp.read_text() == current and (out / "readiness.json").is_file():
        return json.loads((out / "readiness.json").read_text())
    log.info("site %s: running readiness on %s", layout.name, layout.root)
    report = run_readiness(layout.root, out)
    stamp.write_text(current)
    return report
