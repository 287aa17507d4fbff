"""The site's unlabelled images as the package's network sees them, and patches of them.

Each scan goes through the steps :func:`fedshift.inference.segment.segment_scan` takes
before its sliding window, with the same functions: the safe reader and readiness's
integrity checks (:func:`~fedshift.inference.segment.check_scan`; a bad scan is skipped
with its reason), resampling to the package's spacing (:mod:`fedshift.inference.grid`; a
scan at that spacing is used as read), N4, brain mask and z-score with the package's
settings (:func:`fedshift.model.preprocess.preprocess_array`) and the site's intensity map
when the package has one. So adaptation trains on exactly the arrays ``fedshift predict``
feeds the network, and nothing else: no augmentation. The arrays are kept in memory; they
never leave the site.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedshift.bundle.io import ModelBundle
from fedshift.data.layout import discover_site
from fedshift.errors import DataError, UsageError
from fedshift.inference.grid import model_grid, to_model
from fedshift.inference.segment import check_scan
from fedshift.logs import Progress
from fedshift.model.preprocess import preprocess_array
from fedshift.shift.intensity import apply as apply_intensity_map

log = logging.getLogger(__name__)

#: nnU-Net image folders of each split
SPLITS = {"train": "imagesTr", "test": "imagesTs"}


@dataclass(frozen=True, eq=False)
class SiteImage:
    """One scan on the model grid, as the network sees it. Stays at the site.

    Attributes
    ----------
    case : the case name.
    image : (X, Y, Z) float32, preprocessed (RAS+ order, the package's spacing).
    brain : (X, Y, Z) bool brain mask.
    voxel_ml : volume of one voxel in mL.
    """

    case: str
    image: np.ndarray
    brain: np.ndarray
    voxel_ml: float

    @property
    def brain_ml(self) -> float:
        return float(self.brain.sum()) * self.voxel_ml


def model_input(bundle: ModelBundle, path: str | os.PathLike[str], case: str) -> SiteImage:
    """One scan through the package's pipeline up to the network's input.

    Raises
    ------
    DataError
        the scan fails a readiness integrity check (the finding's code and file).
    """
    vol = check_scan(Path(path), {})
    raw = vol.as_float32()
    grid = model_grid(raw.shape, vol.affine, bundle.spacing)
    image = to_model(grid, raw)
    zooms = tuple(vol.zooms[:3]) if grid.identity else grid.zooms
    image, brain = preprocess_array(image, zooms, bundle.seg.preprocess)
    if bundle.intensity_map is not None:
        image = apply_intensity_map(bundle.intensity_map, image, brain).astype(np.float32)
    voxel_ml = float(np.prod(zooms)) / 1000.0
    return SiteImage(case, image, brain, voxel_ml)


def site_scans(site_dir: str | os.PathLike[str], split: str) -> list[tuple[str, Path]]:
    """(case, image file) of a split of a site folder (nnU-Net layout); labels are ignored.

    Raises
    ------
    UsageError
        an unknown split, or the split holds no image.
    """
    if split not in SPLITS:
        raise UsageError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    layout = discover_site(site_dir)
    cases = layout.split(split)  # type: ignore[arg-type]
    if not cases:
        raise UsageError(f"{layout.root} has no {split} image ({SPLITS[split]}/<case>_0000.nii.gz)")
    return [(case.case_id, case.image) for case in cases]


def load_site_images(
    bundle: ModelBundle,
    scans: Sequence[tuple[str, Path]],
    max_images: int,
    rng: np.random.Generator,
) -> tuple[list[SiteImage], int]:
    """The scans (at most ``max_images``, a draw of ``rng`` when there are more; 0: all) as
    :class:`SiteImage`, in case order, and how many failed a check (skipped, logged).

    Raises
    ------
    UsageError
        no scan passed its checks.
    """
    chosen = list(scans)
    if max_images and len(chosen) > max_images:
        keep = np.sort(rng.choice(len(chosen), size=max_images, replace=False))
        chosen = [chosen[i] for i in keep]
    images, skipped = [], 0
    with Progress(len(chosen), "adapt: preprocessing", "scan", log) as bar:
        for case, path in chosen:
            try:
                images.append(model_input(bundle, path, case))
            except DataError as exc:
                log.warning("skipped %s: %s (%s)", path, exc, exc.code)
                skipped += 1
            bar.update()
    if not images:
        raise UsageError(f"none of the {len(chosen)} scans passed its checks: nothing to adapt on")
    return images, skipped


def crop(array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: float) -> np.ndarray:
    """``array[start : start + size]`` in 3-D, ``fill`` where the window leaves the array."""
    out = np.full(tuple(size), fill, dtype=array.dtype)
    src, dst = [], []
    for s, n, dim in zip(start, size, array.shape, strict=True):
        lo, hi = max(s, 0), min(s + n, dim)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - s, lo - s + max(hi - lo, 0)))
    out[tuple(dst)] = array[tuple(src)]
    return out


@dataclass(frozen=True)
class Window:
    """One patch: the image it comes from and its first voxel (may be negative: a patch
    larger than the image is padded, as training pads to the patch size)."""

    index: int
    start: tuple[int, int, int]


class Patches:
    """Patches of ``patch`` voxels centred on brain voxels (or on given candidates).

    A centre near the border is moved inward so the patch stays inside the image where
    the image is large enough (as MONAI's ``RandCropByPosNegLabeld`` does); along an axis
    shorter than the patch the image is centred and padded.
    """

    def __init__(self, images: Sequence[SiteImage], patch: Sequence[int]) -> None:
        self.images = list(images)
        self.patch = tuple(int(p) for p in patch)
        self.brain_index = [np.flatnonzero(im.brain) for im in self.images]
        self._images = [im.image for im in self.images]
        self._brains = [im.brain.astype(np.float32) for im in self.images]

    def window(self, rng: np.random.Generator, index: int, candidates: np.ndarray) -> Window:
        """A patch of image ``index`` centred on one of ``candidates`` (flat voxel indices)."""
        shape = self.images[index].image.shape
        centre = np.unravel_index(int(candidates[rng.integers(candidates.size)]), shape)
        start = []
        for c, p, dim in zip(centre, self.patch, shape, strict=True):
            start.append(int(np.clip(c - p // 2, 0, dim - p)) if dim >= p else -((p - dim) // 2))
        return Window(index, (start[0], start[1], start[2]))

    def draw(self, rng: np.random.Generator, n: int) -> list[Window]:
        """``n`` patches, each of a random image, centred on a random brain voxel."""
        out = []
        for _ in range(n):
            index = int(rng.integers(len(self.images)))
            candidates = self.brain_index[index]
            if candidates.size == 0:
                candidates = np.arange(self.images[index].image.size)
            out.append(self.window(rng, index, candidates))
        return out

    def stack(
        self,
        windows: Sequence[Window],
        maps: Sequence[np.ndarray],
        fill: float,
        device: torch.device,
    ) -> torch.Tensor:
        """The windows of per-image arrays ``maps`` as one (B, 1, D, H, W) tensor."""
        parts = [crop(maps[w.index], w.start, self.patch, fill) for w in windows]
        return torch.from_numpy(np.stack(parts)[:, None]).to(device)

    def batch(
        self, windows: Sequence[Window], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, 1, D, H, W) float32, brain masks (B, 1, D, H, W) float32 in {0, 1})."""
        images = self.stack(windows, self._images, 0.0, device)
        return images, self.stack(windows, self._brains, 0.0, device)
