"""Tiny FLAIR-like phantoms for the model tests, written in nnU-Net raw layout.

A phantom is a head ellipsoid (scalp, dark skull, brain with ventricles) holding a few
bright spherical lesions, optionally multiplied by a smooth bias field. Randomness comes
from ``numpy.random.default_rng((seed, case))``. The bench script reuses
:func:`write_phantom_site` to make a site to time on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from fedshift.data.layout import discover_site, site_items
from fedshift.model.config import ModelConfig, PreprocessConfig, SegConfig, TrainConfig

SPACING_MM = 3.0


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    """Coordinates in units of half the volume size, centred: each in [-1, 1]."""
    axes = [np.linspace(-1.0, 1.0, n) for n in shape]
    return tuple(np.meshgrid(*axes, indexing="ij"))


def smooth_bias(shape: tuple[int, int, int], strength: float = 0.4) -> np.ndarray:
    """A smooth multiplicative field exp(strength * (0.7x + 0.5y - 0.3z^2)), ~[0.6, 1.5]."""
    x, y, z = _grid(shape)
    return np.exp(strength * (0.7 * x + 0.5 * y - 0.3 * z**2)).astype(np.float32)


def phantom(
    shape: tuple[int, int, int], rng: np.random.Generator, n_lesions: int = 3, bias: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(image, label): (X, Y, Z) float32 FLAIR-like intensities and uint8 lesion mask."""
    x, y, z = _grid(shape)
    r = np.sqrt((x / 0.9) ** 2 + (y / 0.95) ** 2 + (z / 0.85) ** 2)
    image = np.zeros(shape, np.float32)
    image[r < 1.0] = 250.0  # scalp
    image[r < 0.88] = 30.0  # skull
    image[r < 0.78] = 200.0  # brain
    vent = (x / 0.18) ** 2 + (y / 0.3) ** 2 + (z / 0.2) ** 2 < 1.0
    image[vent] = 60.0
    label = np.zeros(shape, np.uint8)
    centres = np.argwhere((r < 0.55) & ~vent)
    for _ in range(n_lesions):
        c = centres[rng.integers(len(centres))]
        radius = rng.uniform(1.5, 2.5)
        ball = sum((g - cc) ** 2 for g, cc in zip(np.indices(shape), c, strict=True)) <= radius**2
        label[ball] = 1
    image[label > 0] = 380.0
    image = image + rng.normal(0.0, 8.0, shape).astype(np.float32)
    if bias:
        image = image * smooth_bias(shape, bias)
    return np.clip(image, 0, None).astype(np.float32), label


def write_nii(path: Path, data: np.ndarray) -> None:
    affine = np.diag([SPACING_MM, SPACING_MM, SPACING_MM, 1.0])
    nib.save(nib.Nifti1Image(data, affine), str(path))


def write_phantom_site(
    root: str | Path,
    n_cases: int = 4,
    shape: tuple[int, int, int] = (24, 24, 24),
    seed: int = 0,
    bias: float = 0.3,
) -> Path:
    """Write SITE/dataset.json, imagesTr/<case>_0000.nii.gz and labelsTr/<case>.nii.gz."""
    root = Path(root)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        rng = np.random.default_rng((seed, i))
        image, label = phantom(shape, rng, n_lesions=3, bias=bias)
        case = f"case{i:03d}"
        write_nii(root / "imagesTr" / f"{case}_0000.nii.gz", image)
        write_nii(root / "labelsTr" / f"{case}.nii.gz", label)
    meta = {
        "channel_names": {"0": "FLAIR"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


def tiny_config(**train: object) -> SegConfig:
    """A CPU-sized config: 2-level UNet, 16^3 patches, batch 2, lr 1e-2, quick N4."""
    model = ModelConfig(channels=(8, 16, 32), strides=(2, 2), num_res_units=1, feat_dim=8)
    tc = replace(TrainConfig(), patch_size=(16, 16, 16), batch_size=2, lr=1e-2, local_steps=4)
    pre = PreprocessConfig(n4_shrink=2, n4_iterations=(20, 20))
    return SegConfig(model=model, preprocess=pre, train=replace(tc, **train))


@pytest.fixture(scope="session")
def phantom_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-case labelled phantom site (24^3 voxels of 3 mm), shared by the session."""
    return write_phantom_site(tmp_path_factory.mktemp("site") / "SiteA")


@pytest.fixture(scope="session")
def phantom_items(phantom_site: Path) -> list[dict[str, object]]:
    return site_items(discover_site(phantom_site), "train", labelled_only=True)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One preprocessing cache for the session, so N4 runs once per phantom case."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny volumes gain nothing from threads; one keeps a shared CI machine responsive."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def make_phantom() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """:func:`phantom` (tests take helpers as fixtures: no ``import conftest``)."""
    return phantom


@pytest.fixture(scope="session")
def make_bias() -> Callable[..., np.ndarray]:
    """:func:`smooth_bias`."""
    return smooth_bias


@pytest.fixture(scope="session")
def make_site() -> Callable[..., Path]:
    """:func:`write_phantom_site`."""
    return write_phantom_site


@pytest.fixture(scope="session")
def tiny_cfg() -> Callable[..., SegConfig]:
    """:func:`tiny_config`."""
    return tiny_config
