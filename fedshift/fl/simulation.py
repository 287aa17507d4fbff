"""Run a federated config in Flower's simulation engine (Ray backend), in this process.

The ServerApp and ClientApp are the deployment's own (:mod:`fedshift.fl.apps`), built
with the flattened run config as their defaults, because
``flwr.simulation.run_simulation`` passes no run config of its own.

With ``RAY_ADDRESS`` set (a running Ray cluster, ``ray start --head``) the simulation
joins that cluster instead of starting Ray on this machine (:func:`joins_cluster`); the
site and run folders must then be where every worker can read them.

The console stays quiet unless ``-v`` (:mod:`fedshift.logs`): Flower's lines once each,
Ray's own log at ERROR (:func:`ray_init_args`) and without its start-up FutureWarning
about accelerator variables. The sites' output still reaches this console
(``log_to_driver``): their warnings and errors, prefixed with the Ray worker's id.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from fedshift import logs
from fedshift.errors import FedShiftError
from fedshift.runconfig import RunConfig, flatten
from fedshift.runstate import RunFolder, RunState

log = logging.getLogger("fedshift.simulation")
#: printed by ray.init whatever its logging level: Ray will stop hiding GPUs from actors
#: that ask for none. Setting RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=0 would silence it by
#: changing that behaviour now (CPU-only sites would see the GPUs): only the text is hidden.
RAY_ACCELERATOR_TIP = r"Tip: In future versions of Ray"


#: Flower messages that are noise in a FedShift run (shown with -v): FedShift runs Flower's
#: simulation engine in-process on purpose, and evaluates the sites itself rather than
#: through the strategy's federated evaluation
FLOWER_NOISE = (
    "The `run_simulation` function is deprecated",
    "fraction_evaluate is set to 0.0",
)


class _DropFlowerNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in FLOWER_NOISE)


def quiet_flower(verbose: bool) -> None:
    """Print Flower's log once, in FedShift's format: drop Flower's own console handler
    (its records still reach the root logger's), log at INFO (DEBUG when ``verbose``)
    and, unless ``verbose``, drop :data:`FLOWER_NOISE`. Calling it again is harmless."""
    from flwr.common.logger import ConsoleHandler

    flower = logging.getLogger("flwr")
    for handler in list(flower.handlers):
        if isinstance(handler, ConsoleHandler):
            flower.removeHandler(handler)
    flower.propagate = True
    flower.setLevel(logging.DEBUG if verbose else logging.INFO)
    for old in [f for f in flower.filters if isinstance(f, _DropFlowerNoise)]:
        flower.removeFilter(old)
    if not verbose:
        flower.addFilter(_DropFlowerNoise())


def joins_cluster() -> bool:
    """Whether the simulation joins a running Ray cluster (``RAY_ADDRESS`` set, as after
    ``ray start --head``; ``ray.init`` then connects to it) instead of starting its own."""
    return bool(os.environ.get("RAY_ADDRESS"))


def ray_init_args(verbose: bool) -> dict[str, object]:
    """``ray.init`` arguments: all cores (of this machine; none when joining a cluster,
    whose resources are its own and which Ray refuses to be told), no dashboard; Ray's own
    log at ERROR unless ``verbose`` (INFO); the workers' output forwarded to this console."""
    args: dict[str, object] = {
        "include_dashboard": False,
        "logging_level": "INFO" if verbose else "ERROR",
        "log_to_driver": True,
    }
    if not joins_cluster():
        args["num_cpus"] = os.cpu_count() or 1
    return args


def backend_config(cfg: RunConfig, verbose: bool) -> dict[str, object]:
    """Flower's Ray backend config: each site's cores and GPU share, and ``ray.init``'s.

    ``simulation.gpus_per_site=auto`` is sized here, where torch may be imported: where
    torch sees CUDA GPUs (and ``seg.train.device`` is not cpu), the sites that run at once
    share them (:func:`fedshift.model.device.gpu_share`), else 0 (Ray then hides the GPU
    from the sites). Ray is told the GPUs torch sees, so both count the same devices.
    """
    from fedshift.model.device import cuda_count, gpu_share

    init_args = ray_init_args(verbose)
    total_cpus = os.cpu_count() or 1  # what ray_init_args starts Ray with
    cpus = cfg.simulation.cpus_per_site
    n_gpus = cuda_count()
    if n_gpus and not joins_cluster():
        init_args["num_gpus"] = n_gpus
    share = cfg.simulation.fixed_gpus
    if share is None:
        share = gpu_share(len(cfg.all_sites), cpus, total_cpus, n_gpus)
        if cfg.seg.train.device == "cpu":
            share = 0.0
    log.info(
        "each simulated site: %g CPU core(s), %g of a GPU (%d GPU(s) visible to torch)",
        cpus,
        share,
        n_gpus,
    )
    return {"client_resources": {"num_cpus": cpus, "num_gpus": share}, "init_args": init_args}


@contextmanager
def _worker_env(verbose: bool) -> Iterator[None]:
    """Environment the Ray workers inherit while the simulation runs: unless ``verbose``,
    Flower's own console in each worker at ERROR (FLWR_LOG_LEVEL; it warned "Manually
    terminating ClientAppActor" for every worker at the end of each run). A level the user
    set is kept."""
    if verbose or "FLWR_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["FLWR_LOG_LEVEL"] = "ERROR"
    try:
        yield
    finally:
        os.environ.pop("FLWR_LOG_LEVEL", None)


def run_flower_simulation(cfg: RunConfig) -> tuple[RunState, float]:
    """Run ``cfg`` (a federated strategy) in simulation; returns (state, wall seconds)."""
    from flwr.simulation import run_simulation

    from fedshift.fl.apps import make_client_app, make_server_app

    verbose = logs.verbose()
    quiet_flower(verbose)
    flat = flatten(cfg)
    n_sites = len(cfg.all_sites)
    backend = backend_config(cfg, verbose)
    start = time.perf_counter()
    with warnings.catch_warnings(), _worker_env(verbose):
        warnings.simplefilter("ignore", DeprecationWarning)
        if not verbose:
            warnings.filterwarnings("ignore", RAY_ACCELERATOR_TIP, FutureWarning)
        run_simulation(
            server_app=make_server_app(flat),
            client_app=make_client_app(flat),
            num_supernodes=n_sites,
            backend_config=backend,
            verbose_logging=verbose,
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
