"""One adaptation: a package and a site's images in, an adapted package out.

:func:`adapt_package` loads the package (never modifying it), asks the method whether it
can adapt it before reading any image, preprocesses the site's images as ``fedshift
predict`` would (:mod:`fedshift.adapt.data`), runs the method's steps on a copy of the
network under the collapse guard (:mod:`fedshift.adapt.guard`), then writes the adapted
package (:func:`fedshift.bundle.adapted_bundle`: same layout, settings and threshold,
the adaptation recorded in its metadata). Everything runs and stays at the site.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedshift import __version__
from fedshift.adapt.config import AdaptConfig
from fedshift.adapt.data import Patches, SiteImage, load_site_images, site_scans
from fedshift.adapt.guard import CollapseGuard, federation_range
from fedshift.adapt.methods import AdaptContext, Method, method_class
from fedshift.atomic import json_safe
from fedshift.bundle import adapted_bundle, load_bundle, package_digest
from fedshift.bundle.io import ModelBundle
from fedshift.bundle.layout import METADATA
from fedshift.errors import ConfigError, UsageError
from fedshift.logs import Progress
from fedshift.model.device import choose_device, seeded_torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdaptResult:
    """What one adaptation did (the ``adaptation`` record of the package, and where).

    Attributes
    ----------
    package : the adapted package's folder.
    record : the metadata's ``adaptation`` section (JSON values): method, steps run and
        kept, settings, images used (a count), stop reason, guard range and values, date,
        the source package's folder and SHA-256, device, seconds.
    """

    package: Path
    record: dict[str, Any]

    @property
    def stop_reason(self) -> str:
        return str(self.record["stop_reason"])


def open_package(model_dir: str | os.PathLike[str]) -> ModelBundle:
    """The package to adapt; a run folder is pointed to the packages it holds."""
    root = Path(model_dir)
    if not (root / METADATA).is_file() and (root / "checkpoints").is_dir():
        raise UsageError(
            f"{root} is a run folder: adapt a package, {root / 'model'} (the global one) or "
            f"{root / 'sites'}/<site>/model (a site's, with its intensity map)"
        )
    return load_bundle(root)


def _check_out(out_dir: Path, model_dir: Path, site_dir: Path) -> None:
    out, model = out_dir.resolve(), model_dir.resolve()
    if out == model or model in out.parents:
        raise UsageError(f"--out {out_dir} is inside the package adapted from, which stays as is")
    if out == site_dir.resolve() or site_dir.resolve() in out.parents:
        raise UsageError(f"--out {out_dir} is inside the site folder, which is only read")


def _device(name: str) -> torch.device:
    try:
        return choose_device(name, key="--device")
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _settings(cfg: AdaptConfig) -> dict[str, Any]:
    """The settings that apply to the method used (other methods' sections left out)."""
    tree = asdict(cfg)
    for name in ("jdot", "tent", "pseudo"):
        if name != cfg.method:
            tree.pop(name)
    return tree


def _patch(bundle: ModelBundle, cfg: AdaptConfig) -> tuple[int, ...]:
    """The patch size: ``cfg.patch_size`` or the package's, checked against the network."""
    patch = tuple(cfg.patch_size) or tuple(bundle.seg.train.patch_size)
    divisor = bundle.seg.model.divisor
    if any(p % divisor for p in patch):
        raise ConfigError(f"patch_size={list(patch)} is invalid: expected multiples of {divisor}")
    return patch


def _context(
    bundle: ModelBundle, images: list[SiteImage], cfg: AdaptConfig, device: torch.device
) -> AdaptContext:
    return AdaptContext(
        model=copy.deepcopy(bundle.network).to(device),
        bundle=bundle,
        images=images,
        patches=Patches(images, _patch(bundle, cfg)),
        cfg=cfg,
        batch_size=cfg.batch_size or bundle.seg.train.batch_size,
        device=device,
        rng=np.random.default_rng([cfg.seed, 1]),
    )


def _run_steps(method: Method, guard: CollapseGuard, cfg: AdaptConfig) -> tuple[int, str, float]:
    """The loop: (steps run, stop reason, mean loss)."""
    log.info(
        "adapt: %s on %d images; predicted lesion load %.3g mL per case at the start",
        cfg.method,
        len(method.ctx.images),
        guard.last,
    )
    losses = []
    step = 0
    with Progress(cfg.steps, f"adapt ({cfg.method})", "step", log) as bar:
        for step in range(1, cfg.steps + 1):
            losses.append(method.step(step))
            bar.update()
            if step % cfg.guard.every and step != cfg.steps:
                continue
            if not guard.check(method.ctx.model, step):
                low, high = guard.allowed.low, guard.allowed.high  # type: ignore[union-attr]
                reason = (
                    f"guard: predicted lesion load {guard.last:.3g} mL per case left "
                    f"[{low:.3g}, {high:.3g}] mL at step {step}; kept the weights of step "
                    f"{guard.kept_step}"
                )
                log.warning("adapt stopped: %s", reason)
                return step, reason, _mean(losses)
    return step, f"done: {cfg.steps} steps", _mean(losses)


def _mean(losses: list[float]) -> float:
    finite = [x for x in losses if np.isfinite(x)]
    return float(np.mean(finite)) if finite else float("nan")


def adapt_package(
    model_dir: str | os.PathLike[str],
    site_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: AdaptConfig,
    *,
    split: str = "train",
    device: str = "auto",
) -> AdaptResult:
    """Adapt the package at ``model_dir`` on the ``split`` images of ``site_dir`` and write
    the adapted package at ``out_dir``.

    Raises
    ------
    UsageError
        the method cannot adapt this package (no reference for jdot / tent, no batch norm
        for adabn: one line naming what is missing), ``out_dir`` lies inside the package
        or the site folder, the split holds no usable image, or ``device`` is unavailable.
    BundleError
        the package is refused (:func:`fedshift.bundle.load_bundle`).
    """
    model_dir, site_dir, out = Path(model_dir), Path(site_dir), Path(out_dir)
    _check_out(out, model_dir, site_dir)
    bundle = open_package(model_dir)
    source = {"package": str(bundle.root), "sha256": package_digest(model_dir)}
    cls = method_class(cfg.method)
    refusal = cls.refuse(bundle)
    if refusal:
        raise UsageError(refusal)
    _patch(bundle, cfg)
    torch_device = _device(device)
    started = time.perf_counter()
    rng = np.random.default_rng([cfg.seed, 0])
    images, skipped = load_site_images(bundle, site_scans(site_dir, split), cfg.max_images, rng)
    ctx = _context(bundle, images, cfg, torch_device)
    guarded = images[: cfg.guard.images] if cfg.guard.images else images
    allowed = federation_range(bundle.reference, cfg.guard) if bundle.reference else None
    guard = CollapseGuard(allowed, guarded, bundle, torch_device, cfg.guard)
    with seeded_torch(cfg.seed, torch_device):
        guard.start(ctx.model)
        method = cls(ctx)
        try:
            steps, reason, mean_loss = _run_steps(method, guard, cfg)
        finally:
            method.finish()
    record = {
        "method": cfg.method,
        "steps_asked": cfg.steps,
        "steps_run": steps,
        "kept_step": guard.kept_step,
        "stop_reason": reason,
        "stopped_by_guard": reason.startswith("guard"),
        "mean_loss": mean_loss,
        "settings": _settings(cfg),
        "split": split,
        "images": len(images),
        "images_skipped": skipped,
        "guard": _guard_record(guard),
        "method_values": method.record(),
        **_provenance(source, torch_device, started),
    }
    state = {k: v.detach().cpu() for k, v in ctx.model.state_dict().items()}
    path = adapted_bundle(bundle, out, state, json_safe(record))
    log.info("adapted package: %s (%s)", path, reason)
    return AdaptResult(path, record)


def _guard_record(guard: CollapseGuard) -> dict[str, Any]:
    assert guard.allowed is not None
    return {
        "range_ml": [guard.allowed.low, guard.allowed.high],
        "range_from": guard.allowed.source,
        "images": len(guard.images),
        "values": guard.values,
    }


def _provenance(source: dict[str, str], device: torch.device, started: float) -> dict[str, Any]:
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "device": str(device),
        "seconds": time.perf_counter() - started,
        "fedshift_version": __version__,
    }
