"""The model a site uses: the federation's final model package plus the site's own
intensity map, kept in the site's work folder (``WORK/model``; in a simulation
``RUN/sites/<site>/model``). Written once the coordinator sends the final model.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedshift.bundle import IntensityReference, site_bundle, write_bundle
from fedshift.site.worker import SiteWorker

log = logging.getLogger(__name__)

#: the folder in a site's work folder that holds the model it uses
MODEL_DIR = "model"


def keep_model(
    worker: SiteWorker, weights: Sequence[np.ndarray], package: Mapping[str, Any]
) -> Path:
    """Write ``WORK/model``: the global package described by ``package`` (the keyword
    arguments of :func:`fedshift.bundle.write_bundle` other than the weights and the
    settings, as the coordinator sent them) with ``weights``, plus this site's intensity
    map when it aligns intensities. Atomic: a reader sees the old package or the new one."""
    args = dict(package)
    reference = args.pop("intensity_reference", None)
    if reference is not None:
        args["intensity_reference"] = IntensityReference(
            np.asarray(reference["edges"], float), np.asarray(reference["pmf"], float)
        )
    out = worker.work_dir / MODEL_DIR
    staging = Path(tempfile.mkdtemp(prefix=".model-global.", dir=worker.work_dir))
    try:
        write_bundle(staging / "global", weights=list(weights), seg_cfg=worker.seg, **args)
        site_bundle(staging / "global", out, worker.intensity_map(), site=worker.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("site %s: the federation's model is in %s", worker.name, out)
    return out
