"""The one configuration of a federated run, shared by simulation and deployment.

The dataclass defaults below are the truth; ``configs/default.yaml`` holds only what a
run changes, then the CLI dotlist -> :class:`RunConfig`. Every setting carries its help
text (``fedshift config show`` prints it) and every section checks itself in
``__post_init__``, so ``dataclasses.replace`` is validated too.

Flower's run config is flat (``str -> scalar``): :func:`flatten` / :func:`unflatten`
convert, lists travel as JSON. ``python -m fedshift.runconfig [--write]`` prints (or
writes) pyproject.toml's ``[tool.flwr.app.config]`` table from these dataclasses.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fedshift.config import (
    CONFIG_DIR,
    check,
    check_fields,
    find_preset,
    from_trees,
    load_config,
    one_of,
    section,
    setting,
)
from fedshift.data.synth.config import SynthConfig
from fedshift.model.config import SegConfig
from fedshift.secagg.config import MIN_SITES, SecAggConfig

#: MIDaR readiness levels, best first
LEVELS = ("A", "B", "C", "D")
#: how the coordinator aggregates the sites' updates (:mod:`fedshift.fl.strategies`)
AGGREGATORS = ("fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedtrimmedavg")
#: the server optimisers' learning rate where ``fed.server_lr`` is 0: Flower's defaults
#: fed.update_dtype: what a site's trained weights travel as
UPDATE_DTYPES = ("float32", "float16")
SERVER_LR_DEFAULTS = {"fedavgm": 1.0, "fedadam": 0.1, "fedyogi": 0.01}
#: ``simulation.gpus_per_site``: size the share when the simulation starts
AUTO_GPUS = "auto"
#: pyproject.toml: the table ``flwr run .`` reads, and the run folder it names
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
FLOWER_TABLE = "[tool.flwr.app.config]"
FLOWER_OUT = "runs/flwr"

_JSON = "json:"


def level_at_least(level: str, required: str) -> bool:
    """True when ``level`` is as good as ``required`` (A > B > C > D)."""
    return level in LEVELS and LEVELS.index(level) <= LEVELS.index(required)


@dataclass(frozen=True)
class DataConfig:
    """Where the sites' data is. Empty ``sites``: generate the synthetic ``scenario``."""

    scenario: str = setting(
        "default",
        "synthetic federation used when no sites are named: a preset of configs/scenarios/ "
        "or a .yaml file",
    )
    synth_overrides: tuple[str, ...] = setting(
        (), "key=value settings of the synthetic scenario, e.g. [n_train=6,voxel_mm=4]"
    )
    synth_dir: str = setting(
        "", "where the synthetic federation is generated; '': runs/data/<scenario>-seed<seed>"
    )
    sites: tuple[str, ...] = setting((), "labelled site folders (nnU-Net v2 raw layout)")
    target: tuple[str, ...] = setting(
        (), "unlabelled target site folders (evaluated on their labelsTs)"
    )
    cache_dir: str = setting(
        "runs/cache", "preprocessing cache, one folder per site; '': in each site's work folder"
    )

    def __post_init__(self) -> None:
        check_fields(self, "data")


