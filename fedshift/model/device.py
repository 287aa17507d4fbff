"""Device choice and mixed precision: ``cuda`` when present, AMP only there."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from fedshift.errors import ConfigError


def choose_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; other names are checked.

    Raises
    ------
    ConfigError
        a cuda device is asked for on a machine without one, or the name is unknown.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"train.device={name!r} is not a device name: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but this machine has no CUDA device; use 'auto'")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"train.device={name!r} is not supported: expected 'auto', 'cpu' or 'cuda[:N]'"
        )
    return device


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
