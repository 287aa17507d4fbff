"""A model package from a finished run folder (runs made before the coordinator wrote
packages itself).

Reads ``RUN/config.yaml`` (as plain YAML: older and newer runs alike), the last
checkpoint (``RUN/checkpoints/state.json`` + ``round_NNN.npz``), ``RUN/metrics.json``
and ``RUN/reference.npz`` when the run had secure statistics (the package keeps the
federation's reference, and its intensity histogram when intensity alignment was on).
Every value read from metrics.json goes through :func:`run_summary`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from fedshift.bundle.io import write_bundle
from fedshift.bundle.layout import IntensityReference, run_config_hash, seg_from_dict
from fedshift.errors import BundleError, FedShiftError
from fedshift.shift.reference import Reference

log = logging.getLogger(__name__)

#: metric keys of a site's reply, as the coordinator prefixes them per round
_TRAIN_CASES = "train_num-examples"


def _get(node: Any, *path: str, default: Any = None) -> Any:
    """``node[path[0]][path[1]]...`` through dicts or attributes (typed records alike);
    ``default`` where a step is missing."""
    for key in path:
        node = node.get(key, default) if isinstance(node, Mapping) else getattr(node, key, default)
        if node is default:
            return default
    return node


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class RunSummary:
    """What a package needs from a run's metrics.

    Attributes
    ----------
    threshold : lesion-probability cut of the final evaluation (None: not found).
    threshold_source : where ``threshold`` came from, in words.
    sites : site -> training cases of the last round (sites that trained).
    val_dice : mean validation Dice of the labelled sites in the last round.
    """

    threshold: float | None
    threshold_source: str
    sites: dict[str, int]
    val_dice: float | None


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def run_summary(metrics: Any) -> RunSummary:
    """Threshold, training sites and validation Dice from a run's metrics.

    The threshold is the final evaluation's ``final.target_threshold`` (the mean of the
    thresholds the labelled sites tuned on their validation cases); failing that, the
    mean of the labelled sites' final thresholds, then of the last round's validation
    thresholds.
    """
    rounds = _get(metrics, "rounds", default=[]) or []
    last = _get(rounds[-1], "sites", default={}) if rounds else {}
    threshold, source = (
        _finite(_get(metrics, "final", "target_threshold")),
        ("final evaluation: mean of the thresholds the labelled sites tuned on validation"),
    )
    if threshold is None:
        finals = _get(metrics, "final", "sites", default={}) or {}
        threshold = _mean([_finite(_get(m, "threshold")) for m in finals.values()])
        source = "mean of the labelled sites' final thresholds"
    if threshold is None:
        threshold = _mean(
            [
                _finite(_get(m, "val_threshold"))
                for m in last.values()
                if (_finite(_get(m, "val_n_cases")) or 0) > 0
            ]
        )
        source = "mean of the labelled sites' validation thresholds in the last round"
    sites: dict[str, int] = {}
    for name, m in last.items():
        cases = _finite(_get(m, _TRAIN_CASES))
        if cases:
            sites[str(name)] = int(cases)
    if not sites:  # no training record: the readiness counts of the sites that trained
        for name, r in (_get(metrics, "readiness", default={}) or {}).items():
            if _get(r, "trains"):
                sites[str(name)] = int(_finite(_get(r, "n_usable")) or 0)
    val_dice = _mean(
        [
            _finite(_get(m, "val_dice"))
            for m in last.values()
            if (_finite(_get(m, "val_n_cases")) or 0) > 0
        ]
    )
    return RunSummary(threshold, source, sites, val_dice)


def training_spacing(config: Mapping[str, Any]) -> tuple[tuple[float, float, float], str]:
    """The voxel size the run trained at, and where it was read.

    From the labelled site folders the config names (one image header each; the median
    per axis when sites differ), else from the synthetic scenario's ``voxel_mm``.

    Raises
    ------
    BundleError
        neither is available.
    """
    from fedshift.data.layout import discover_site
    from fedshift.data.nifti import ras_voxel_sizes

    spacings = []
    for folder in _get(config, "data", "sites", default=[]) or []:
        if not Path(folder).is_dir():
            continue
        cases = discover_site(folder).split("train")
        if cases:
            spacings.append(ras_voxel_sizes(cases[0].image))
    if spacings:
        if len({tuple(np.round(s, 3)) for s in spacings}) > 1:
            log.warning("the sites' voxel sizes differ (%s); the package uses the median", spacings)
        median = np.median(np.asarray(spacings), axis=0)
        return (float(median[0]), float(median[1]), float(median[2])), "training site images"
    if not _get(config, "data", "sites"):
        from fedshift.config import find_preset, load_config
        from fedshift.data.synth.config import SynthConfig

        scenario = str(_get(config, "data", "scenario", default="default"))
        overrides = [f"seed={_get(config, 'seed', default=0)}"]
        overrides += list(_get(config, "data", "synth_overrides", default=[]) or [])
        try:
            synth = load_config(SynthConfig, [find_preset(scenario, "scenarios")], overrides)
        except FedShiftError as exc:
            raise BundleError(f"cannot read the synthetic scenario's voxel size: {exc}") from None
        v = float(synth.voxel_mm)
        return (v, v, v), f"synthetic scenario {scenario!r} (voxel_mm)"
    raise BundleError(
        "cannot tell the training voxel size: the run's site folders are gone; pass spacing"
    )


def _last_checkpoint(state_path: Path) -> tuple[int, list[np.ndarray]]:
    """(last finished round, global weights after it) of a run's ``checkpoints/state.json``
    and the ``round_NNN.npz`` it names (``arr_0``, ``arr_1``... in state-dict order)."""
    try:
        state = json.loads(state_path.read_text())
        weights_path = state_path.parent / str(state["weights"])
        with np.load(weights_path) as npz:
            weights = [npz[f"arr_{i}"] for i in range(len(npz.files))]
        return int(state["last_round"]), weights
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{state_path}: the last checkpoint cannot be read: {exc}") from None


def _reference_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of ``RUN/reference.npz`` (None when the run wrote none)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return {key: data[key].copy() for key in data.files}
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path} is not readable: {exc}") from None


def _complete_reference(arrays: dict[str, np.ndarray] | None) -> Reference | None:
    """The whole reference when ``arrays`` hold one (an older run's file may hold only
    the intensity histogram: the package then goes without)."""
    if arrays is None:
        return None
    try:
        return Reference.from_arrays(arrays)
    except (ValueError, KeyError, IndexError) as exc:
        log.info("reference.npz is not a whole reference (%s); the package goes without", exc)
        return None


def bundle_from_run(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    spacing: Sequence[float] | None = None,
) -> Path:
    """Write the package of a finished run's final global model at ``out_dir``.

    ``spacing`` (mm) overrides :func:`training_spacing`. Raises :class:`BundleError`
    naming the file when the run folder lacks its config, checkpoint or metrics.
    """
    run = Path(run_dir)
    config_path, metrics_path = run / "config.yaml", run / "metrics.json"
    state_path = run / "checkpoints" / "state.json"
    for path in (config_path, metrics_path, state_path):
        if not path.is_file():
            raise BundleError(f"{path} is missing: {run} is not a finished run folder")
    config = OmegaConf.to_container(OmegaConf.load(config_path))
    if not isinstance(config, dict) or not isinstance(config.get("seg"), dict):
        raise BundleError(f"{config_path} has no seg section")
    seg = seg_from_dict(config["seg"], str(config_path))
    last_round, weights = _last_checkpoint(state_path)
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{metrics_path} is not readable JSON: {exc}") from None
    summary = run_summary(metrics)
    threshold, source = summary.threshold, summary.threshold_source
    if threshold is None:
        threshold, source = seg.eval.threshold, "the configured default (no tuned threshold found)"
        log.warning("%s: no tuned threshold in metrics.json; using %.2f", run, threshold)
    if spacing is None:
        spacing, spacing_source = training_spacing(config)
    else:
        spacing_source = "given"
    arrays = _reference_arrays(run / "reference.npz")
    intensity = None
    if _get(config, "fed", "align_intensity") and arrays is not None:
        intensity = IntensityReference.from_reference(arrays)
    return write_bundle(
        out_dir,
        weights=weights,
        seg_cfg=seg,
        threshold=threshold,
        sites=summary.sites,
        val_dice=summary.val_dice,
        run_config_hash=run_config_hash(config),
        spacing=spacing,
        intensity_reference=intensity,
        threshold_source=source,
        reference=_complete_reference(arrays),
        source={
            "run_dir": str(run.resolve()),
            "round": last_round,
            "spacing_from": spacing_source,
        },
    )
