"""Packages derived from another one: a site's (the global package plus its intensity
map) and an adapted one (new weights from ``fedshift adapt``, the adaptation recorded).

Each is written whole and renamed into place (:func:`fedshift.bundle.io.write_package`);
the package it derives from is only read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedshift.bundle.io import ModelBundle, load_bundle, state_dict_of, write_package
from fedshift.errors import BundleError
from fedshift.model.preprocess import file_digest
from fedshift.shift.intensity import IntensityMap


def site_bundle(
    global_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    intensity_map: IntensityMap | None,
    *,
    site: str | None = None,
) -> Path:
    """The package a site uses: the global package at ``global_dir`` plus the site's own
    intensity map (applied after z-scoring, before the network), written at ``out_dir``;
    the federation's reference, when the global package has one, is kept.

    ``intensity_map=None`` (alignment off, or no reference yet) copies the global package
    with the site's name recorded.
    """
    bundle = load_bundle(global_dir)
    if intensity_map is not None:
        x, y = np.asarray(intensity_map.x, float), np.asarray(intensity_map.y, float)
        if x.ndim != 1 or x.shape != y.shape or x.size < 2 or np.any(np.diff(x) <= 0):
            raise BundleError("intensity map must have increasing knots x and as many y values")
        intensity_map = IntensityMap(x=x, y=y)
    meta = json.loads(json.dumps(bundle.metadata))
    meta["fedshift"]["site"] = site
    state = OrderedDict((k, v.detach().cpu()) for k, v in bundle.network.state_dict().items())
    return _write_like(bundle, Path(out_dir), state, meta, intensity_map)


def adapted_bundle(
    source: ModelBundle,
    out_dir: str | os.PathLike[str],
    state: Mapping[str, torch.Tensor],
    adaptation: Mapping[str, Any],
) -> Path:
    """``source`` with adapted weights ``state``, written at ``out_dir``.

    Everything else is ``source``'s: settings, threshold (no labels to retune it), spacing,
    the site's intensity map, the federation's reference. The metadata's ``fedshift``
    section gains ``adaptation`` (JSON values: method, steps, settings, stop reason, ...);
    an earlier adaptation of ``source`` is kept under ``adaptation.previous``.

    Raises
    ------
    BundleError
        ``state`` does not fit ``source``'s network, or ``out_dir`` is ``source``'s folder
        (the package adapted from is never modified).
    """
    out = Path(out_dir)
    if out.resolve() == Path(source.root).resolve():
        raise BundleError(f"{out} is the package adapted from; write the adapted one elsewhere")
    checked = state_dict_of({k: v.detach().cpu() for k, v in state.items()}, source.seg)
    meta = json.loads(json.dumps(source.metadata))
    record = json.loads(json.dumps(dict(adaptation)))
    previous = meta["fedshift"].get("adaptation")
    if previous:
        record["previous"] = previous
    meta["fedshift"]["adaptation"] = record
    return _write_like(source, out, checked, meta, source.intensity_map)


def _write_like(
    bundle: ModelBundle,
    out_dir: Path,
    state: Mapping[str, torch.Tensor],
    meta: dict[str, Any],
    intensity_map: IntensityMap | None,
) -> Path:
    def meta_for(files: dict[str, str]) -> dict[str, Any]:
        meta["fedshift"]["files"] = files
        return meta

    reference = bundle.reference.to_arrays() if bundle.reference is not None else None
    return write_package(out_dir, state, meta_for, intensity_map, reference)


def package_digest(root: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a package's content: every file's path and digest, in path order.
    Two packages with the same files give the same value, wherever they lie."""
    base = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(base).as_posix()
        digest.update(f"{rel}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()
