"""The one configuration of a federated run, shared by simulation and deployment.

``configs/default.yaml`` + CLI dotlist -> :class:`RunConfig`. Flower's run config is flat
(``str -> scalar``): :func:`flatten` / :func:`unflatten` convert, lists travel as JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedshift.config import find_preset, load_config
from fedshift.data.synth.config import SynthConfig
from fedshift.errors import ConfigError, SecureAggregationError
from fedshift.model.config import SegConfig
from fedshift.secagg.config import SecAggConfig

#: MIDaR readiness levels, best first
LEVELS = ("A", "B", "C", "D")
#: how the coordinator aggregates the sites' updates (:mod:`fedshift.fl.strategies`)
AGGREGATORS = ("fedavg", "fedprox")

_JSON = "json:"


def level_at_least(level: str, required: str) -> bool:
    """True when ``level`` is as good as ``required`` (A > B > C > D)."""
    return level in LEVELS and LEVELS.index(level) <= LEVELS.index(required)


@dataclass(frozen=True)
class DataConfig:
    """Where the sites' data is. Empty ``sites``: generate the synthetic ``scenario``."""

    scenario: str = "default"
    synth_overrides: tuple[str, ...] = ()  # dotlist for `fedshift synth`, e.g. ("n_train=6",)
    synth_dir: str = ""  # "" -> runs/data/<scenario>-seed<seed>
    sites: tuple[str, ...] = ()  # labelled site folders (nnU-Net layout)
    target: tuple[str, ...] = ()  # unlabelled target site folders (evaluated on labelsTs)
    cache_dir: str = "runs/cache"  # preprocessing cache, one folder per site; "" = in work dir


@dataclass(frozen=True)
class FedConfig:
    """The federation: aggregator, rounds, gates and timeouts."""

    aggregator: str = "fedavg"  # fedavg | fedprox (how updates are combined)
    rounds: int = 5
    proximal_mu: float = 0.01  # fedprox only
    train_level: str = "A"  # sites below this level train no model (they still evaluate)
    min_sites: int = 0  # sites to wait for before starting; 0: as many as data names
    timeout_s: float = 3600.0  # wait for the replies of one round
    node_wait_s: float = 300.0  # wait for the expected sites to connect
    # secure statistics -> reference -> shift diagnosis (fedshift.fl.secure_rounds)
    secure_stats: bool = False  # statistics rounds before round 1 and after the last (>= 3 sites)
    stats_every_round: bool = False  # also one between every two rounds
    align_intensity: bool = False  # sites map brain intensities onto the federation's (1-D OT)
    # seg.align.method jdot / moments: the alignment term (and training at sites without
    # labels) runs in a round from align_from_round on when the labelled sites' mean
    # validation Dice of the round before reached align_min_val_dice; otherwise the round
    # is plain. A model that finds no lesion yet has nothing to align
    # (docs/results/adaptation.md)
    align_from_round: int = 2
    align_min_val_dice: float = 0.5
    # FedAvg weighs a site's update by its training cases; a site without labels (it trains
    # on the alignment term alone) by its cases times this. 1.0: like every other site
    unlabelled_weight: float = 1.0
    stats_samples: int = 256  # embedding voxels sampled per class per case
    secagg_frac_bits: int = 24  # fixed point: a value travels as round(x * 2**frac_bits)
    secagg_clip: float = 1073741824.0  # 2**30; inputs are clipped to [-clip, clip]
    secagg_min_sites: int = 3  # the coordinator never learns a sum over fewer sites

    def secagg(self) -> SecAggConfig:
        """The secure-aggregation settings; raises :class:`ConfigError` naming the bad key."""
        try:
            return SecAggConfig(
                frac_bits=self.secagg_frac_bits,
                clip=float(self.secagg_clip),
                min_sites=self.secagg_min_sites,
            )
        except SecureAggregationError as exc:
            raise ConfigError(f"fed.secagg_*: {exc}") from None


@dataclass(frozen=True)
class SimulationConfig:
    cpus_per_site: float = 1.0
    gpus_per_site: float = 0.0


