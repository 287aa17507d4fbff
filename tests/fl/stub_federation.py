"""Four stand-in sites behind the real ClientApp handlers in one process
(:class:`local_grid.LocalGrid`): each "trains" by a fixed, site-own step from the weights
it is sent (:func:`site_model`) and reports its case count (:data:`CASES`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from local_grid import LocalGrid

from fedshift.fl import client
from fedshift.fl.grid import SiteInfo
from fedshift.runconfig import RunConfig
from fedshift.site.worker import TrainOutcome

NAMES = {2**64 - 11: "a", 5: "b", 2**40: "c", 17: "d"}
CASES = {"a": 4, "b": 2, "c": 3, "d": 5}
SHAPES = [(3, 2, 2), (5,)]


def site_model(name: str, weights: list[np.ndarray], server_round: int) -> list[np.ndarray]:
    """What site ``name`` trains from ``weights`` in a round (a fixed, site-own step)."""
    rng = np.random.default_rng(sum(map(ord, name)) + 100 * server_round)
    return [(w + rng.normal(0, 0.05, w.shape)).astype(w.dtype) for w in weights]


class StubWorker:
    """Stands in for a site's worker: :func:`site_model`, its case count, no data."""

    def __init__(self, name: str) -> None:
        self.name = name

    def train(self, weights, server_round, proximal_mu=0.0, threshold=None, align=True):
        models = site_model(self.name, weights, server_round)
        return TrainOutcome(models, CASES[self.name], {"loss": 0.1 * len(self.name)})


def make_federation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """(cfg, grid, sites, weights): the run config (0.5 s timeout), the grid of the four
    stand-in sites, their readiness answers and a small starting model."""
    fed = replace(RunConfig().fed, timeout_s=0.5)  # a dropped site is waited for this long
    cfg = replace(RunConfig(), out=str(tmp_path / "run"), fed=fed)
    grid = LocalGrid(cfg, NAMES)
    monkeypatch.setattr(
        client, "make_worker", lambda ctx, defaults=None: StubWorker(NAMES[ctx.node_id])
    )
    sites = {n: SiteInfo(n, name, "A", True, 5, 5) for n, name in NAMES.items()}
    weights = [np.linspace(-1, 1, int(np.prod(s)), dtype=np.float32).reshape(s) for s in SHAPES]
    return cfg, grid, sites, weights
