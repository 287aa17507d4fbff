"""Settings of the embedding alignment (``seg.align`` in a run config).

Pure settings, read by the OT code here (:mod:`fedshift.shift.jdot`) and by the trainer's
alignment hook (:mod:`fedshift.model.aligned`). Declared like every FedShift config
(:mod:`fedshift.config`): each field's help text in ``metadata["help"]``, checks in
``__post_init__``, errors as ``seg.align.KEY=VALUE is invalid: expected ...``. This package
sits below :mod:`fedshift.config` (it imports only :mod:`fedshift.errors`), so it spells
``field(metadata=...)`` out and formats its errors itself; the enclosing
:class:`~fedshift.model.config.SegConfig` checks the fields' types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fedshift.errors import ConfigError

#: embedding alignment methods: none, the JDOT coupling to samples of the reference's
#: class-conditional Gaussians, or the per-feature moment mismatch
METHODS = ("none", "jdot", "moments")
#: coupling solvers of the alignment loss (:func:`fedshift.shift.jdot.coupling`)
SOLVERS = ("emd", "sinkhorn", "unbalanced", "partial")


def _invalid(key: str, value: Any, expected: str) -> ConfigError:
    shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return ConfigError(f"seg.align.{key}={shown} is invalid: expected {expected}")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class AlignConfig:
    """Settings of the alignment loss (``seg.align`` in a run config); each field's help
    text says what it does and why its default is what it is."""

    method: str = field(
        default="none",
        metadata=_help(
            f"embedding alignment: {', '.join(METHODS)}; none trains without an alignment "
            "term (the other seg.align settings are then unused); jdot and moments need "
            "fed.secure_stats=true"
        ),
    )
    weight: float = field(
        default=0.1,
        metadata=_help(
            "weight of the alignment term in a labelled site's loss. With 1.0 and a "
            "reference of the untrained model the term overwhelmed the supervised loss "
            "(Dice ~0.02: docs/results/bench-adaptation.md)"
        ),
    )
    unlabelled_lr_scale: float = field(
        default=0.1,
        metadata=_help(
            "a site without labels trains on the term alone, where AdamW ignores its "
            "weight: its learning rate is seg.train.lr times this instead"
        ),
    )
    alpha: float = field(
        default=0.1,
        metadata=_help(
            "weight of the embedding distance (per feature). Pulling embeddings onto "
            "samples of a Gaussian moved background voxels into the lesion class: "
            "docs/results/jdot-offline.md holds the measurements behind 0.1"
        ),
    )
    lam: float = field(default=1.0, metadata=_help("weight of the label cost"))
    n_voxels: int = field(
        default=256, metadata=_help("embeddings of the batch coupled per step (in the brain)")
    )
    n_reference: int = field(default=256, metadata=_help("reference samples per step"))
    lesion_fraction: float = field(
        default=0.01,
        metadata=_help(
            "the most lesion voxels (labelled, or predicted where there are no labels) a "
            "coupling holds, as a share of n_voxels; the reference matches the share drawn"
        ),
    )
    solver: str = field(default="emd", metadata=_help(f"coupling solver: {', '.join(SOLVERS)}"))
    reg: float = field(
        default=0.05,
        metadata=_help("entropic regularisation (sinkhorn, unbalanced), on a cost scaled to max 1"),
    )
    reg_m: float = field(default=1.0, metadata=_help("marginal relaxation (unbalanced)"))
    tol: float = field(
        default=1e-9,
        metadata=_help(
            "stopping threshold of the Sinkhorn iterations (sinkhorn, unbalanced; POT's "
            "stopThr on the marginals' error, tested every 10th iteration, each test a wait "
            "for the GPU). POT's default 1e-9 takes 40-110 iterations on JDOT costs; 1e-3 "
            "stops after 10 with a plan 0.1-0.24 % (L1) away, and on an H200 cut the "
            "coupling from 40 ms to 4 ms (docs/gpu-check.md)"
        ),
    )
    mass: float = field(default=0.9, metadata=_help("transported mass (partial), in (0, 1]"))
    every: int = field(
        default=1,
        metadata=_help(
            "a labelled site adds the alignment term at every every-th step only, weighted "
            "every * weight (the same pull on average, a coupling solved every times less "
            "often); a site without labels aligns at every step. On a GPU "
            "solver=sinkhorn tol=1e-3 every=2 measured 1.05-1.07x a plain step and emd at "
            "every=4 1.06-1.14x (docs/gpu-check.md)"
        ),
    )
    labelled: bool = field(
        default=True,
        metadata=_help(
            "whether sites with labels add the term at all; false leaves them plain "
            "supervised training and only sites without labels align (the benchmark's "
            "fedshift_targetonly)"
        ),
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~fedshift.errors.ConfigError` naming the first bad key."""
        if self.method not in METHODS:
            raise _invalid("method", self.method, f"one of: {', '.join(METHODS)}")
        if self.solver not in SOLVERS:
            raise _invalid("solver", self.solver, f"one of: {', '.join(SOLVERS)}")
        checks = {
            "weight": (self.weight >= 0, "a number >= 0"),
            "unlabelled_lr_scale": (self.unlabelled_lr_scale > 0, "a number > 0"),
            "alpha": (self.alpha >= 0, "a number >= 0"),
            "lam": (self.lam >= 0, "a number >= 0"),
            "n_voxels": (self.n_voxels >= 2, "an integer >= 2"),
            "n_reference": (self.n_reference >= 2, "an integer >= 2"),
            "lesion_fraction": (0 <= self.lesion_fraction < 1, "a number in [0, 1)"),
            "reg": (self.reg > 0, "a number > 0"),
            "reg_m": (self.reg_m > 0, "a number > 0"),
            "tol": (self.tol > 0, "a number > 0"),
            "mass": (0 < self.mass <= 1, "a number in (0, 1]"),
            "every": (isinstance(self.every, int) and self.every >= 1, "an integer >= 1"),
            "labelled": (isinstance(self.labelled, bool), "true or false"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise _invalid(name, getattr(self, name), expected)
