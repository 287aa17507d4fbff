"""Settings of ``fedshift adapt`` (``key=value`` on its command line).

Declared like every FedShift config (:mod:`fedshift.config`): each field documents itself
(:func:`~fedshift.config.setting`), each section checks itself when built, errors name the
key as it is typed (``tent.prior_weight=-1 is invalid: expected a number >= 0``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedshift.config import check, check_fields, one_of, section, setting
from fedshift.shift.config import SOLVERS, AlignConfig

#: adaptation methods, by command-line name (:mod:`fedshift.adapt.methods` implements them)
METHOD_NAMES = ("jdot", "tent", "pseudo", "adabn")
#: which parameters TENT updates: the normalisation layers' affine ones, or all
TENT_PARAMS = ("norm", "all")


@dataclass(frozen=True)
class GuardConfig:
    """The collapse guard (:mod:`fedshift.adapt.guard`): the predicted lesion load must stay
    in the federation's range."""

    every: int = setting(
        10, "steps between two checks of the predicted lesion load (and one after the last step)"
    )
    images: int = setting(
        4,
        "adaptation images the load is measured on (the first N by case name; 0: all of "
        "them); each check segments them whole, as fedshift predict does",
    )
    quantiles: tuple[float, float] = setting(
        (0.01, 0.99),
        "the federation's range is these quantiles of its lesion volume per case (mL), "
        "read off the reference's secure lesion-volume histogram",
    )
    factor: float = setting(
        2.0,
        "the range is widened to [q_low / factor, q_high * factor]: a site's mean load may "
        "differ from the federation's cases by this much before the guard stops",
    )
    relative_factor: float = setting(
        4.0,
        "without a reference in the package (pseudo, adabn), the range is the starting "
        "model's own load on these images, times [1 / relative_factor, relative_factor]",
    )

    def __post_init__(self) -> None:
        check_fields(self, "guard")
        check(self.every >= 1, "guard.every", self.every, "an integer >= 1")
        check(self.images >= 0, "guard.images", self.images, "an integer >= 0")
        lo, hi = self.quantiles
        check(
            0 <= lo < hi <= 1, "guard.quantiles", self.quantiles, "[low,high], 0 <= low < high <= 1"
        )
        check(self.factor >= 1, "guard.factor", self.factor, "a number >= 1")
        check(
            self.relative_factor > 1, "guard.relative_factor", self.relative_factor, "a number > 1"
        )


@dataclass(frozen=True)
class JdotConfig:
    """DeepJDOT at the site alone (:mod:`fedshift.adapt.methods.jdot`); the coupling's
    settings, as ``seg.align`` has them in a federated run."""

    alpha: float = setting(0.1, "weight of the embedding distance (per feature)")
    lam: float = setting(1.0, "weight of the label cost CE(y_r, f(g(x)))")
    n_voxels: int = setting(256, "site embeddings coupled per step (inside the brain)")
    n_reference: int = setting(256, "reference samples per step")
    lesion_fraction: float = setting(
        0.01,
        "the most voxels predicted lesion a coupling holds, as a share of n_voxels; the "
        "reference draws the same share from its lesion Gaussian",
    )
    solver: str = setting("emd", f"coupling solver: {', '.join(SOLVERS)}")
    reg: float = setting(0.05, "entropic regularisation (sinkhorn, unbalanced)")

    def __post_init__(self) -> None:
        check_fields(self, "jdot")
        for key in ("alpha", "lam"):
            check(getattr(self, key) >= 0, f"jdot.{key}", getattr(self, key), "a number >= 0")
        for key in ("n_voxels", "n_reference"):
            check(getattr(self, key) >= 2, f"jdot.{key}", getattr(self, key), "an integer >= 2")
        check(
            0 <= self.lesion_fraction < 1,
            "jdot.lesion_fraction",
            self.lesion_fraction,
            "a number in [0, 1)",
        )
        one_of("jdot.solver", self.solver, SOLVERS)
        check(self.reg > 0, "jdot.reg", self.reg, "a number > 0")

    def align(self) -> AlignConfig:
        """The same settings as the alignment code (:mod:`fedshift.shift.jdot`) reads them."""
        return AlignConfig(
            method="jdot",
            alpha=self.alpha,
            lam=self.lam,
            n_voxels=self.n_voxels,
            n_reference=self.n_reference,
            lesion_fraction=self.lesion_fraction,
            solver=self.solver,
            reg=self.reg,
        )


