"""Standard preprocessing of a site's images, cached per site: N4, brain mask, z-score.

Every method gets the same preprocessing, and the same arrays feed training, validation
and test. Results are cached as ``<cache_dir>/<key>.npz`` where ``key`` hashes the
image file's content, the :class:`PreprocessConfig` and :data:`PREPROCESS_VERSION`, so
a second run (or a second process) does not recompute and an edited file or a changed
setting never reuses a stale result. Nothing is written into the site's data folder and
nothing here leaves the hospital.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform

from fedshift import atomic
from fedshift.data.masks import brain_mask, head_mask
from fedshift.data.nifti import read_volume
from fedshift.model.config import PreprocessConfig
from fedshift.shift.intensity import IntensityMap
from fedshift.shift.intensity import apply as apply_intensity_map

#: bump when the preprocessing code changes what it computes (invalidates caches)
PREPROCESS_VERSION = 2  # bump when preprocessing code (incl. masks.py) changes
#: the item key under which the preprocessing mask travels
MASK_KEY = "brain"


@dataclass(frozen=True)
class Preprocessed:
    """One preprocessed image.

    Attributes
    ----------
    image : (X, Y, Z) float32, RAS+, z-scored inside ``mask`` when enabled.
    mask : (X, Y, Z) bool, the brain mask (the head mask when ``brain_mask`` is off).
    affine : 4x4 voxel-to-world matrix (mm).
    zooms : voxel sizes in mm.
    """

    image: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    zooms: tuple[float, ...]


def n4_correct(
    image: np.ndarray, mask: np.ndarray, zooms: tuple[float, ...], cfg: PreprocessConfig
) -> np.ndarray:
    """Divide out the N4 bias field (SimpleITK), fitted on a shrunk copy inside ``mask``.

    Parameters
    ----------
    image : (X, Y, Z) intensities (negative values are treated as 0).
    mask : (X, Y, Z) bool, voxels used to fit the field (usually the head).
    zooms : voxel sizes in mm.

    Returns (X, Y, Z) float32 corrected intensities; ``image`` unchanged when the mask
    holds too few positive voxels to fit a field.
    """
    work = np.clip(np.asarray(image, dtype=np.float32), 0, None)
    fit_mask = mask & (work > 0)
    if fit_mask.sum() < 64:
        return work
    import SimpleITK as sitk  # here, not at the top: only N4 needs it (a cache hit does not)

    img = sitk.GetImageFromArray(np.ascontiguousarray(work.T))
    img.SetSpacing([float(z) for z in zooms[:3]])
    msk = sitk.GetImageFromArray(np.ascontiguousarray(fit_mask.T.astype(np.uint8)))
    msk.CopyInformation(img)
    shrink = [int(cfg.n4_shrink)] * 3
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([int(i) for i in cfg.n4_iterations])
    corrector.SetConvergenceThreshold(float(cfg.n4_convergence))
    corrector.Execute(sitk.Shrink(img, shrink), sitk.Shrink(msk, shrink))
    log_bias = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(img)).T
    return (work / np.exp(log_bias)).astype(np.float32)


def zscore(
    image: np.ndarray, mask: np.ndarray, clip: float = 5.0, zero_background: bool = True
) -> np.ndarray:
    """``(image - mean) / std`` with mean and std taken inside ``mask``.

    Values are clipped to ``[-clip, clip]`` (``clip=0``: no clipping) and, with
    ``zero_background``, set to 0 outside the mask. Returns (X, Y, Z) float32.
    """
    inside = image[mask] if mask.any() else image.ravel()
    mean = float(inside.mean())
    std = float(inside.std())
    out = (image.astype(np.float32) - mean) / (std if std > 1e-8 else 1.0)
    if clip > 0:
        out = np.clip(out, -clip, clip)
    if zero_background and mask.any():
        out[~mask] = 0.0
    return out.astype(np.float32)


def preprocess_array(
    image: np.ndarray,
    zooms: tuple[float, ...],
    cfg: PreprocessConfig,
    timings: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Head mask -> N4 inside it -> brain mask -> z-score inside the mask (each switchable).

    Parameters
    ----------
    image : (X, Y, Z) raw intensities.
    zooms : voxel sizes in mm.
    timings : when given, receives the seconds spent in ``"n4"``, ``"mask"`` (head and
        brain masks) and ``"zscore"`` (``fedshift predict`` reports them per case).

    Returns
    -------
    (image, mask): (X, Y, Z) float32 and (X, Y, Z) bool.
    """
    clock = _Clock(timings)
    array = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    head = clock("mask", head_mask, array)
    if cfg.n4:
        array = clock("n4", n4_correct, array, head, zooms, cfg)
    mask = clock("mask", brain_mask, array, zooms) if cfg.brain_mask else head
    if not mask.any():
        mask = np.ones(array.shape, dtype=bool)
    if cfg.zscore:
        array = clock("zscore", zscore, array, mask, cfg.clip, cfg.zero_background)
    return array.astype(np.float32), mask.astype(bool)


