"""Settings of a site's segmentation model: network, preprocessing, augmentation, training.

Frozen dataclasses with OmegaConf-compatible types, so that
``load_config(SegConfig, yaml_files=[...], overrides=["train.lr=3e-4"])`` builds them and
they travel inward as one object. Every method, baselines included, uses the same
:class:`PreprocessConfig` (a gain that N4 alone would give is no gain).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedshift.errors import ConfigError
from fedshift.shift.config import AlignConfig

#: normalisation layers of the network, by config name (MONAI ``Norm`` factory arguments)
NORMS: dict[str, tuple[str, dict[str, object]]] = {
    "instance": ("instance", {"affine": True}),
    "batch": ("batch", {}),
}
#: activations of the network, by config name (MONAI ``Act`` factory names)
ACTS: tuple[str, ...] = ("prelu", "relu", "leakyrelu")
#: sliding-window blending modes (``monai.inferers.sliding_window_inference``)
BLEND_MODES: tuple[str, ...] = ("gaussian", "constant")


def _check(ok: bool, key: str, value: object, expect: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: expected {expect}")


@dataclass(frozen=True)
class ModelConfig:
    """A MONAI 3D UNet split as features ``g`` and a 1x1x1 head ``f``.

    The default (16-32-64-128 channels, three 2x downsamplings, ~0.6 M parameters) is
    small enough to train on a CPU at 3 mm (volumes ~66x78x63 voxels). Patch sizes must be
    divisible by the product of ``strides``.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1
    feat_dim: int = 16  # channels of the per-voxel embedding g(x)
    dropout: float = 0.0
    norm: str = "instance"
    act: str = "prelu"
    in_channels: int = 1
    num_classes: int = 2  # background, lesion

    @property
    def divisor(self) -> int:
        """Spatial sizes fed to the UNet must be multiples of this."""
        out = 1
        for s in self.strides:
            out *= s
        return out

    def validate(self) -> None:
        _check(len(self.channels) >= 2, "model.channels", self.channels, "at least 2 levels")
        _check(all(c > 0 for c in self.channels), "model.channels", self.channels, "positive ints")
        _check(
            len(self.strides) == len(self.channels) - 1,
            "model.strides",
            self.strides,
            f"{len(self.channels) - 1} values (one fewer than model.channels)",
        )
        _check(all(s >= 1 for s in self.strides), "model.strides", self.strides, "ints >= 1")
        _check(self.num_res_units >= 0, "model.num_res_units", self.num_res_units, ">= 0")
        _check(self.feat_dim > 0, "model.feat_dim", self.feat_dim, "> 0")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "in [0, 1)")
        _check(self.norm in NORMS, "model.norm", self.norm, f"one of {sorted(NORMS)}")
        _check(self.act in ACTS, "model.act", self.act, f"one of {list(ACTS)}")
        _check(self.num_classes == 2, "model.num_classes", self.num_classes, "2 (binary lesion)")


@dataclass(frozen=True)
class PreprocessConfig:
    """Standard preprocessing, each step switchable; results are cached per site.

    Order: head mask -> N4 bias-field correction inside it -> brain mask on the corrected
    image -> z-score inside the brain mask (the head mask when ``brain_mask`` is off).
    """

    n4: bool = True
    n4_shrink: int = 4  # N4 fits the field on the image shrunk by this factor per axis
    n4_iterations: tuple[int, ...] = (50, 50, 50, 50)  # per fitting level (4 levels)
    n4_convergence: float = 1e-4
    brain_mask: bool = True
    zscore: bool = True
    clip: float = 5.0  # z-scores are clipped to [-clip, clip]; 0 disables clipping
    zero_background: bool = True  # set voxels outside the mask to 0 after z-scoring

    def validate(self) -> None:
        _check(self.n4_shrink >= 1, "preprocess.n4_shrink", self.n4_shrink, "an int >= 1")
        _check(
            len(self.n4_iterations) >= 1 and all(i > 0 for i in self.n4_iterations),
            "preprocess.n4_iterations",
            self.n4_iterations,
            "one or more positive ints",
        )
        _check(self.n4_convergence > 0, "preprocess.n4_convergence", self.n4_convergence, "> 0")
        _check(self.clip >= 0, "preprocess.clip", self.clip, ">= 0")