@dataclass(frozen=True)
class FedConfig:
    """The federation: aggregator, rounds, gates, secure statistics and timeouts."""

    aggregator: str = setting(
        "fedavg", f"how the sites' updates are combined: {', '.join(AGGREGATORS)}"
    )
    rounds: int = setting(5, "federated training rounds")
    proximal_mu: float = setting(0.01, "weight of FedProx's proximal term (fedprox only)")
    trim_beta: float = setting(
        0.25,
        "fedtrimmedavg only: fraction of the sites' values dropped at each end of every "
        "weight before the (unweighted) mean; with 4 sites 0.25 drops the lowest and highest",
    )
    update_norm_limit: float = setting(
        10.0,
        "a site's update (its model minus the one sent) whose L2 norm exceeds this times the "
        "round's median is refused and logged, as are NaN or infinite weights (needs >= 3 "
        "updates in the clear; 0: no norm check)",
    )
    server_lr: float = setting(
        0.0,
        "learning rate of the server optimisers fedavgm, fedadam, fedyogi (Flower's "
        "server_learning_rate, eta); 0: Flower's default, fedavgm 1.0, fedadam 0.1, "
        "fedyogi 0.01. Must stay 0 with fedavg and fedprox, which have none",
    )
    server_momentum: float = setting(
        0.9,
        "fedavgm only: momentum of the server's SGD on the averaged update, v <- momentum * v "
        "+ (w - mean), w <- w - server_lr * v (Hsu et al. 2019; 0.9 as in Reddi et al. 2021; "
        "0 with server_lr 1 is FedAvg)",
    )
    beta_1: float = setting(
        0.9, "fedadam, fedyogi: decay of the update's first moment m_t (Reddi et al. 2021)"
    )
    beta_2: float = setting(
        0.99, "fedadam, fedyogi: decay of the update's second moment v_t (Reddi et al. 2021)"
    )
    tau: float = setting(
        0.001,
        "fedadam, fedyogi: added to sqrt(v_t) in the step's denominator, the degree of "
        "adaptivity (Reddi et al. 2021)",
    )
    train_level: str = setting(
        "A", "readiness level a site needs to train (A best); the others still evaluate"
    )
    min_sites: int = setting(
        0, "sites to wait for before starting; 0: as many as data.sites + data.target"
    )
    min_train_sites: int = setting(
        1,
        "a training round is aggregated only when at least this many sites returned an "
        "accepted update (the others failed, timed out or were refused); else the run stops "
        "after the last checkpoint",
    )
    enrolled_sites: str = setting(
        "",
        "deployment: the coordinator's enrolled.json (site name -> node id, written by "
        "`fedshift coordinator`); a node that is not enrolled, or answers with another "
        "site's name, is refused before readiness counts. '': not checked (simulation)",
    )
    timeout_s: float = setting(3600.0, "seconds to wait for the sites' replies in one round")
    node_wait_s: float = setting(300.0, "seconds to wait for the expected sites to connect")
    secure_stats: bool = setting(
        False,
        "secure statistics rounds before round 1 and after the last (>= 3 sites): the "
        "federation's reference and the shift diagnosis",
    )
    secure_updates: bool = setting(
        False,
        "each training round is a secure sum: the coordinator learns the sites' weighted "
        "mean model, never one site's weights or FedAvg weight (>= fed.secagg_min_sites "
        "training sites)",
    )
    update_dtype: str = setting(
        "float32",
        "dtype the sites send their trained weights in: float32, or float16 to halve the "
        "bytes a site uploads per round (the coordinator averages in float32; not with "
        "fed.secure_updates, whose masked values are 64-bit)",
    )
    dp_epsilon: float = setting(
        0.0,
        "site-level differential privacy (fedavg only): the epsilon the whole run may spend "
        "at fed.dp_delta; each site clips its update to fed.dp_clip_norm, the sites weigh "
        "equally, and the coordinator adds Gaussian noise to their mean, the noise set so that "
        "fed.rounds releases spend this (Flower's RDP accountant). 0: off",
    )
    dp_delta: float = setting(1e-5, "differential privacy's delta (with fed.dp_epsilon)")
    dp_clip_norm: float = setting(
        5.0,
        "with fed.dp_epsilon: the L2 norm each site's update (its trained model minus the "
        "model it was sent) is clipped to before it leaves the site",
    )
    stats_every_round: bool = setting(False, "also a statistics round between every two rounds")
    align_intensity: bool = setting(
        False,
        "each site maps its brain intensities onto the federation's histogram (1-D OT; "
        "needs fed.secure_stats)",
    )
    align_from_round: int = setting(
        2,
        "seg.align.method jdot / moments: the first round that may add the alignment term "
        "(and train sites without labels)",
    )
    align_min_val_dice: float = setting(
        0.5,
        "an alignment round also waits until the labelled sites' mean validation Dice of "
        "the round before reached this; until then the round is plain (a model that finds "
        "no lesion yet has nothing to align)",
    )
    unlabelled_weight: float = setting(
        1.0,
        "FedAvg weighs an update by its training cases; a site without labels (training on "
        "the alignment term alone) by its cases times this",
    )
    stats_samples: int = setting(256, "embedding voxels sampled per class per case")
    secagg_frac_bits: int = setting(
        24, "secure aggregation's fixed point: a value travels as round(x * 2**frac_bits)"
    )
    secagg_clip: float = setting(
        1073741824.0, "secure aggregation clips its inputs to [-clip, clip] (default 2**30)"
    )
    secagg_min_sites: int = setting(
        MIN_SITES, "the coordinator never learns a sum over fewer sites than this"
    )

    def __post_init__(self) -> None:
        check_fields(self, "fed")
        one_of("fed.aggregator", self.aggregator, AGGREGATORS)
        check(self.rounds >= 1, "fed.rounds", self.rounds, "an integer >= 1")
        _non_negative("fed.proximal_mu", self.proximal_mu)
        _non_negative("fed.server_lr", self.server_lr)
        check(
            self.server_lr == 0 or self.aggregator in SERVER_LR_DEFAULTS,
            "fed.server_lr",
            self.server_lr,
            f"0 with fed.aggregator={self.aggregator} (only "
            f"{', '.join(SERVER_LR_DEFAULTS)} have a server learning rate)",
        )
        for key, value in (
            ("fed.server_momentum", self.server_momentum),
            ("fed.beta_1", self.beta_1),
            ("fed.beta_2", self.beta_2),
        ):
            check(0 <= value < 1, key, value, "a number in [0, 1)")
        _positive("fed.tau", self.tau)
        check(0 <= self.trim_beta < 0.5, "fed.trim_beta", self.trim_beta, "a number in [0, 0.5)")
        one_of("fed.update_dtype", self.update_dtype, UPDATE_DTYPES)
        check(
            not (self.secure_updates and self.update_dtype != "float32"),
            "fed.update_dtype",
            self.update_dtype,
            "float32 with fed.secure_updates=true (the masked values are 64-bit ring "
            "elements whatever the weights' dtype)",
        )
        _non_negative("fed.update_norm_limit", self.update_norm_limit)
        _non_negative("fed.dp_epsilon", self.dp_epsilon)
        check(0 < self.dp_delta < 1, "fed.dp_delta", self.dp_delta, "a number in (0, 1)")
        _positive("fed.dp_clip_norm", self.dp_clip_norm)
        check(
            self.dp_epsilon == 0 or self.aggregator == "fedavg",
            "fed.dp_epsilon",
            self.dp_epsilon,
            f"0 with fed.aggregator={self.aggregator} (differential privacy noises FedAvg's "
            "mean; a server optimiser or trimmed mean would need its own accounting)",
        )
        check(
            not (self.secure_updates and self.aggregator == "fedtrimmedavg"),
            "fed.secure_updates",
            self.secure_updates,
            "false with fed.aggregator=fedtrimmedavg (a trimmed mean needs every site's "
            "weights; secure updates reveal only their sum)",
        )
        one_of("fed.train_level", self.train_level, LEVELS)
        check(self.min_sites >= 0, "fed.min_sites", self.min_sites, "an integer >= 0")
        check(self.min_train_sites >= 1, "fed.min_train_sites", self.min_train_sites, ">= 1")
        _positive("fed.timeout_s", self.timeout_s)
        _positive("fed.node_wait_s", self.node_wait_s)
        check(
            self.align_from_round >= 1,
            "fed.align_from_round",
            self.align_from_round,
            "an integer >= 1",
        )
        check(
            0 <= self.align_min_val_dice <= 1,
            "fed.align_min_val_dice",
            self.align_min_val_dice,
            "a number in [0, 1]",
        )
        _non_negative("fed.unlabelled_weight", self.unlabelled_weight)
        check(self.stats_samples >= 1, "fed.stats_samples", self.stats_samples, "an integer >= 1")
        check(
            0 <= self.secagg_frac_bits <= 52,
            "fed.secagg_frac_bits",
            self.secagg_frac_bits,
            "an integer in [0, 52]",
        )
        _positive("fed.secagg_clip", self.secagg_clip)
        check(
            self.secagg_min_sites >= MIN_SITES,
            "fed.secagg_min_sites",
            self.secagg_min_sites,
            f"an integer >= {MIN_SITES}",
        )

    @property
    def server_learning_rate(self) -> float:
        """``server_lr``, or where it is 0 the aggregator's default
        (:data:`SERVER_LR_DEFAULTS`; 1.0, the plain mean, for fedavg and fedprox)."""
        if self.server_lr > 0:
            return float(self.server_lr)
        return SERVER_LR_DEFAULTS.get(self.aggregator, 1.0)

    def secagg(self) -> SecAggConfig:
        """The secure-aggregation settings (checked by ``__post_init__``)."""
        return SecAggConfig(
            frac_bits=self.secagg_frac_bits,
            clip=float(self.secagg_clip),
            min_sites=self.secagg_min_sites,
        )


