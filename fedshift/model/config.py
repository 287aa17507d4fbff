"""Settings of a site's segmentation model: network, preprocessing, augmentation, training.

Frozen dataclasses with OmegaConf-compatible types, so that
``load_config(SegConfig, yaml_files=[...], overrides=["train.lr=3e-4"])`` builds them and
they travel inward as one object. Every setting carries its help text
(:func:`fedshift.config.setting`); every section checks itself when it is built
(``__post_init__`` calls ``validate()``), errors naming the key as it sits in a run config
(``seg.train.lr``). Every method, baselines included, uses the same
:class:`PreprocessConfig` (a gain that N4 alone would give is no gain).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedshift.config import check, check_fields, one_of, section, setting
from fedshift.model.schedule import SCHEDULES
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
#: connectivity of lesion components: face, face+edge, face+edge+corner neighbours
CONNECTIVITIES: tuple[int, ...] = (6, 18, 26)


def _probability(key: str, value: float) -> None:
    check(0.0 <= value <= 1.0, key, value, "a probability in [0, 1]")


def _range(key: str, value: tuple[float, float]) -> None:
    lo, hi = value
    check(0 <= lo <= hi, key, value, "a range [low,high] with 0 <= low <= high")


@dataclass(frozen=True)
class ModelConfig:
    """A MONAI 3D UNet split as features ``g`` and a 1x1x1 head ``f``.

    The default (16-32-64-128 channels, three 2x downsamplings, ~0.6 M parameters) is
    small enough to train on a CPU at 3 mm (volumes ~66x78x63 voxels). Patch sizes must be
    divisible by the product of ``strides``.
    """

    channels: tuple[int, ...] = setting((16, 32, 64, 128), "UNet channels per level")
    strides: tuple[int, ...] = setting(
        (2, 2, 2), "downsampling factor between levels (one fewer than channels)"
    )
    num_res_units: int = setting(1, "residual units per UNet block")
    feat_dim: int = setting(16, "channels of the per-voxel embedding g(x)")
    dropout: float = setting(0.0, "dropout probability in the UNet blocks")
    norm: str = setting("instance", f"normalisation layer: {', '.join(NORMS)}")
    act: str = setting("prelu", f"activation: {', '.join(ACTS)}")
    in_channels: int = setting(1, "image channels (one: FLAIR)")
    num_classes: int = setting(2, "output classes: background, lesion")

    def __post_init__(self) -> None:
        self.validate()

    @property
    def divisor(self) -> int:
        """Spatial sizes fed to the UNet must be multiples of this."""
        out = 1
        for s in self.strides:
            out *= s
        return out

    def validate(self) -> None:
        """Raise :class:`~fedshift.errors.ConfigError` naming the first bad key."""
        check_fields(self, "seg.model")
        check(
            len(self.channels) >= 2 and all(c > 0 for c in self.channels),
            "seg.model.channels",
            self.channels,
            "at least 2 positive integers",
        )
        check(
            len(self.strides) == len(self.channels) - 1 and all(s >= 1 for s in self.strides),
            "seg.model.strides",
            self.strides,
            f"{len(self.channels) - 1} integers >= 1 (one fewer than seg.model.channels)",
        )
        check(
            self.num_res_units >= 0,
            "seg.model.num_res_units",
            self.num_res_units,
            "an integer >= 0",
        )
        check(self.feat_dim > 0, "seg.model.feat_dim", self.feat_dim, "an integer > 0")
        check(0.0 <= self.dropout < 1.0, "seg.model.dropout", self.dropout, "a number in [0, 1)")
        one_of("seg.model.norm", self.norm, list(NORMS))
        one_of("seg.model.act", self.act, ACTS)
        check(self.in_channels >= 1, "seg.model.in_channels", self.in_channels, "an integer >= 1")
        check(self.num_classes == 2, "seg.model.num_classes", self.num_classes, "2 (binary lesion)")


@dataclass(frozen=True)
class PreprocessConfig:
    """Standard preprocessing, each step switchable; results are cached per site.

    Order: head mask -> N4 bias-field correction inside it -> brain mask on the corrected
    image -> z-score inside the brain mask (the head mask when ``brain_mask`` is off).
    """

    n4: bool = setting(True, "N4 bias-field correction inside the head mask")
    n4_shrink: int = setting(4, "N4 fits the field on the image shrunk by this factor per axis")
    n4_iterations: tuple[int, ...] = setting(
        (50, 50, 50, 50), "N4 iterations per fitting level (one value per level)"
    )
    n4_convergence: float = setting(1e-4, "N4 convergence threshold")
    brain_mask: bool = setting(True, "brain mask on the corrected image (else the head mask)")
    zscore: bool = setting(True, "z-score intensities inside the mask")
    clip: float = setting(5.0, "z-scores are clipped to [-clip, clip]; 0 disables clipping")
    zero_background: bool = setting(True, "set voxels outside the mask to 0 after z-scoring")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~fedshift.errors.ConfigError` naming the first bad key."""
        check_fields(self, "seg.preprocess")
        check(self.n4_shrink >= 1, "seg.preprocess.n4_shrink", self.n4_shrink, "an integer >= 1")
        check(
            len(self.n4_iterations) >= 1 and all(i > 0 for i in self.n4_iterations),
            "seg.preprocess.n4_iterations",
            self.n4_iterations,
            "one or more positive integers",
        )
        check(
            self.n4_convergence > 0,
            "seg.preprocess.n4_convergence",
            self.n4_convergence,
            "a number > 0",
        )
        check(self.clip >= 0, "seg.preprocess.clip", self.clip, "a number >= 0")


