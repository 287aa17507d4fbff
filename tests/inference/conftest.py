"""A tiny model trained on bright-ball phantoms, packaged once per session.

The task (bright balls in a head phantom, at 1.5 mm) is one a 2-level UNet learns in a few
dozen CPU steps to Dice ~0.95, so a test can tell a correct way back to the scan's grid
from a wrong one. The phantoms live in scanner millimetres (:mod:`inference_phantoms`), so the same
subject can be written on any grid.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inference_phantoms import LESION_MM, MODEL_SPACING, draw_lesions, grid, tiny_seg, write_case  # noqa: E402

from fedshift.bundle import load_bundle, write_bundle  # noqa: E402
from fedshift.bundle.io import ModelBundle  # noqa: E402
from fedshift.model.trainer import SiteTrainer  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny volumes gain nothing from threads; one keeps a shared machine responsive."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package of a model trained 80 steps on 5 phantoms (1.5 mm RAS), threshold tuned
    on a sixth."""
    root = tmp_path_factory.mktemp("trained")
    affine, shape = grid((MODEL_SPACING,) * 3)
    items = []
    for i in range(6):
        rng = np.random.default_rng((0, i))
        image, label = write_case(
            root / "train", f"c{i}", affine, shape, draw_lesions(rng, 3, LESION_MM), rng
        )
        items.append({"case": f"c{i}", "image": str(image), "label": str(label)})
    seg = tiny_seg()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same model whichever test asks first
    try:
        trainer = SiteTrainer(seg, items[:5], items[5:], root / "cache", device="cpu")
        for index in range(8):
            trainer.train(10, round_index=index)
        threshold = trainer.tune_threshold()
    finally:
        torch.set_num_threads(threads)
    return write_bundle(
        root / "model",
        weights=trainer.get_weights(),
        seg_cfg=seg,
        threshold=threshold,
        sites={"phantoms": 5},
        val_dice=float(trainer.evaluate(items[5:])["dice"]),
        run_config_hash="test",
        spacing=(MODEL_SPACING,) * 3,
    )


@pytest.fixture(scope="session")
def trained(trained_package: Path) -> ModelBundle:
    return load_bundle(trained_package)