@dataclass(frozen=True)
class AugmentConfig:
    """Intensity augmentation (MONAI) and flips, applied to training patches only.

    Each ``*_prob`` is the probability per patch; 0 switches the augmentation off.
    """

    bias_field_prob: float = 0.3
    bias_field_coeff: tuple[float, float] = (0.0, 0.3)
    contrast_prob: float = 0.3
    contrast_gamma: tuple[float, float] = (0.7, 1.5)
    noise_prob: float = 0.2
    noise_std: float = 0.1  # in z-score units
    smooth_prob: float = 0.2
    smooth_sigma: tuple[float, float] = (0.5, 1.0)  # in voxels
    flip_prob: float = 0.5  # per axis in ``flip_axes``
    flip_axes: tuple[int, ...] = (0, 1, 2)

    def validate(self) -> None:
        for key in ("bias_field_prob", "contrast_prob", "noise_prob", "smooth_prob", "flip_prob"):
            value = getattr(self, key)
            _check(0.0 <= value <= 1.0, f"augment.{key}", value, "a probability in [0, 1]")
        _check(
            all(a in (0, 1, 2) for a in self.flip_axes),
            "augment.flip_axes",
            self.flip_axes,
            "axes among 0, 1, 2",
        )
        for key in ("bias_field_coeff", "contrast_gamma", "smooth_sigma"):
            lo, hi = getattr(self, key)
            _check(0 <= lo <= hi, f"augment.{key}", (lo, hi), "a range 0 <= low <= high")


@dataclass(frozen=True)
class TrainConfig:
    """Local training of one site for one federated round.

    A step is one optimiser update on ``batch_size`` patches of ``patch_size`` voxels,
    ``pos_ratio : neg_ratio`` centred on lesion / brain background voxels.
    """

    patch_size: tuple[int, int, int] = (48, 48, 48)
    batch_size: int = 2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    local_steps: int = 50  # optimiser steps per round
    pos_ratio: float = 1.0
    neg_ratio: float = 1.0
    val_fraction: float = 0.2  # share of labelled training cases held out for validation
    amp: bool = True  # mixed precision, used only on cuda
    seed: int = 0
    device: str = "auto"  # "auto" (cuda when present), "cpu", "cuda", "cuda:1"
    num_workers: int = 0  # data-loader processes; 0 loads in the training process
    keep_optimizer_state: bool = False  # False: a fresh AdamW every round

    def validate(self, divisor: int = 1) -> None:
        _check(
            len(self.patch_size) == 3 and all(p > 0 and p % divisor == 0 for p in self.patch_size),
            "train.patch_size",
            self.patch_size,
            f"3 positive multiples of {divisor} (the product of model.strides)",
        )
        _check(self.batch_size >= 1, "train.batch_size", self.batch_size, ">= 1")
        _check(self.lr > 0, "train.lr", self.lr, "> 0")
        _check(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, ">= 0")
        _check(self.local_steps >= 1, "train.local_steps", self.local_steps, ">= 1")
        _check(
            self.pos_ratio >= 0 and self.neg_ratio >= 0 and self.pos_ratio + self.neg_ratio > 0,
            "train.pos_ratio/neg_ratio",
            (self.pos_ratio, self.neg_ratio),
            "non-negative, not both 0",
        )
        _check(0.0 <= self.val_fraction < 1.0, "train.val_fraction", self.val_fraction, "in [0, 1)")
        _check(self.num_workers >= 0, "train.num_workers", self.num_workers, ">= 0")
        _check(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "train.device",
            self.device,
            "'auto', 'cpu' or 'cuda[:N]'",
        )


@dataclass(frozen=True)
class EvalConfig:
    """Sliding-window inference and lesion-wise metrics."""

    sw_batch_size: int = 2
    sw_overlap: float = 0.5
    sw_mode: str = "gaussian"
    threshold: float = 0.5  # lesion probability cut until tuned on the validation split
    threshold_grid: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
    detection_overlap: float = 0.1  # a lesion is detected when >= this share of it overlaps
    connectivity: int = 26  # 6, 18 or 26 neighbours for lesion components

    def validate(self) -> None:
        _check(self.sw_batch_size >= 1, "eval.sw_batch_size", self.sw_batch_size, ">= 1")
        _check(0.0 <= self.sw_overlap < 1.0, "eval.sw_overlap", self.sw_overlap, "in [0, 1)")
        _check(
            self.sw_mode in BLEND_MODES, "eval.sw_mode", self.sw_mode, f"one of {list(BLEND_MODES)}"
        )
        _check(0.0 < self.threshold < 1.0, "eval.threshold", self.threshold, "in (0, 1)")
        _check(
            len(self.threshold_grid) > 0 and all(0 < t < 1 for t in self.threshold_grid),
            "eval.threshold_grid",
            self.threshold_grid,
            "values in (0, 1)",
        )
        _check(
            0.0 < self.detection_overlap <= 1.0,
            "eval.detection_overlap",
            self.detection_overlap,
            "in (0, 1]",
        )
        _check(
            self.connectivity in (6, 18, 26), "eval.connectivity", self.connectivity, "6, 18 or 26"
        )


@dataclass(frozen=True)
class SegConfig:
    """Everything a site needs to train and evaluate its segmentation model."""

    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    align: AlignConfig = field(default_factory=AlignConfig)  # seg.align.method jdot / moments

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad key."""
        self.model.validate()
        self.align.validate()
        self.preprocess.validate()
        self.augment.validate()
        self.train.validate(self.model.divisor)
        self.eval.validate()
