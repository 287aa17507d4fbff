"""Write and load model packages (see :mod:`fedshift.bundle.layout` for the layout).

A package is written whole into a hidden folder next to ``out_dir`` and then renamed, so
a reader never sees half a package; an existing package at ``out_dir`` is replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedshift import __version__
from fedshift.bundle.layout import (
    BUNDLE_FORMAT,
    INFERENCE,
    INFERENCE_YAML,
    INTENSITY_MAP,
    LABEL_MAP,
    METADATA,
    ORIENTATION,
    REFERENCE,
    WEIGHTS,
    IntensityReference,
    major,
    monai_metadata,
    read_metadata,
    seg_from_dict,
    seg_to_dict,
)
from fedshift.bundle.reference import (
    load_reference,
    reference_arrays,
    reference_summary,
    save_reference,
)
from fedshift.errors import BundleError
from fedshift.model.config import SegConfig
from fedshift.model.network import SegNet, build_network
from fedshift.model.preprocess import file_digest
from fedshift.shift.intensity import IntensityMap
from fedshift.shift.reference import Reference

Weights = Sequence[np.ndarray] | Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """A loaded, checked model package.

    Attributes
    ----------
    root : the package folder.
    network : the :class:`SegNet` with the package's weights, on the CPU, in eval mode.
    seg : the segmentation settings it was trained with (network, preprocessing, sliding
        window; augmentation and alignment keep their defaults).
    threshold : the lesion-probability cut.
    spacing : (3,) voxel size (mm) of the model's grid, in RAS axis order.
    orientation : axis codes of the arrays the network saw (``"RAS"``).
    intensity_map : the site's own intensity map (site packages), else None.
    metadata : the whole ``configs/metadata.json``.
    reference : the federation's reference (:mod:`fedshift.bundle.reference`), else None
        (a run without secure statistics, or a package written before packages kept it).
    """

    root: Path
    network: SegNet
    seg: SegConfig
    threshold: float
    spacing: tuple[float, float, float]
    orientation: str
    intensity_map: IntensityMap | None
    metadata: dict[str, Any]
    reference: Reference | None = None

    @property
    def info(self) -> dict[str, Any]:
        """The ``fedshift`` section of the metadata."""
        return self.metadata["fedshift"]


def state_dict_of(weights: Weights, seg: SegConfig) -> OrderedDict[str, torch.Tensor]:
    """Named CPU tensors in the network's order, checked against the network's shapes."""
    own = build_network(seg.model).state_dict()
    if isinstance(weights, Mapping):
        arrays = [weights.get(name) for name in own]
        if any(a is None for a in arrays) or len(weights) != len(own):
            raise BundleError(
                f"weights do not match seg.model: missing {sorted(set(own) - set(weights))[:3]}, "
                f"unexpected {sorted(set(weights) - set(own))[:3]}"
            )
    else:
        arrays = list(weights)
        if len(arrays) != len(own):
            raise BundleError(f"got {len(arrays)} weight arrays, seg.model has {len(own)}")
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (name, ref), value in zip(own.items(), arrays, strict=True):
        tensor = torch.as_tensor(np.asarray(value)).to(ref.dtype)
        if tuple(tensor.shape) != tuple(ref.shape):
            raise BundleError(
                f"weight {name!r} has shape {tuple(tensor.shape)}, seg.model expects "
                f"{tuple(ref.shape)}"
            )
        out[name] = tensor.clone()
    return out


def replace_folder(tmp: Path, out_dir: Path) -> None:
    """Move the finished ``tmp`` folder to ``out_dir`` (an old package there is removed)."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_package(
    out_dir: Path,
    state: Mapping[str, torch.Tensor],
    meta_for: Any,
    intensity_map: IntensityMap | None,
    reference: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Assemble a package in a hidden folder next to ``out_dir``, then rename it there.

    ``meta_for(files)`` returns the whole metadata given the files written and their
    checksums; ``reference`` holds checked arrays (:func:`fedshift.bundle.reference.
    reference_arrays`). Every package writer of :mod:`fedshift.bundle` ends here.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        (tmp / "configs").mkdir()
        (tmp / "models").mkdir()
        torch.save(dict(state), tmp / WEIGHTS)
        files = {"weights": WEIGHTS, "weights_sha256": file_digest(tmp / WEIGHTS)}
        if intensity_map is not None:
            np.savez(tmp / INTENSITY_MAP, x=intensity_map.x, y=intensity_map.y)
            files["intensity_map"] = INTENSITY_MAP
            files["intensity_map_sha256"] = file_digest(tmp / INTENSITY_MAP)
        if reference is not None:
            save_reference(tmp / REFERENCE, reference)
            files["reference"] = REFERENCE
            files["reference_sha256"] = file_digest(tmp / REFERENCE)
        (tmp / METADATA).write_text(json.dumps(meta_for(files), indent=1))
        (tmp / INFERENCE).write_text(INFERENCE_YAML)
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def write_bundle(
    out_dir: str | os.PathLike[str],
    *,
    weights: Weights,
    seg_cfg: SegConfig,
    threshold: float,
    sites: Mapping[str, int],
    val_dice: float | None,
    run_config_hash: str,
    spacing: Sequence[float],
    intensity_reference: IntensityReference | None = None,
    threshold_source: str = "tuned on the labelled sites' validation cases",
    source: Mapping[str, Any] | None = None,
    reference: Any = None,
) -> Path:
    """Write the federation's global model as a package at ``out_dir``.

    Parameters
    ----------
    weights : the global weights, as :func:`fedshift.model.network.get_weights` (list, the
        state-dict order) or :func:`~fedshift.model.network.get_state` (named) gives them.
    seg_cfg : the run's ``seg`` settings.
    threshold : the lesion-probability cut (the final evaluation's tuned threshold).
    sites : site name -> training cases it contributed.
    val_dice : the federation's mean validation Dice of the final model (None: unknown).
    run_config_hash : :func:`fedshift.bundle.layout.run_config_hash` of the run config.
    spacing : (3,) voxel size (mm, RAS axis order) of the images the model trained on.
    intensity_reference : the federation's intensity histogram when
        ``fed.align_intensity`` was on (sites then map onto it before the network).
    source : where the model came from (e.g. run folder, round), recorded as is.
    reference : the federation's reference under these weights (a
        :class:`~fedshift.shift.reference.Reference` or its ``to_arrays()``, lists allowed),
        kept as ``models/reference.npz`` for ``fedshift adapt``; None: the run had none.

    Returns the package folder. Raises :class:`BundleError` when the weights do not fit
    ``seg_cfg.model``, the reference does not fit its embeddings, or a value is out of range.
    """
    seg_cfg.validate()
    if not 0.0 < float(threshold) < 1.0:
        raise BundleError(f"threshold={threshold!r} is not in (0, 1)")
    spacing = [float(s) for s in spacing]
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise BundleError(f"spacing={spacing!r} is not three positive voxel sizes in mm")
    state = state_dict_of(weights, seg_cfg)
    ref_arrays, ref_summary = None, None
    if reference is not None:
        ref_arrays = reference_arrays(reference, seg_cfg.model.feat_dim)
        ref_summary = reference_summary(Reference.from_arrays(ref_arrays))
    info: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "version": __version__,
        "run_config_hash": str(run_config_hash),
        "label_map": dict(LABEL_MAP),
        "input": {"channels": ["FLAIR"], "spacing_mm": spacing, "orientation": ORIENTATION},
        "threshold": float(threshold),
        "threshold_source": threshold_source,
        "sites": {str(k): int(v) for k, v in sorted(sites.items())},
        "val_dice": None if val_dice is None or not np.isfinite(val_dice) else float(val_dice),
        "preprocessing": asdict(seg_cfg.preprocess),
        "intensity_alignment": intensity_reference is not None,
        "intensity_reference": intensity_reference.as_dict() if intensity_reference else None,
        "seg": seg_to_dict(seg_cfg),
        "site": None,
        "source": dict(source or {}),
        "reference": ref_summary,
    }
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return write_package(
        Path(out_dir),
        state,
        lambda files: json.loads(
            json.dumps(monai_metadata(seg_cfg, {**info, "files": files}, created))
        ),
        None,
        ref_arrays,
    )


