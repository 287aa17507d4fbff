"""Run a federated config in Flower's simulation engine (Ray backend), in this process.

The ServerApp and ClientApp are the deployment's own (:mod:`fedshift.fl.apps`), built
with the flattened run config as their defaults, because
``flwr.simulation.run_simulation`` passes no run config of its own.
"""

from __future__ import annotations

import logging
import os
import time
import warnings

from fedshift.errors import FedShiftError
from fedshift.runconfig import RunConfig, flatten
from fedshift.runstate import RunFolder, RunState

log = logging.getLogger("fedshift.simulation")


def run_flower_simulation(cfg: RunConfig) -> tuple[RunState, float]:
    """Run ``cfg`` (a federated strategy) in simulation; returns (state, wall seconds)."""
    from flwr.simulation import run_simulation

    from fedshift.fl.apps import make_client_app, make_server_app

    flat = flatten(cfg)
    n_sites = len(cfg.all_sites)
    backend = {
        "client_resources": {
            "num_cpus": cfg.simulation.cpus_per_site,
            "num_gpus": cfg.simulation.gpus_per_site,
        },
        "init_args": {"num_cpus": os.cpu_count() or 1, "include_dashboard": False},
    }
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(
            server_app=make_server_app(flat),
            client_app=make_client_app(flat),
            num_supernodes=n_sites,
            backend_config=backend,
        )
    seconds = time.perf_counter() - start
    folder = RunFolder(cfg.out)
    metrics_path = folder.root / "metrics.json"
    record = folder.read_record() if metrics_path.is_file() else None
    if record is None or record.final is None or not record.final.sites:
        raise FedShiftError(
            f"the simulation ended without final metrics in {metrics_path}; see the log above"
        )
    return RunState(last_round=len(record.rounds), record=record), seconds
