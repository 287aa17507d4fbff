"""The federation's reference inside a model package (``models/reference.npz``).

The reference (:class:`fedshift.shift.reference.Reference`) is what the coordinator built
from the secure sum over >= 3 sites and broadcast: class-conditional Gaussians of the
embeddings under the final model, the pooled brain-intensity histogram, the lesion-count
and lesion-volume histograms of the labelled cases and the summed shift descriptors. It
holds aggregate numbers only, no patient data. A package carries it so that a site can
adapt the model on its own images after the run (``fedshift adapt``: the JDOT target, the
class-ratio prior and the collapse guard's lesion-load range).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedshift.errors import BundleError
from fedshift.shift.reference import Reference


def reference_arrays(value: Any, feat_dim: int, where: str = "reference") -> dict[str, np.ndarray]:
    """The arrays a package stores for a reference, checked.

    Parameters
    ----------
    value : a :class:`Reference`, its ``to_arrays()`` mapping, or that mapping with lists
        for arrays (as the coordinator sends it to the sites in JSON).
    feat_dim : the network's embedding size F; every Gaussian must be (F,) and (F, F).
    where : names the value in errors.

    Raises
    ------
    BundleError
        the arrays do not form a reference, or its Gaussians do not fit ``feat_dim``.
    """
    if isinstance(value, Reference):
        arrays = value.to_arrays()
    elif isinstance(value, Mapping):
        arrays = {str(k): np.asarray(v, dtype=np.float64) for k, v in value.items()}
    else:
        raise BundleError(f"{where}: expected the federation's reference arrays, got {value!r}")
    reference = _parse(arrays, where)
    for cls, (mean, cov) in reference.gaussians.items():
        if mean.shape != (feat_dim,) or cov.shape != (feat_dim, feat_dim):
            raise BundleError(
                f"{where}: the {cls} Gaussian has mean {mean.shape} and covariance {cov.shape}; "
                f"the network's embeddings have {feat_dim} features"
            )
    return reference.to_arrays()


def _parse(arrays: Mapping[str, np.ndarray], where: str) -> Reference:
    try:
        return Reference.from_arrays(dict(arrays))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BundleError(f"{where} is not the federation's reference: {exc}") from None


def save_reference(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write checked arrays (:func:`reference_arrays`) as an uncompressed ``.npz``."""
    np.savez(path, **dict(arrays))


def load_reference(path: Path, feat_dim: int) -> Reference:
    """The reference stored at ``path``, checked against the network's embedding size.

    Raises
    ------
    BundleError
        naming the file: unreadable, incomplete, or Gaussians of another size.
    """
    try:
        with np.load(path) as data:
            arrays = {key: data[key].copy() for key in data.files}
    except Exception as exc:
        raise BundleError(f"{path} is not a readable reference: {exc}") from None
    return _parse(reference_arrays(arrays, feat_dim, str(path)), str(path))


def reference_summary(reference: Reference) -> dict[str, Any]:
    """What the metadata says of a package's reference: counts only (classes with a
    Gaussian, the embeddings behind each, the cases behind the histograms)."""
    return {
        "classes": sorted(reference.gaussians),
        "embedding_counts": {c: float(n) for c, n in sorted(reference.counts.items())},
        "cases": float(reference.cases),
        "labelled_cases": float(reference.labelled_cases),
    }