def _check_version(info: Mapping[str, Any], path: Path) -> None:
    fmt = info.get("format")
    if fmt != BUNDLE_FORMAT:
        raise BundleError(
            f"{path}: package format {fmt!r}, this FedShift reads format {BUNDLE_FORMAT}"
        )
    version = str(info.get("version", "?"))
    if major(version) != major(__version__):
        raise BundleError(
            f"{path}: written by FedShift {version}, another major version than this "
            f"FedShift {__version__}; use a FedShift {major(version)}.x to read it"
        )


def _required(root: Path, rel: str) -> Path:
    path = root / rel
    if not path.is_file():
        raise BundleError(f"{path} is missing from the model package {root}")
    return path


def _verify(path: Path, info: Mapping[str, Any], key: str) -> None:
    """Refuse a file whose content differs from the checksum the metadata records (checked
    after loading, so that a wrong shape is reported as such)."""
    expected = info.get("files", {}).get(f"{key}_sha256")
    if expected and file_digest(path) != expected:
        raise BundleError(f"{path} differs from the checksum in {METADATA} (modified or truncated)")


def _load_weights(path: Path, seg: SegConfig) -> SegNet:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BundleError(f"{path} is not a readable torch state dict: {exc}") from None
    tensors = isinstance(state, Mapping) and all(
        isinstance(v, torch.Tensor) for v in state.values()
    )
    if not tensors:
        raise BundleError(f"{path} does not hold a state dict of tensors")
    model = build_network(seg.model)
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise BundleError(
            f"{path} does not fit the network in {METADATA}: missing {missing[:3]}, "
            f"unexpected {extra[:3]}"
        )
    for name, ref in own.items():
        if tuple(state[name].shape) != tuple(ref.shape):
            raise BundleError(
                f"{path}: tensor {name!r} has shape {tuple(state[name].shape)}, the network "
                f"in {METADATA} expects {tuple(ref.shape)}"
            )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model.eval()