@dataclass(frozen=True)
class SimulationConfig:
    """Resources of each simulated site in Flower's simulation engine (Ray).

    ``gpus_per_site`` is text, ``auto`` or a number (``0.5`` given in YAML or on the
    command line arrives as ``"0.5"``): :attr:`fixed_gpus` reads it. ``auto`` is sized when
    the simulation starts (:func:`fedshift.model.device.gpu_share`), not here: this module
    must not import torch.
    """

    cpus_per_site: float = setting(1.0, "CPU cores per simulated site (sites run in parallel)")
    gpus_per_site: str = setting(
        AUTO_GPUS,
        "share of one GPU per simulated site. auto: where torch sees a CUDA GPU (and "
        "seg.train.device is not cpu), the sites that run at once share it, "
        "min(sites, cores / cpus_per_site) of them; else 0. A number >= 0 is used as "
        "given (0: CPU only; Ray's rules: at least 0.0001, a whole number above 1)",
    )

    def __post_init__(self) -> None:
        check_fields(self, "simulation")
        _positive("simulation.cpus_per_site", self.cpus_per_site)
        _ = self.fixed_gpus  # checks gpus_per_site

    @property
    def fixed_gpus(self) -> float | None:
        """``gpus_per_site`` as a number; None for ``auto`` (sized when the simulation
        starts). Raises :class:`ConfigError` for anything else."""
        if self.gpus_per_site == AUTO_GPUS:
            return None
        try:
            share = float(self.gpus_per_site)
        except ValueError:
            share = math.nan
        check(
            math.isfinite(share)
            and (share == 0 or 1e-4 <= share <= 1 or (share > 1 and share.is_integer())),
            "simulation.gpus_per_site",
            self.gpus_per_site,
            "auto or a number >= 0 (Ray's rules: 0, or at least 0.0001; above 1 a whole number)",
        )
        return share


