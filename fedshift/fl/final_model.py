"""The end of a run: the final global model as a package at the coordinator
(``RUN/model``, :mod:`fedshift.bundle`) and at every site (``WORK/model``, with the site's
own intensity map), sent in one last message to each site.

The package records what the federation knows of its model: the decision threshold the
labelled sites tuned on validation (the one sites without labels are scored with), the
training case count of each site that trained, the mean validation Dice, the voxel size
the sites' images are at (from their readiness answers: training never resamples), the
federation's intensity histogram when sites aligned intensities, and, with secure
statistics, the federation's whole reference under the final model (``RUN/reference.npz``
of the last statistics round: class-conditional embedding Gaussians, intensity and
lesion-load histograms, descriptor sums; sums over >= 3 sites), which a site needs to
adapt the model on its own images later (``fedshift adapt``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fedshift.bundle import IntensityReference, run_config_hash, write_bundle
from fedshift.errors import FedShiftError
from fedshift.fl import keys
from fedshift.fl.grid import SiteInfo, send
from fedshift.fl.records import to_arrays
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunFolder, RunState

log = logging.getLogger("fedshift.coordinator")


def training_spacing(sites: dict[int, SiteInfo]) -> tuple[float, float, float]:
    """Median voxel size (mm, RAS) over the labelled sites that reported one."""
    spacings = [s.spacing for s in sites.values() if s.labelled and s.spacing]
    if not spacings:
        raise FedShiftError("no labelled site reported the voxel size of its training images")
    if len({tuple(np.round(s, 3)) for s in spacings}) > 1:
        log.warning("the sites' voxel sizes differ (%s); the package records the median", spacings)
    median = np.median(np.asarray(spacings, dtype=float), axis=0)
    return float(median[0]), float(median[1]), float(median[2])


def describe_package(
    folder: RunFolder,
    state: RunState,
    sites: dict[int, SiteInfo],
    val_dice: float | None,
    cfg: RunConfig,
) -> dict[str, Any]:
    """The package's description (:func:`fedshift.bundle.write_bundle`'s keyword arguments
    other than the weights and ``seg_cfg``), as JSON values."""
    final = state.record.final
    if final is None or final.target_threshold is None:
        raise FedShiftError("the final evaluation tuned no threshold: no model package")
    last = state.record.rounds[-1].sites if state.record.rounds else {}
    cases = {
        name: int(m.get("train_num-examples") or 0)
        for name, m in last.items()
        if (m.get("train_num-examples") or 0) > 0
    }
    package: dict[str, Any] = {
        "threshold": float(final.target_threshold),
        "sites": cases,
        "val_dice": val_dice,
        "run_config_hash": run_config_hash(cfg),
        "spacing": list(training_spacing(sites)),
        "source": {"run": str(folder.root.resolve()), "round": state.last_round},
    }
    if cfg.fed.align_intensity:
        arrays = folder.load_arrays("reference.npz")
        if arrays is None:
            raise FedShiftError(f"{folder.root / 'reference.npz'} is missing: no package")
        package["intensity_reference"] = IntensityReference.from_reference(arrays).as_dict()
    if cfg.fed.secure_stats:
        arrays = folder.load_arrays("reference.npz")
        if arrays is None:
            raise FedShiftError(f"{folder.root / 'reference.npz'} is missing: no package")
        package["reference"] = {name: value.tolist() for name, value in arrays.items()}
    return package


def write_global_package(
    folder: RunFolder, weights: list[np.ndarray], package: dict[str, Any], cfg: RunConfig
) -> None:
    """``RUN/model``."""
    args = dict(package)
    reference = args.pop("intensity_reference", None)
    if reference is not None:
        args["intensity_reference"] = IntensityReference(
            np.asarray(reference["edges"], float), np.asarray(reference["pmf"], float)
        )
    path = write_bundle(folder.model_dir, weights=weights, seg_cfg=cfg.seg, **args)
    log.info("final model package: %s", path)


def deliver_model(
    grid: Grid,
    sites: dict[int, SiteInfo],
    weights: list[np.ndarray],
    package: dict[str, Any],
    cfg: RunConfig,
) -> dict[str, str]:
    """Send the final model to every site, which keeps it with its own intensity map;
    returns site -> where it keeps it (sites that failed are logged)."""
    config = ConfigRecord({keys.PACKAGE: json.dumps(package)})
    msgs = [
        Message(
            RecordDict({keys.ARRAYS: to_arrays(weights), keys.CONFIG: config}),
            dst_node_id=node,
            message_type=keys.QUERY_MODEL,
        )
        for node in sorted(sites)
    ]
    kept = {}
    for reply in send(grid, msgs, cfg.fed.timeout_s, "final model to the sites"):
        site = reply.content.config_records[keys.SITE]
        kept[str(site[keys.SITE_NAME])] = str(site[keys.MODEL_DIR])
    for name, path in sorted(kept.items()):
        log.info("site %s keeps the model in %s", name, path)
    return kept


def finish_with_package(
    grid: Grid,
    folder: RunFolder,
    state: RunState,
    sites: dict[int, SiteInfo],
    val_dice: float | None,
    cfg: RunConfig,
) -> None:
    """Write ``RUN/model`` and send the model to every site."""
    assert state.weights is not None
    package = describe_package(folder, state, sites, val_dice, cfg)
    write_global_package(folder, state.weights, package, cfg)
    deliver_model(grid, sites, state.weights, package, cfg)