def _load_intensity_map(path: Path) -> IntensityMap:
    try:
        with np.load(path) as data:
            x, y = np.asarray(data["x"], float), np.asarray(data["y"], float)
    except Exception as exc:
        raise BundleError(f"{path} is not a readable intensity map: {exc}") from None
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise BundleError(f"{path}: knots x {x.shape} and y {y.shape} do not form a map")
    return IntensityMap(x=x, y=y)


def load_bundle(root: str | os.PathLike[str]) -> ModelBundle:
    """Load and check a package.

    Raises
    ------
    BundleError
        naming the file: a missing file, metadata of another format or major FedShift
        version, a checksum that differs, or a tensor whose shape does not fit the network
        the metadata describes.
    """
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"model package {str(root)!r} is not a folder")
    meta = read_metadata(root)
    meta_path = root / METADATA
    info = meta["fedshift"]
    _check_version(info, meta_path)
    try:
        threshold = float(info["threshold"])
        spacing = tuple(float(s) for s in info["input"]["spacing_mm"])
        orientation = str(info["input"].get("orientation", "RAS"))
        seg_tree = info["seg"]
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{meta_path} lacks or garbles {exc}") from None
    if not 0.0 < threshold < 1.0 or len(spacing) != 3 or min(spacing) <= 0:
        raise BundleError(f"{meta_path}: threshold {threshold} or spacing {spacing} out of range")
    if orientation != ORIENTATION:
        raise BundleError(f"{meta_path}: orientation {orientation!r}, expected {ORIENTATION!r}")
    seg = seg_from_dict(seg_tree, str(meta_path))
    if not (root / INFERENCE).is_file():
        raise BundleError(f"{root / INFERENCE} is missing from the model package {root}")
    weights = _required(root, WEIGHTS)
    network = _load_weights(weights, seg)
    _verify(weights, info, "weights")
    intensity_map = None
    map_rel = info.get("files", {}).get("intensity_map")
    if map_rel:
        map_path = _required(root, str(map_rel))
        intensity_map = _load_intensity_map(map_path)
        _verify(map_path, info, "intensity_map")
    reference = None
    ref_rel = info.get("files", {}).get("reference")
    if ref_rel:
        ref_path = _required(root, str(ref_rel))
        reference = load_reference(ref_path, seg.model.feat_dim)
        _verify(ref_path, info, "reference")
    return ModelBundle(
        root.resolve(),
        network,
        seg,
        threshold,
        spacing,  # type: ignore[arg-type]
        orientation,
        intensity_map,
        meta,
        reference,
    )
