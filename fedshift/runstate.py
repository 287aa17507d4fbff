"""A run's folder on disk: the one writer of everything in it. No Flower here.

Layout of ``RUN``::

    RUN/config.yaml                 the resolved RunConfig
    RUN/metrics.json                the run record (:class:`fedshift.record.RunRecord`)
    RUN/diagnosis.json              the last shift diagnosis (``DiagnosisRecord``)
    RUN/reference.npz               the federation's reference the sites last received
    RUN/secure_sum.npz              the decoded sum over sites of the last statistics round
    RUN/model/                      the final global model package (MONAI Bundle layout)
    RUN/checkpoints/state.json      last finished round, history, strategy record
    RUN/checkpoints/round_NNN.npz   global model after round NNN
    RUN/checkpoints/strategy_NNN.npz  the aggregator's state after round NNN (server
                                    optimisers only: momentum, moments)

Every file is written through :mod:`fedshift.atomic`, so a run killed mid-write leaves the
previous checkpoint intact. The JSON contracts are documented in :mod:`fedshift.record`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedshift import atomic
from fedshift.config import to_yaml
from fedshift.errors import UsageError
from fedshift.record import DiagnosisRecord, RunRecord
from fedshift.runconfig import SERVER_LR_DEFAULTS, RunConfig


def _as_json(value: Any) -> str:
    """Canonical JSON of a config value (lists and tuples alike)."""
    from omegaconf import OmegaConf

    return json.dumps(
        OmegaConf.to_container(value) if OmegaConf.is_config(value) else value, sort_keys=True
    )


@dataclass
class RunState:
    """What a coordinator needs to continue a run: the last finished round, the global
    weights after it, the run record so far, the strategy's description and what its
    aggregation rule carries to the next round (name -> array; empty for FedAvg)."""

    last_round: int = 0
    weights: list[np.ndarray] | None = None
    record: RunRecord = field(default_factory=RunRecord)
    strategy: dict[str, Any] = field(default_factory=dict)
    strategy_state: dict[str, np.ndarray] = field(default_factory=dict)


class RunFolder:
    """Reads and writes one run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"

    def write_config(self, cfg: RunConfig) -> None:
        atomic.write_text(self.root / "config.yaml", to_yaml(cfg))

    def save_checkpoint(self, state: RunState) -> None:
        """Global weights of ``state.last_round`` and the strategy's state, then the
        state.json that points to them."""
        if state.weights is None:
            raise ValueError("save_checkpoint needs the global weights")
        name = f"round_{state.last_round:03d}.npz"
        atomic.save_npz(
            self.checkpoints / name, {f"arr_{i}": w for i, w in enumerate(state.weights)}
        )
        strategy_name = f"strategy_{state.last_round:03d}.npz"
        if state.strategy_state:
            atomic.save_npz(self.checkpoints / strategy_name, state.strategy_state)
        record = state.record.to_json()
        meta = {
            "last_round": state.last_round,
            "weights": name,
            "rounds": record["rounds"],
            "readiness": record["readiness"],
            "strategy": state.strategy,
        }
        if state.strategy_state:
            meta["strategy_state"] = strategy_name
        if "federation" in record:
            meta["federation"] = record["federation"]
        atomic.write_json(self.checkpoints / "state.json", meta)

    def load_checkpoint(self) -> RunState | None:
        """The last saved state, or None when the run has no checkpoint yet."""
        meta_path = self.checkpoints / "state.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        with np.load(self.checkpoints / meta["weights"]) as npz:
            weights = [npz[f"arr_{i}"] for i in range(len(npz.files))]
        record = RunRecord.from_json(
            {k: meta[k] for k in ("rounds", "readiness", "federation") if k in meta}
        )
        strategy_state: dict[str, np.ndarray] = {}
        if "strategy_state" in meta:
            with np.load(self.checkpoints / meta["strategy_state"]) as npz:
                strategy_state = {key: npz[key] for key in npz.files}
        return RunState(
            meta["last_round"], weights, record, meta.get("strategy", {}), strategy_state
        )

    def check_resumable(self, cfg: RunConfig) -> None:
        """Refuse to resume a run whose config differs in what shapes the result."""
        path = self.root / "config.yaml"
        if not path.is_file():
            return
        from omegaconf import OmegaConf

        old = OmegaConf.to_container(OmegaConf.load(path))
        new = OmegaConf.to_container(OmegaConf.structured(cfg))
        keys = ["seed", "fed.aggregator", "data.sites", "data.target", "seg"]
        if cfg.fed.aggregator in SERVER_LR_DEFAULTS:  # a server optimiser's state means these
            keys += ["fed.server_lr", "fed.server_momentum", "fed.beta_1", "fed.beta_2", "fed.tau"]
        was_private = OmegaConf.select(OmegaConf.create(old), "fed.dp_epsilon") or 0.0
        if cfg.fed.dp_epsilon > 0 or was_private > 0:  # the budget, spread over the rounds
            keys += ["fed.dp_epsilon", "fed.dp_delta", "fed.dp_clip_norm", "fed.rounds"]
        for key in keys:
            before = OmegaConf.select(OmegaConf.create(old), key)
            now = OmegaConf.select(OmegaConf.create(new), key)
            if _as_json(before) != _as_json(now):
                why = (
                    "a differentially private run spent its budget over these rounds"
                    if key == "fed.rounds"
                    else "only fed.rounds and timeouts may change on resume"
                )
                raise UsageError(
                    f"cannot resume {self.root}: {key} differs from the checkpointed run ({why})"
                )

    def write_record(self, record: RunRecord) -> Path:
        """``metrics.json``."""
        return atomic.write_json(self.root / "metrics.json", record.to_json())

    def read_record(self) -> RunRecord:
        return RunRecord.read(self.root / "metrics.json")

    def write_diagnosis(self, diagnosis: DiagnosisRecord) -> Path:
        return atomic.write_json(self.root / "diagnosis.json", diagnosis.to_json())

    def read_diagnosis(self) -> DiagnosisRecord | None:
        """The last diagnosis, ``None`` when the run had no statistics round."""
        path = self.root / "diagnosis.json"
        return DiagnosisRecord.read(path) if path.is_file() else None

    def save_arrays(self, name: str, arrays: Mapping[str, np.ndarray]) -> Path:
        """``RUN/NAME`` (an ``.npz``: the reference, the decoded secure sum)."""
        return atomic.save_npz(self.root / name, arrays)

    def load_arrays(self, name: str) -> dict[str, np.ndarray] | None:
        """The arrays of ``RUN/NAME``, ``None`` when the run has not written it."""
        path = self.root / name
        if not path.is_file():
            return None
        with np.load(path) as data:
            return {key: data[key].copy() for key in data.files}

    @property
    def model_dir(self) -> Path:
        """``RUN/model``: the final global model package (:mod:`fedshift.bundle`)."""
        return self.root / "model"