@dataclass(frozen=True)
class AugmentConfig:
    """Intensity augmentation (MONAI) and flips, applied to training patches only.

    Each ``*_prob`` is the probability per patch; 0 switches the augmentation off.
    """

    bias_field_prob: float = setting(0.3, "probability of a random bias field (RandBiasField)")
    bias_field_coeff: tuple[float, float] = setting(
        (0.0, 0.3), "range of the bias field's coefficients"
    )
    contrast_prob: float = setting(0.3, "probability of a gamma contrast change")
    contrast_gamma: tuple[float, float] = setting((0.7, 1.5), "range of the contrast gamma")
    noise_prob: float = setting(0.2, "probability of Gaussian noise")
    noise_std: float = setting(0.1, "noise standard deviation, in z-score units")
    smooth_prob: float = setting(0.2, "probability of Gaussian smoothing")
    smooth_sigma: tuple[float, float] = setting(
        (0.5, 1.0), "range of the smoothing sigma, in voxels"
    )
    flip_prob: float = setting(0.5, "probability of a flip, per axis in flip_axes")
    flip_axes: tuple[int, ...] = setting((0, 1, 2), "axes that may be flipped (0, 1, 2)")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~fedshift.errors.ConfigError` naming the first bad key."""
        check_fields(self, "seg.augment")
        for key in ("bias_field_prob", "contrast_prob", "noise_prob", "smooth_prob", "flip_prob"):
            _probability(f"seg.augment.{key}", getattr(self, key))
        check(self.noise_std >= 0, "seg.augment.noise_std", self.noise_std, "a number >= 0")
        check(
            all(a in (0, 1, 2) for a in self.flip_axes),
            "seg.augment.flip_axes",
            self.flip_axes,
            "axes among 0, 1, 2",
        )
        for key in ("bias_field_coeff", "contrast_gamma", "smooth_sigma"):
            _range(f"seg.augment.{key}", getattr(self, key))


@dataclass(frozen=True)
class TrainConfig:
    """Local training of one site for one federated round.

    A step is one optimiser update on ``batch_size`` patches of ``patch_size`` voxels,
    ``pos_ratio : neg_ratio`` centred on lesion / brain background voxels. The learning
    rate moves between rounds and is constant within one (:mod:`fedshift.model.schedule`:
    ``warmup_rounds`` of linear warm-up, then ``lr_schedule``); the default, ``constant``
    without warm-up, trains at ``lr`` every round.
    """

    patch_size: tuple[int, int, int] = setting(
        (48, 48, 48), "training patch in voxels, multiples of the product of seg.model.strides"
    )
    batch_size: int = setting(2, "patches per optimiser step")
    lr: float = setting(1e-3, "AdamW learning rate")
    weight_decay: float = setting(1e-4, "AdamW weight decay")
    local_steps: int = setting(30, "optimiser steps per site per round")
    lr_schedule: str = setting(
        "constant",
        f"learning rate over rounds after the warm-up: {', '.join(SCHEDULES)} (to lr_min)",
    )
    warmup_rounds: int = setting(
        0, "rounds of linear warm-up before lr: round r <= W trains at lr * r / (W + 1)"
    )
    lr_min: float = setting(
        0.0, "floor of the cosine schedule, reached one round after the last (<= lr)"
    )
    pos_ratio: float = setting(1.0, "share of patches centred on lesion voxels (with neg_ratio)")
    neg_ratio: float = setting(1.0, "share of patches centred on brain background voxels")
    val_fraction: float = setting(
        0.2, "share of labelled training cases held out for validation (threshold tuning)"
    )
    amp: bool = setting(True, "mixed precision (used only on cuda)")
    seed: int = setting(0, "seed of the site's patch sampling and augmentation")
    device: str = setting("auto", "'auto' (cuda when present), 'cpu', 'cuda' or 'cuda:N'")
    num_workers: int = setting(
        0, "data-loader processes; 0 loads in the training process (use some on a GPU)"
    )
    keep_optimizer_state: bool = setting(
        False, "keep AdamW's state across rounds (false: a fresh optimiser, exact resume)"
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~fedshift.errors.ConfigError` naming the first bad key (the patch
        size's divisibility by the network's strides is checked by :class:`SegConfig`)."""
        check_fields(self, "seg.train")
        check(
            all(p > 0 for p in self.patch_size),
            "seg.train.patch_size",
            self.patch_size,
            "3 positive integers",
        )
        check(self.batch_size >= 1, "seg.train.batch_size", self.batch_size, "an integer >= 1")
        check(self.lr > 0, "seg.train.lr", self.lr, "a number > 0")
        check(self.weight_decay >= 0, "seg.train.weight_decay", self.weight_decay, "a number >= 0")
        check(self.local_steps >= 1, "seg.train.local_steps", self.local_steps, "an integer >= 1")
        one_of("seg.train.lr_schedule", self.lr_schedule, SCHEDULES)
        check(
            self.warmup_rounds >= 0,
            "seg.train.warmup_rounds",
            self.warmup_rounds,
            "an integer >= 0",
        )
        check(
            0 <= self.lr_min <= self.lr,
            "seg.train.lr_min",
            self.lr_min,
            f"a number in [0, seg.train.lr={self.lr}]",
        )
        check(self.pos_ratio >= 0, "seg.train.pos_ratio", self.pos_ratio, "a number >= 0")
        check(
            self.neg_ratio >= 0 and self.pos_ratio + self.neg_ratio > 0,
            "seg.train.neg_ratio",
            self.neg_ratio,
            "a number >= 0, not 0 when seg.train.pos_ratio is 0",
        )
        check(
            0.0 <= self.val_fraction < 1.0,
            "seg.train.val_fraction",
            self.val_fraction,
            "a number in [0, 1)",
        )
        check(self.seed >= 0, "seg.train.seed", self.seed, "an integer >= 0")
        check(self.num_workers >= 0, "seg.train.num_workers", self.num_workers, "an integer >= 0")
        check(
            self.device in ("auto", "cpu") or self.device.startswith("cuda"),
            "seg.train.device",
            self.device,
            "auto, cpu, cuda or cuda:N",
        )


@dataclass(frozen=True)
class EvalConfig:
    """Sliding-window inference and lesion-wise metrics."""

    sw_batch_size: int = setting(2, "sliding-window patches per forward pass")
    sw_overlap: float = setting(0.5, "overlap of neighbouring sliding windows, in [0, 1)")
    sw_mode: str = setting("gaussian", f"sliding-window blending: {', '.join(BLEND_MODES)}")
    threshold: float = setting(0.5, "lesion probability cut until tuned on the validation split")
    threshold_grid: tuple[float, ...] = setting(
        tuple(round(0.05 * i, 2) for i in range(1, 20)),
        "thresholds searched on each site's validation split",
    )
    detection_overlap: float = setting(
        0.1, "a lesion counts as detected when at least this share of it overlaps"
    )
    connectivity: int = setting(26, "neighbours joining lesion voxels into components: 6, 18, 26")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~fedshift.errors.ConfigError` naming the first bad key."""
        check_fields(self, "seg.eval")
        check(
            self.sw_batch_size >= 1, "seg.eval.sw_batch_size", self.sw_batch_size, "an integer >= 1"
        )
        check(
            0.0 <= self.sw_overlap < 1.0,
            "seg.eval.sw_overlap",
            self.sw_overlap,
            "a number in [0, 1)",
        )
        one_of("seg.eval.sw_mode", self.sw_mode, BLEND_MODES)
        check(
            0.0 < self.threshold < 1.0, "seg.eval.threshold", self.threshold, "a number in (0, 1)"
        )
        check(
            len(self.threshold_grid) > 0 and all(0 < t < 1 for t in self.threshold_grid),
            "seg.eval.threshold_grid",
            self.threshold_grid,
            "one or more numbers in (0, 1)",
        )
        check(
            0.0 < self.detection_overlap <= 1.0,
            "seg.eval.detection_overlap",
            self.detection_overlap,
            "a number in (0, 1]",
        )
        check(
            self.connectivity in CONNECTIVITIES,
            "seg.eval.connectivity",
            self.connectivity,
            "one of: 6, 18, 26",
        )


@dataclass(frozen=True)
class SegConfig:
    """Everything a site needs to train and evaluate its segmentation model."""

    model: ModelConfig = section(ModelConfig, "the network")
    preprocess: PreprocessConfig = section(PreprocessConfig, "preprocessing, cached per site")
    augment: AugmentConfig = section(AugmentConfig, "augmentation of training patches")
    train: TrainConfig = section(TrainConfig, "local training, per site and round")
    eval: EvalConfig = section(EvalConfig, "sliding-window inference and lesion-wise metrics")
    align: AlignConfig = section(
        AlignConfig, "embedding alignment towards the federation's reference (method)"
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~fedshift.errors.ConfigError` naming the first bad key."""
        check_fields(self, "seg")
        check_fields(self.align, "seg.align")  # fedshift.shift cannot import fedshift.config
        divisor = self.model.divisor
        check(
            all(p % divisor == 0 for p in self.train.patch_size),
            "seg.train.patch_size",
            self.train.patch_size,
            f"multiples of {divisor} (the product of seg.model.strides)",
        )