@dataclass(frozen=True)
class TentConfig:
    """Entropy minimisation with a class-ratio prior (:mod:`fedshift.adapt.methods.tent`)."""

    prior_weight: float = setting(
        1.0,
        "weight of KL(prior lesion ratio || predicted lesion ratio) next to the mean "
        "entropy; 0 is plain TENT, which can drift to predicting no lesion at all",
    )
    params: str = setting(
        "norm",
        f"parameters updated: {', '.join(TENT_PARAMS)}; norm, the normalisation layers' "
        "scale and shift, as TENT does",
    )

    def __post_init__(self) -> None:
        check_fields(self, "tent")
        check(self.prior_weight >= 0, "tent.prior_weight", self.prior_weight, "a number >= 0")
        one_of("tent.params", self.params, TENT_PARAMS)


@dataclass(frozen=True)
class PseudoConfig:
    """Self-training on the model's confident voxels (:mod:`fedshift.adapt.methods.pseudo`)."""

    hi: float = setting(0.9, "a voxel whose lesion probability is above this is a lesion label")
    lo: float = setting(
        0.1,
        "a voxel whose lesion probability is below this is a background label; voxels in "
        "between are left out of the loss",
    )
    refresh_every: int = setting(
        10, "steps between two refreshes of the labels by the current model"
    )

    def __post_init__(self) -> None:
        check_fields(self, "pseudo")
        check(0 <= self.lo < self.hi <= 1, "pseudo.hi", self.hi, f"a number in ({self.lo}, 1]")
        check(
            self.refresh_every >= 1, "pseudo.refresh_every", self.refresh_every, "an integer >= 1"
        )


@dataclass(frozen=True)
class AdaptConfig:
    """Everything ``fedshift adapt`` does besides which package, site and output."""

    method: str = setting("jdot", f"adaptation method: {', '.join(METHOD_NAMES)}")
    steps: int = setting(50, "optimiser steps (adabn: batches its statistics average over)")
    lr: float = setting(
        1e-4,
        "Adam learning rate; the federation's default, seg.train.lr 1e-3 times "
        "seg.align.unlabelled_lr_scale 0.1, is what a site without labels aligns at in a run",
    )
    batch_size: int = setting(0, "patches per step; 0: the package's seg.train.batch_size")
    patch_size: tuple[int, ...] = setting(
        (), "patch in voxels of the model grid, e.g. [48,48,48]; empty: the package's"
    )
    max_images: int = setting(
        16,
        "site images adapted on at most (a seeded draw when the split has more; 0: all); "
        "they are preprocessed once and kept in memory",
    )
    seed: int = setting(0, "seed of the image draw, patch sampling and reference samples")
    guard: GuardConfig = section(GuardConfig, "the collapse guard")
    jdot: JdotConfig = section(JdotConfig, "method jdot")
    tent: TentConfig = section(TentConfig, "method tent")
    pseudo: PseudoConfig = section(PseudoConfig, "method pseudo")

    def __post_init__(self) -> None:
        check_fields(self, "")
        one_of("method", self.method, METHOD_NAMES)
        check(self.steps >= 1, "steps", self.steps, "an integer >= 1")
        check(self.lr > 0, "lr", self.lr, "a number > 0")
        check(self.batch_size >= 0, "batch_size", self.batch_size, "an integer >= 0")
        check(
            len(self.patch_size) in (0, 3) and all(p > 0 for p in self.patch_size),
            "patch_size",
            self.patch_size,
            "3 positive integers, or [] for the package's",
        )
        check(self.max_images >= 0, "max_images", self.max_images, "an integer >= 0")
        check(self.seed >= 0, "seed", self.seed, "an integer >= 0")
