"""Device choice and mixed precision: ``cuda`` when present, AMP only there.

A run's device settings are checked once, when a command starts and before any data is
generated (:func:`check_devices`); :func:`choose_device` checks them again where a model is
built (a deployed site learns the run config only with the run's first message).
:func:`gpu_share` sizes the share of a GPU each simulated site asks Ray for.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

import torch

from fedshift.config import invalid
from fedshift.errors import ConfigError

#: Ray counts resources in units of 1/10000 (MIN_RESOURCE_GRANULARITY). :func:`gpu_share`
#: rounds down to them, so k shares never sum to more than one GPU and Flower's pool size,
#: ``int(n_gpus / share)``, is never one short (it is with a plain ``1 / k`` for k = 93, 99,
#: ...: 1 / (1 / 93) < 93 in floating point)
RAY_RESOURCE_UNITS = 10_000
#: what ``seg.train.device`` accepts
DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


def cuda_count() -> int:
    """CUDA devices torch sees in this process (0 without CUDA; CUDA_VISIBLE_DEVICES applies)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def no_cuda(key: str, value: object, instead: str) -> ConfigError:
    """``KEY=VALUE is invalid: expected a CUDA GPU, and torch sees no CUDA device (...);
    use INSTEAD``: the one message for a setting that needs a GPU this machine lacks."""
    return invalid(
        key,
        value,
        "a CUDA GPU, and torch sees no CUDA device (torch.cuda.is_available() is False); "
        f"use {instead}",
    )


def choose_device(name: str = "auto", key: str = "seg.train.device") -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; other names are checked.

    ``key`` names the setting in errors.

    Raises
    ------
    ConfigError
        the name is not one of :data:`DEVICE_NAMES`, or a cuda device is asked for that
        torch does not see (:func:`no_cuda` when it sees none).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise invalid(key, name, DEVICE_NAMES) from None
    if device.type not in ("cpu", "cuda"):
        raise invalid(key, name, DEVICE_NAMES)
    if device.type == "cuda":
        count = cuda_count()
        if count == 0:
            raise no_cuda(key, name, "auto or cpu")
        if device.index is not None and device.index >= count:
            raise invalid(key, name, f"cuda or cuda:N with N < {count} (torch sees {_gpus(count)})")
    return device


def check_devices(
    train_device: str, gpus_per_site: float | None = None, cpus_per_site: float | None = None
) -> None:
    """Refuse device settings this machine cannot honour, before a command does any work.

    Parameters
    ----------
    train_device : ``seg.train.device``.
    gpus_per_site : ``simulation.gpus_per_site`` when the sites run in Flower's simulation
        engine and the share is explicit; None for ``auto`` (never more than there is) or
        when no simulation runs (``fedshift baseline`` trains in its own process).
    cpus_per_site : ``simulation.cpus_per_site`` when the sites run in the simulation
        engine (Ray is started with this machine's cores, ``os.cpu_count()``).

    Raises
    ------
    ConfigError
        one line naming the setting: cuda asked for without a CUDA GPU (:func:`no_cuda`),
        simulated sites asked to train on cuda without a share of the GPU (Ray hides the
        GPU from an actor that asks for none), a GPU share without a GPU or larger than
        the GPUs torch sees, more cores per site than the machine has.
    """
    if gpus_per_site == 0 and train_device.startswith("cuda"):
        raise invalid(
            "simulation.gpus_per_site",
            gpus_per_site,
            f"auto or a share > 0 with seg.train.device={train_device}: Ray hides the GPU "
            "from a simulated site that asks for no share of it",
        )
    choose_device(train_device, key="seg.train.device")
    if gpus_per_site:
        count = cuda_count()
        if count == 0:
            raise no_cuda("simulation.gpus_per_site", gpus_per_site, "auto or 0")
        if gpus_per_site > count:
            raise invalid(
                "simulation.gpus_per_site",
                gpus_per_site,
                f"auto or a share <= {count} (torch sees {_gpus(count)})",
            )
    cores = os.cpu_count() or 1
    if cpus_per_site is not None and cpus_per_site > cores:
        raise invalid(
            "simulation.cpus_per_site",
            cpus_per_site,
            f"at most {cores} (this machine's cores; no site would run)",
        )


def gpu_share(n_sites: int, cpus_per_site: float, total_cpus: int, n_gpus: int) -> float:
    """Share of one GPU each simulated site asks for, so that every site that runs at
    once has its share on a GPU (``simulation.gpus_per_site=auto``).

    Flower's Ray backend builds its pool of site workers (actors) once, as many as fit:
    ``min(int(total_cpus / cpus_per_site), int(n_gpus / share))``
    (``flwr.simulation.ray_transport.ray_actor.pool_size_from_resources``), and a site
    runs only on a worker. So ``k = min(n_sites, int(total_cpus / cpus_per_site))``
    sites run at once (at least 1), and ``k`` workers need ``ceil(k / n_gpus)`` on each
    GPU: Ray places a fractional request on one GPU, never across two. The share is
    ``1 / ceil(k / n_gpus)`` rounded down to Ray's units (:data:`RAY_RESOURCE_UNITS`); on
    one GPU the pool then holds ``k`` workers (up to 109 at once; a few more beyond).
    Asking for less (``1 /
    total_cpus``, say) would start a worker per core although only ``k`` sites run at
    once, and every worker that runs a site keeps its own CUDA context and allocator cache
    on the GPU.

    Parameters
    ----------
    n_sites : simulated sites (SuperNodes).
    cpus_per_site : ``simulation.cpus_per_site``, > 0.
    total_cpus : the cores Ray is started with.
    n_gpus : the GPUs Ray is started with; 0 gives 0.0 (the sites train on the CPU).

    Returns
    -------
    float : the share, in (0, 1], or 0.0.
    """
    if n_gpus <= 0:
        return 0.0
    at_once = max(1, min(n_sites, int(total_cpus / cpus_per_site)))
    per_gpu = math.ceil(at_once / n_gpus)
    return math.floor(RAY_RESOURCE_UNITS / per_gpu) / RAY_RESOURCE_UNITS


def describe_devices() -> str:
    """One line for a start-up log: what ``seg.train.device=auto`` will train on here."""
    count = cuda_count()
    if count == 0:
        return (
            f"training device: cpu (torch {torch.__version__} sees no CUDA device; a run "
            "with seg.train.device=cuda is refused here)"
        )
    names = sorted({torch.cuda.get_device_name(i) for i in range(count)})
    return f"training device: cuda ({_gpus(count)}: {', '.join(names)}; torch {torch.__version__})"


def _gpus(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"


def use_amp(device: torch.device, enabled: bool) -> bool:
    """Mixed precision is used on cuda only (CPU autocast is slower for 3D convolutions)."""
    return enabled and device.type == "cuda"


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast`` (float16) when :func:`use_amp`, otherwise a no-op context."""
    if use_amp(device, enabled):
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """A GradScaler that is active only with AMP (a disabled one passes values through)."""
    return torch.amp.GradScaler("cuda", enabled=use_amp(device, enabled))


@contextlib.contextmanager
def seeded_torch(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the caller's state afterwards.

    Layers that draw from the global RNG (weight init, dropout) cannot take a
    ``torch.Generator``; this confines their draws to a seed from config.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