@dataclass(frozen=True)
class RunConfig:
    """A federated run. ``out`` holds config.yaml, metrics.json, checkpoints, report.html."""

    name: str = "default"
    out: str = "runs/default"
    seed: int = 0
    resume: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    fed: FedConfig = field(default_factory=FedConfig)
    seg: SegConfig = field(default_factory=SegConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)

    def validate(self) -> None:
        self.seg.validate()
        self.fed.secagg()
        if self.fed.aggregator not in AGGREGATORS:
            raise ConfigError(
                f"fed.aggregator={self.fed.aggregator!r} is unknown; "
                f"valid: {', '.join(AGGREGATORS)}"
            )
        if self.fed.rounds < 1:
            raise ConfigError(f"fed.rounds must be >= 1, got {self.fed.rounds}")
        if self.fed.train_level not in LEVELS:
            raise ConfigError(
                f"fed.train_level={self.fed.train_level!r}; valid: {', '.join(LEVELS)}"
            )
        if self.fed.proximal_mu < 0:
            raise ConfigError(f"fed.proximal_mu must be >= 0, got {self.fed.proximal_mu}")
        if self.fed.align_from_round < 1:
            raise ConfigError(f"fed.align_from_round must be >= 1, got {self.fed.align_from_round}")
        if not 0 <= self.fed.align_min_val_dice <= 1:
            raise ConfigError(
                f"fed.align_min_val_dice must lie in [0, 1], got {self.fed.align_min_val_dice}"
            )
        if not (math.isfinite(self.fed.unlabelled_weight) and self.fed.unlabelled_weight >= 0):
            raise ConfigError(
                f"fed.unlabelled_weight must be a number >= 0, got {self.fed.unlabelled_weight}"
            )
        if self.fed.stats_samples < 1:
            raise ConfigError(f"fed.stats_samples must be >= 1, got {self.fed.stats_samples}")
        if self.aligns_embeddings and not self.fed.secure_stats:
            raise ConfigError(
                f"seg.align.method={self.seg.align.method} aligns to the federation's "
                "reference and needs fed.secure_stats=true"
            )
        if self.fed.align_intensity and not self.fed.secure_stats:
            raise ConfigError(
                "fed.align_intensity=true needs fed.secure_stats=true: the map is fitted to "
                "the federation's securely aggregated intensity histogram"
            )

    @property
    def aligns_embeddings(self) -> bool:
        """Whether sites add an embedding alignment term (``seg.align.method`` not none)."""
        return self.seg.align.method != "none"

    @property
    def all_sites(self) -> tuple[str, ...]:
        """Labelled sites then targets: the partition order of the simulation."""
        return tuple(self.data.sites) + tuple(self.data.target)


def synth_config(cfg: RunConfig) -> SynthConfig:
    overrides = [f"seed={cfg.seed}", *cfg.data.synth_overrides]
    return load_config(SynthConfig, [find_preset(cfg.data.scenario, "scenarios")], overrides)


def expected_sites(cfg: RunConfig) -> int:
    """How many sites the run has (the synthetic scenario's when none are named)."""
    return len(cfg.all_sites) or len(synth_config(cfg).sites)


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
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), tree)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid run config: {str(exc).splitlines()[0]}") from exc
    cfg.validate()  # type: ignore[union-attr]
    return cfg  # type: ignore[return-value]


def flower_toml(cfg: RunConfig) -> str:
    """The ``[tool.flwr.app.config]`` body for pyproject.toml (``python -m fedshift.runconfig``)."""
    lines = []
    for key, value in flatten(cfg).items():
        text = (
            ("true" if value else "false")
            if isinstance(value, bool)
            else (repr(value) if isinstance(value, int | float) else json.dumps(value))
        )
        lines.append(f'"{key}" = {text}')
    return "\n".join(lines)


if __name__ == "__main__":
    from dataclasses import replace

    from fedshift.config import CONFIG_DIR, load_config

    print(
        flower_toml(replace(load_config(RunConfig, [CONFIG_DIR / "default.yaml"]), out="runs/flwr"))
    )
