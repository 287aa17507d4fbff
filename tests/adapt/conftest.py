"""A tiny federation model trained once per session, its packages (with and without the
federation's reference; a batch-norm one) and a phantom site from another scanner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "inference"))
sys.path.insert(0, str(HERE))

from adapt_phantoms import package, reference_of, seg_config, train, write_site  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny volumes gain nothing from threads; one keeps a shared machine responsive."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Packages of one model trained 60 steps on 5 phantoms: ``with_reference`` (its
    reference from the same cases), ``without_reference``; ``batch_norm``: a network with
    batch normalisation trained 30 steps, without reference."""
    root = tmp_path_factory.mktemp("federation")
    site = write_site(root / "fed", n_train=5, n_test=1, seed=0)
    trainer, items = train(seg_config(), site, root / "cache", steps=60)
    reference = reference_of(trainer, items, root / "cache")
    bn, _ = train(seg_config("batch"), site, root / "cache", steps=30)
    return {
        "with_reference": package(trainer, root / "model", reference),
        "without_reference": package(trainer, root / "model-noref", None),
        "batch_norm": package(bn, root / "model-bn", None),
        "site": site,
    }


@pytest.fixture(scope="session")
def target_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unlabelled site from another scanner: 4 training images, 1 labelled test case."""
    return write_site(
        tmp_path_factory.mktemp("target") / "target", 4, 1, seed=7, gamma=1.6, labelled=False
    )
