"""Settings of the embedding alignment (``seg.align`` in a run config).

Pure settings, read by the OT code here (:mod:`fedshift.shift.jdot`) and by the trainer's
alignment hook (:mod:`fedshift.model.aligned`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedshift.errors import ConfigError

#: embedding alignment methods: none, the JDOT coupling to samples of the reference's
#: class-conditional Gaussians, or the per-feature moment mismatch
METHODS = ("none", "jdot", "moments")
#: coupling solvers of the alignment loss (:func:`fedshift.shift.jdot.coupling`)
SOLVERS = ("emd", "sinkhorn", "unbalanced", "partial")


@dataclass(frozen=True)
class AlignConfig:
    """Settings of the alignment loss (``seg.align`` in a run config).

    Attributes
    ----------
    method : one of :data:`METHODS`; ``none`` trains without an alignment term (the other
        settings are then unused)
    weight : weight of the JDOT term in a labelled site's loss. With 1.0 and a reference of
        the untrained model the term overwhelmed the supervised loss
        (Dice ~0.02: docs/results/bench-adaptation.md, the JDOT term's history)
    unlabelled_lr_scale : a site without labels trains on the term alone, where AdamW
        ignores its weight: its learning rate is ``train.lr`` times this instead
    alpha : weight of the embedding distance (per feature). Pulling embeddings onto
        samples of a Gaussian moved background voxels into the lesion class: see
        ``docs/results/jdot-offline.md`` for the measurements behind 0.1
    lam : weight of the label cost
    n_voxels : embeddings of the batch coupled per step (sampled in the brain)
    n_reference : reference samples per step
    lesion_fraction : the most lesion voxels (labelled, or predicted where there are no
        labels) a coupling holds, as a share of ``n_voxels``; the reference matches the
        share that was drawn
    solver : one of :data:`SOLVERS`
    reg : entropic regularisation (``sinkhorn``, ``unbalanced``), on a cost scaled to max 1
    reg_m : marginal relaxation (``unbalanced``)
    tol : stopping threshold of the Sinkhorn iterations (``sinkhorn``, ``unbalanced``; POT's
        ``stopThr`` on the marginals' error, tested every 10th iteration, each test a wait
        for the GPU). The default is POT's 1e-9 (40-110 iterations on JDOT costs); 1e-3
        stops after 10 with a plan 0.1-0.24 % (L1) away, and on an H200 cut the coupling
        from 40 ms to 4 ms (docs/gpu-check.md)
    mass : transported mass (``partial``), in (0, 1]
    every : a labelled site adds the alignment term (JDOT or moments) at every
        ``every``-th step only, weighted ``every * weight`` (the same pull on average, a
        coupling solved ``every`` times less often). A site without labels has no other
        loss and aligns at every step. On a GPU, where the coupling is most of an aligned
        step's extra cost, ``solver=sinkhorn tol=1e-3 every=2`` measured 1.05-1.07x a
        plain step and ``emd`` at ``every=4`` 1.06-1.14x (docs/gpu-check.md); the
        benchmark's ``fedshift_fast`` measures what the first does to Dice
    labelled : whether sites with labels add the term at all; ``False`` leaves them plain
        supervised training and only sites without labels align (the benchmark's
        ``fedshift_targetonly``: which side of the federation a JDOT cost comes from)
    """

    method: str = "none"
    weight: float = 0.1
    unlabelled_lr_scale: float = 0.1
    alpha: float = 0.1
    lam: float = 1.0
    n_voxels: int = 256
    n_reference: int = 256
    lesion_fraction: float = 0.01
    solver: str = "emd"
    reg: float = 0.05
    reg_m: float = 1.0
    tol: float = 1e-9
    mass: float = 0.9
    every: int = 1
    labelled: bool = True

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"seg.align.method={self.method!r}; valid: {', '.join(METHODS)}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"seg.align.solver={self.solver!r}; valid: {', '.join(SOLVERS)}")
        checks = {
            "weight": self.weight >= 0,
            "unlabelled_lr_scale": self.unlabelled_lr_scale > 0,
            "alpha": self.alpha >= 0,
            "lam": self.lam >= 0,
            "n_voxels": self.n_voxels >= 2,
            "n_reference": self.n_reference >= 2,
            "lesion_fraction": 0 <= self.lesion_fraction < 1,
            "reg": self.reg > 0,
            "reg_m": self.reg_m > 0,
            "tol": self.tol > 0,
            "mass": 0 < self.mass <= 1,
            "every": isinstance(self.every, int) and self.every >= 1,
            "labelled": isinstance(self.labelled, bool),
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"seg.align.{name}={getattr(self, name)!r} is out of range")