class _Clock:
    """Calls a function and adds its wall time under a step name (nothing when off)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings

    def __call__(self, step: str, fn: Any, *args: Any) -> Any:
        if self.timings is None:
            return fn(*args)
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - start


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_digest(cfg: PreprocessConfig) -> str:
    """A short hash of the preprocessing settings and :data:`PREPROCESS_VERSION`."""
    text = json.dumps({"version": PREPROCESS_VERSION, **asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class PreprocessCache:
    """Preprocessed images of one site on disk, keyed by content hash and settings.

    Attributes ``hits`` and ``misses`` count loads from disk and computations.

    With an ``intensity_map`` (the site's own 1-D OT map onto the federation's intensity
    histogram, :mod:`fedshift.shift.intensity`), :meth:`get` maps the brain intensities
    after the standard preprocessing; the cache itself always holds the standard result.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        cfg: PreprocessConfig,
        intensity_map: IntensityMap | None = None,
    ) -> None:
        cfg.validate()
        self.cache_dir = Path(cache_dir)
        self.cfg = cfg
        self.intensity_map = intensity_map
        self.hits = 0
        self.misses = 0
        self._cfg_digest = config_digest(cfg)
        self._digests: dict[tuple[str, int, int], str] = {}

    def key(self, path: str | os.PathLike[str]) -> str:
        """Cache key of an image file: content hash + settings hash."""
        stat = os.stat(path)
        memo = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
        if memo not in self._digests:
            self._digests[memo] = file_digest(path)
        return f"{self._digests[memo][:32]}-{self._cfg_digest}"

    def get(self, path: str | os.PathLike[str], aligned: bool = True) -> Preprocessed:
        """The preprocessed image of ``path``, computed and stored on the first call;
        intensity-mapped when the cache has a map and ``aligned`` is true."""
        result = self._standard(path)
        if aligned and self.intensity_map is not None:
            image = apply_intensity_map(self.intensity_map, result.image, result.mask)
            result = Preprocessed(
                image.astype(np.float32), result.mask, result.affine, result.zooms
            )
        return result

    def _standard(self, path: str | os.PathLike[str]) -> Preprocessed:
        target = self.cache_dir / f"{self.key(path)}.npz"
        if target.is_file():
            with np.load(target) as data:
                self.hits += 1
                return Preprocessed(
                    data["image"],
                    data["mask"].astype(bool),
                    data["affine"],
                    tuple(data["zooms"].tolist()),
                )
        vol = read_volume(path)
        image, mask = preprocess_array(vol.data, vol.zooms, self.cfg)
        result = Preprocessed(image, mask, np.asarray(vol.affine, dtype=np.float64), vol.zooms)
        self._store(target, result)
        self.misses += 1
        return result

    def _store(self, target: Path, result: Preprocessed) -> None:
        """Write atomically (:mod:`fedshift.atomic`): readers never see half a file."""
        atomic.save_npz(
            target,
            {
                "image": result.image,
                "mask": result.mask.astype(np.uint8),
                "affine": result.affine,
                "zooms": np.asarray(result.zooms, dtype=np.float64),
            },
        )


class PreprocessVolumed(MapTransform):
    """Replace the image path under ``keys`` by its preprocessed image, and add the mask.

    Output: ``item[key]`` a ``MetaTensor`` (1, X, Y, Z) float32 in RAS+ (as
    :class:`fedshift.data.transforms.LoadVolumed` gives) and ``item[mask_key]`` the mask
    (1, X, Y, Z) float32 in {0, 1}. Labels are loaded separately with ``LoadVolumed``.
    """

    def __init__(
        self, keys: str | Iterable[str], cache: PreprocessCache, mask_key: str = MASK_KEY
    ) -> None:
        super().__init__(keys)
        self.cache = cache
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for key in self.key_iterator(out):
            path = str(out[key])
            pre = self.cache.get(path)
            affine = torch.as_tensor(pre.affine, dtype=torch.float64)
            # spacing comes from the affine (MetaTensor.pixdim); each tensor gets its own meta
            image = torch.from_numpy(pre.image[None].copy())
            out[key] = MetaTensor(image, affine=affine, meta={"filename_or_obj": path})
            mask = torch.from_numpy(pre.mask[None].astype(np.float32))
            out[self.mask_key] = MetaTensor(
                mask, affine=affine.clone(), meta={"filename_or_obj": path}
            )
        return out


def warm_cache(
    items: Iterable[Mapping[str, Any]], cache: PreprocessCache, key: str = "image"
) -> int:
    """Preprocess every item's image now (e.g. before timing training). Returns how many
    were computed rather than loaded."""
    before = cache.misses
    for item in items:
        cache.get(item[key])
    return cache.misses - before
