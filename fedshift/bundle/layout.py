"""Names, format version and metadata of a FedShift model package (MONAI Bundle layout).

A package is a folder::

    configs/metadata.json     MONAI bundle metadata + a ``fedshift`` section (below)
    configs/inference.yaml    a MONAI bundle inference workflow (``python -m monai.bundle run``)
    models/model.pt           the network's state dict (torch tensors)
    models/intensity_map.npz  a site's own intensity map (site packages only)
    models/reference.npz      the federation's reference (runs with secure statistics)

The ``fedshift`` section holds everything inference needs besides the weights: the
segmentation settings (network, preprocessing, sliding window), the decision threshold,
the training spacing and orientation, the sites and case counts that trained the model,
the federation's validation Dice, and, when intensity alignment was on, the federation's
intensity reference; an adapted package (``fedshift adapt``) also records how it was
adapted. Nothing in a package identifies a patient: weights and aggregate numbers only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedshift.errors import BundleError
from fedshift.model.config import EvalConfig, ModelConfig, PreprocessConfig, SegConfig, TrainConfig

#: package files, relative to its root
METADATA = "configs/metadata.json"
INFERENCE = "configs/inference.yaml"
WEIGHTS = "models/model.pt"
INTENSITY_MAP = "models/intensity_map.npz"
#: the federation's reference (:mod:`fedshift.bundle.reference`), when the run had one
REFERENCE = "models/reference.npz"
#: the package layout's own version; a reader refuses another one
BUNDLE_FORMAT = 1
#: orientation of the arrays the network saw (``read_volume`` reorients to RAS+)
ORIENTATION = "RAS"
LABEL_MAP = {"0": "background", "1": "lesion"}
#: SegConfig sections a package keeps: what inference needs (augmentation and the
#: alignment loss are training-only)
SEG_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "preprocess": PreprocessConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


#: ``configs/inference.yaml``: the workflow ``python -m monai.bundle run`` executes; its
#: steps live in :mod:`fedshift.inference.bundle_workflow`
INFERENCE_YAML = """\
# FedShift model package: MONAI bundle inference workflow.
#   python -m monai.bundle run --config_file <package>/configs/inference.yaml \\
#       --dataset_dir <folder of .nii/.nii.gz> --output_dir <folder>
# Each scan goes through FedShift's own preprocessing (N4, brain mask, z-score, the
# site's intensity map when the package has one), sliding-window inference at the
# package's spacing and threshold, and its mask is written on the scan's own grid
# (the same code path as `fedshift predict`).
imports:
  - $from fedshift.bundle import load_bundle
  - $import fedshift.inference.bundle_workflow as bundle_workflow
bundle_root: $bundle_workflow.bundle_root()
dataset_dir: null
output_dir: null
device: auto
probabilities: false
bundle: $load_bundle(@bundle_root)
network_def: $@bundle.network
run:
  - $bundle_workflow.segment_folder(@bundle, @dataset_dir, @output_dir, @device,
      @probabilities)