@dataclass(frozen=True)
class RunConfig:
    """A federated run. ``out`` holds config.yaml, metrics.json, checkpoints, report.html."""

    name: str = setting("default", "the run's name, shown in its report")
    out: str = setting(
        "runs/default", "run folder: config.yaml, metrics.json, checkpoints/, report.html"
    )
    seed: int = setting(0, "every random draw derives from it; the same seed, the same run")
    resume: bool = setting(False, "continue an interrupted run after its last checkpoint")
    data: DataConfig = section(DataConfig, "where the sites' data is")
    fed: FedConfig = section(FedConfig, "the federation: aggregator, rounds, statistics")
    seg: SegConfig = section(SegConfig, "each site's segmentation model and its training")
    simulation: SimulationConfig = section(SimulationConfig, "Flower's simulation engine")

    def __post_init__(self) -> None:
        check_fields(self, "")
        check(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        if self.aligns_embeddings:
            check(
                self.fed.secure_stats,
                "seg.align.method",
                self.seg.align.method,
                "none unless fed.secure_stats=true (the alignment pulls towards the "
                "federation's reference, which the secure statistics rounds build)",
            )
        if self.fed.align_intensity:
            check(
                self.fed.secure_stats,
                "fed.align_intensity",
                True,
                "false unless fed.secure_stats=true (the map is fitted to the federation's "
                "securely aggregated intensity histogram)",
            )

    @property
    def aligns_embeddings(self) -> bool:
        """Whether sites add an embedding alignment term (``seg.align.method`` not none)."""
        return self.seg.align.method != "none"

    @property
    def all_sites(self) -> tuple[str, ...]:
        """Labelled sites then targets: the partition order of the simulation."""
        return tuple(self.data.sites) + tuple(self.data.target)


def _positive(key: str, value: float) -> None:
    check(math.isfinite(value) and value > 0, key, value, "a finite number > 0")


def _non_negative(key: str, value: float) -> None:
    check(math.isfinite(value) and value >= 0, key, value, "a finite number >= 0")


def synth_config(cfg: RunConfig) -> SynthConfig:
    overrides = [f"seed={cfg.seed}", *cfg.data.synth_overrides]
    scenario = find_preset(cfg.data.scenario, "scenarios", key="data.scenario")
    return load_config(SynthConfig, [scenario], overrides)


def expected_sites(cfg: RunConfig) -> int:
    """How many sites the run has (the synthetic scenario's when none are named)."""
    return len(cfg.all_sites) or len(synth_config(cfg).sites)


def default_run() -> RunConfig:
    """What ``fedshift simulate`` runs without arguments: the defaults + configs/default.yaml."""
    return load_config(RunConfig, [CONFIG_DIR / "default.yaml"])


def flatten(cfg: RunConfig) -> dict[str, bool | int | float | str]:
    """RunConfig -> Flower's flat run config (dotted keys; lists as ``json:[...]``)."""
    tree = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    flat: dict[str, bool | int | float | str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif isinstance(node, list | tuple):
            flat[prefix] = _JSON + json.dumps(list(node))
        elif node is None:
            flat[prefix] = _JSON + "null"
        else:
            flat[prefix] = node

    walk("", tree)
    return flat


def unflatten(flat: Mapping[str, Any]) -> RunConfig:
    """Flower's flat run config -> RunConfig (unknown keys raise :class:`ConfigError`)."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        if isinstance(value, str) and value.startswith(_JSON):
            value = json.loads(value[len(_JSON) :])
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return from_trees(RunConfig, [(tree, " (in Flower's run config)")])


def flower_toml(cfg: RunConfig) -> str:
    """The ``[tool.flwr.app.config]`` body for pyproject.toml."""
    lines = []
    for key, value in flatten(cfg).items():
        text = (
            ("true" if value else "false")
            if isinstance(value, bool)
            else (repr(value) if isinstance(value, int | float) else json.dumps(value))
        )
        lines.append(f'"{key}" = {text}')
    return "\n".join(lines)


def flower_table() -> str:
    """The table pyproject.toml must hold: the default run, its run folder runs/flwr."""
    return f"{FLOWER_TABLE}\n{flower_toml(replace(default_run(), out=FLOWER_OUT))}\n"


def with_flower_table(pyproject: str) -> str:
    """``pyproject`` (the text of pyproject.toml) with its Flower table regenerated."""
    start = pyproject.index(FLOWER_TABLE)
    nxt = re.search(r"^\[", pyproject[start + len(FLOWER_TABLE) :], re.MULTILINE)
    end = start + len(FLOWER_TABLE) + nxt.start() if nxt else len(pyproject)
    rest = pyproject[end:]
    return pyproject[:start] + flower_table() + ("\n" + rest if rest else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fedshift.runconfig",
        description=f"Print pyproject.toml's {FLOWER_TABLE} table, generated from the "
        "dataclass defaults and configs/default.yaml.",
    )
    parser.add_argument("--write", action="store_true", help="rewrite it in pyproject.toml")
    args = parser.parse_args(argv)
    if args.write:
        PYPROJECT.write_text(with_flower_table(PYPROJECT.read_text()))
        print(f"wrote {FLOWER_TABLE} in {PYPROJECT}")
    else:
        print(flower_table(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
