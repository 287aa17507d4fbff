"""The collapse guard: unsupervised adaptation must not talk the model out of its task.

Without labels nothing stops an adaptation loss from being minimised by predicting no
lesion at all (entropy is lowest there; self-training on a few confident background
voxels reinforces itself), or lesion everywhere. So every ``guard.every`` steps the guard
segments a few of the site's adaptation images whole, as ``fedshift predict`` does (sliding
window, the package's threshold), and measures the **predicted lesion load**: the mean
lesion volume per case in mL. It stops the adaptation, and puts back the weights of the
last check that passed, when that load leaves the allowed range:

- **with the federation's reference** in the package: the ``guard.quantiles`` (1st and
  99th percentiles by default) of the federation's lesion volume per case, read off the
  secure lesion-volume histogram (sums over >= 3 sites' labelled cases), widened by
  ``guard.factor`` on both sides (x2 by default: ``[q01 / 2, q99 * 2]``). The low end is
  never below the histogram's first non-zero edge (0.01 mL), so an adaptation that erases
  every lesion stops even where the federation has lesion-free cases;
- **without a reference** (pseudo, adabn on an older package): the starting model's own
  load on these images times ``[1 / guard.relative_factor, guard.relative_factor]``.

When the starting model is already outside the range (a site the federation does not
resemble), the range is stretched to include it with the same margin (its load times or
over ``guard.factor``): the guard then stops a drift further out, not the model as
received nor noise about it. Every measurement is recorded; they stay at the site.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fedshift.adapt.config import GuardConfig
from fedshift.adapt.data import SiteImage
from fedshift.bundle.io import ModelBundle
from fedshift.model.evaluate import predict_proba
from fedshift.shift.intensity import histogram_quantiles
from fedshift.shift.reference import Reference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadRange:
    """Allowed predicted lesion load, mL per case, and where it comes from (in words)."""

    low: float
    high: float
    source: str

    def __contains__(self, value: float) -> bool:
        return bool(np.isfinite(value)) and self.low <= value <= self.high

    def including(self, value: float, factor: float) -> LoadRange:
        """This range stretched to hold ``value`` with the same margin ``factor`` the
        federation's quantiles get: ``value * factor`` above it, ``value / factor`` below."""
        if value in self or not np.isfinite(value):
            return self
        note = f"{self.source}; stretched to the starting model's {value:.3g} mL x{factor:g}"
        return LoadRange(min(self.low, value / factor), max(self.high, value * factor), note)


def federation_range(reference: Reference, cfg: GuardConfig) -> LoadRange | None:
    """The federation's range from its lesion-volume histogram (None when no labelled
    case contributed one)."""
    pmf = np.asarray(reference.lesion_volume_pmf, dtype=np.float64)
    edges = np.asarray(reference.volume_edges, dtype=np.float64)
    if reference.labelled_cases <= 0 or not pmf.sum() > 0:
        return None
    q_lo, q_hi = histogram_quantiles(pmf, edges, np.asarray(cfg.quantiles, dtype=np.float64))
    floor = float(edges[edges > 0][0]) if np.any(edges > 0) else 0.0
    low = max(float(q_lo) / cfg.factor, floor)
    high = max(float(q_hi) * cfg.factor, low)
    levels = "-".join(f"{100 * q:g}" for q in cfg.quantiles)
    source = (
        f"federation: {levels} percentiles of the lesion volume per case of "
        f"{reference.labelled_cases:g} labelled cases, widened x{cfg.factor:g}"
    )
    return LoadRange(low, high, source)


def relative_range(start: float, cfg: GuardConfig, floor: float) -> LoadRange:
    """The starting model's own load times ``[1 / relative_factor, relative_factor]``
    (``floor`` mL at least at the top, so a start of 0 still allows some lesion)."""
    f = cfg.relative_factor
    source = f"the starting model's load x [1/{f:g}, {f:g}] (the package has no reference)"
    return LoadRange(start / f, max(start * f, floor), source)


def lesion_load(
    model: nn.Module, images: Sequence[SiteImage], bundle: ModelBundle, device: torch.device
) -> float:
    """Mean predicted lesion volume per case (mL): each image segmented whole by sliding
    window and cut at the package's threshold, as ``fedshift predict`` does on the model
    grid."""
    volumes = []
    for im in images:
        prob = predict_proba(model, torch.from_numpy(im.image[None]), bundle.seg, device)
        volumes.append(float((prob.numpy() >= bundle.threshold).sum()) * im.voxel_ml)
    return float(np.mean(volumes))


@dataclass
class CollapseGuard:
    """Checks the predicted lesion load and keeps the weights of the last check passed.

    Attributes
    ----------
    allowed : the range (after :meth:`start`, stretched to include the start).
    values : ``{"step", "lesion_ml", "inside"}`` per check, the start as step 0.
    kept_step : the step whose weights are kept.
    """

    allowed: LoadRange | None
    images: Sequence[SiteImage]
    bundle: ModelBundle
    device: torch.device
    cfg: GuardConfig
    values: list[dict[str, float | int | bool]] = field(default_factory=list)
    kept_step: int = 0
    _kept: dict[str, torch.Tensor] = field(default_factory=dict)

    def start(self, model: nn.Module) -> float:
        """Measure the model as received and keep its weights."""
        value = lesion_load(model, self.images, self.bundle, self.device)
        if self.allowed is None:
            floor = float(np.prod(self.bundle.spacing)) / 1000.0
            self.allowed = relative_range(value, self.cfg, floor)
        elif value not in self.allowed:
            log.warning(
                "the model as received predicts %.3g mL of lesion per case here, outside "
                "the federation's [%.3g, %.3g] mL; the guard stops only a drift well further out",
                value,
                self.allowed.low,
                self.allowed.high,
            )
            self.allowed = self.allowed.including(value, self.cfg.factor)
        self._record(0, value, True)
        self._keep(model, 0)
        return value

    def check(self, model: nn.Module, step: int) -> bool:
        """Measure after ``step``; True and keep the weights when inside the range, False
        and put the last kept weights back into ``model`` otherwise."""
        assert self.allowed is not None, "call start() first"
        value = lesion_load(model, self.images, self.bundle, self.device)
        inside = value in self.allowed
        self._record(step, value, inside)
        if inside:
            self._keep(model, step)
        else:
            model.load_state_dict(self._kept)
        return inside

    @property
    def last(self) -> float:
        return float(self.values[-1]["lesion_ml"])

    def _record(self, step: int, value: float, inside: bool) -> None:
        self.values.append({"step": step, "lesion_ml": value, "inside": inside})

    def _keep(self, model: nn.Module, step: int) -> None:
        self._kept = copy.deepcopy({k: v.detach() for k, v in model.state_dict().items()})
        self.kept_step = step