"""


@dataclass(frozen=True, eq=False)
class IntensityReference:
    """The federation's brain-intensity histogram (z-scored intensities), which a site's
    intensity map (:mod:`fedshift.shift.intensity`) maps onto.

    Attributes
    ----------
    edges : (K + 1,) bin edges.
    pmf : (K,) share of brain voxels per bin (sums to 1).
    """

    edges: np.ndarray
    pmf: np.ndarray

    @classmethod
    def from_reference(cls, reference: Any) -> IntensityReference:
        """From a :class:`fedshift.shift.reference.Reference` (or its ``to_arrays()``)."""
        if isinstance(reference, Mapping):
            return cls(
                np.asarray(reference["intensity_edges"], float),
                np.asarray(reference["intensity_pmf"], float),
            )
        return cls(
            np.asarray(reference.intensity_edges, float), np.asarray(reference.intensity_pmf, float)
        )

    def as_dict(self) -> dict[str, list[float]]:
        return {"edges": self.edges.tolist(), "pmf": self.pmf.tolist()}


def seg_to_dict(seg: SegConfig) -> dict[str, Any]:
    """The SegConfig sections a package keeps, as plain JSON values."""
    tree = {name: asdict(getattr(seg, name)) for name in SEG_SECTIONS}
    return json.loads(json.dumps(tree))  # tuples -> lists


def seg_from_dict(tree: Mapping[str, Any], where: str) -> SegConfig:
    """A SegConfig from :func:`seg_to_dict` output (other sections keep their defaults).

    Raises
    ------
    BundleError
        a section is missing or holds an unknown key or a bad value; ``where`` names the
        file in the message.
    """
    sections = {}
    for name, schema in SEG_SECTIONS.items():
        if name not in tree:
            raise BundleError(f"{where}: the segmentation settings lack seg.{name}")
        try:
            merged = OmegaConf.merge(OmegaConf.structured(schema), dict(tree[name]))
            sections[name] = OmegaConf.to_object(merged)
        except (OmegaConfBaseException, TypeError, ValueError) as exc:
            first = str(exc).splitlines()[0]
            raise BundleError(f"{where}: seg.{name} is invalid: {first}") from None
    seg = SegConfig(**sections)
    try:
        seg.validate()
    except Exception as exc:
        raise BundleError(f"{where}: {exc}") from None
    return seg


def major(version: str) -> str:
    """The major part of a version string (``"0.1.0"`` -> ``"0"``)."""
    return str(version).split(".", 1)[0]


def run_config_hash(config: Any) -> str:
    """A short hash of a run config (a RunConfig, a mapping or YAML text): equal configs
    give equal hashes, whatever the key order."""
    if isinstance(config, str | bytes):
        text = config.decode() if isinstance(config, bytes) else config
        tree = OmegaConf.to_container(OmegaConf.create(text))
    elif isinstance(config, Mapping):
        tree = json.loads(json.dumps(config, default=list))
    else:
        tree = OmegaConf.to_container(OmegaConf.structured(config))
    text = json.dumps(tree, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_metadata(root: Path) -> dict[str, Any]:
    """``configs/metadata.json`` of a package, checked to hold a ``fedshift`` section."""
    path = root / METADATA
    if not path.is_file():
        raise BundleError(f"{path} is missing: {root} is not a FedShift model package")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("fedshift"), dict):
        raise BundleError(f"{path} has no 'fedshift' section: not a FedShift model package")
    return meta


def monai_metadata(seg: SegConfig, info: dict[str, Any], created: str) -> dict[str, Any]:
    """``configs/metadata.json``: MONAI's metadata fields (those of the Model Zoo's
    bundles) plus the ``fedshift`` section ``info`` with its creation date."""
    import monai
    import torch

    from fedshift import __version__

    patch = [int(p) for p in seg.train.patch_size]
    return {
        "version": __version__,
        "changelog": {__version__: "written by FedShift"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"fedshift": __version__},
        "task": "Multiple-sclerosis lesion segmentation on FLAIR MRI",
        "description": "A FedShift federated model: 3D UNet (MONAI) with FedShift "
        "preprocessing (N4, brain mask, z-score); see the 'fedshift' section.",
        "authors": "FedShift federation",
        "copyright": "",
        "data_type": "nifti",
        "image_classes": "one channel: FLAIR",
        "label_classes": "0 background, 1 lesion",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "MR",
                    "num_channels": 1,
                    "spatial_shape": patch,
                    "dtype": "float32",
                    "value_range": [-float(seg.preprocess.clip), float(seg.preprocess.clip)],
                    "is_patch_data": True,
                    "channel_def": {"0": "FLAIR"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": 2,
                    "spatial_shape": patch,
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": dict(LABEL_MAP),
                }
            },
        },
        "fedshift": {"created": created, **info},
    }
