"""A run's folder on disk: config, checkpoints (resume) and metrics.json. No Flower here.

Layout of ``RUN``::

    RUN/config.yaml                 the resolved RunConfig
    RUN/metrics.json                rounds + final metrics (contract below)
    RUN/checkpoints/state.json      last finished round, history, strategy state
    RUN/checkpoints/round_NNN.npz   global model after round NNN

``metrics.json``: ``{"rounds": [{"round": int, "sites": {SITE: {...}}}],
"final": {"sites": {SITE: {"dice": float, "lesion_f1": float, ...}},
"target": {SITE: {"dice": float, "lesion_f1": float}}}}``.
Files are written to a temporary name and renamed, so a run killed mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedshift.config import to_yaml
from fedshift.errors import UsageError
from fedshift.runconfig import RunConfig


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _as_json(value: Any) -> str:
    """Canonical JSON of a config value (lists and tuples alike)."""
    from omegaconf import OmegaConf

    return json.dumps(
        OmegaConf.to_container(value) if OmegaConf.is_config(value) else value, sort_keys=True
    )


def _clean(value: Any) -> Any:
    """JSON-safe: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class RunState:
    """What a coordinator needs to continue a run."""

    last_round: int = 0
    weights: list[np.ndarray] | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    readiness: dict[str, Any] = field(default_factory=dict)
    strategy: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    federation: dict[str, Any] = field(default_factory=dict)  # secure statistics rounds (sums only)


class RunFolder:
    """Reads and writes one run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.checkpoints = self.root / "checkpoints"

    def write_config(self, cfg: RunConfig) -> None:
        _atomic_write(self.root / "config.yaml", to_yaml(cfg).encode())

    def save_checkpoint(self, state: RunState) -> None:
        """Global weights of ``state.last_round`` then the state that points to them."""
        if state.weights is None:
            raise ValueError("save_checkpoint needs the global weights")
        name = f"round_{state.last_round:03d}.npz"
        tmp = self.checkpoints / (name + ".tmp.npz")
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, *state.weights)
        os.replace(tmp, self.checkpoints / name)
        meta = {
            "last_round": state.last_round,
            "weights": name,
            "rounds": state.rounds,
            "readiness": state.readiness,
            "strategy": state.strategy,
        }
        if state.federation:
            meta["federation"] = state.federation
        _atomic_write(self.checkpoints / "state.json", json.dumps(_clean(meta), indent=1).encode())

    def load_checkpoint(self) -> RunState | None:
        """The last saved state, or None when the run has no checkpoint yet."""
        meta_path = self.checkpoints / "state.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        with np.load(self.checkpoints / meta["weights"]) as npz:
            weights = [npz[f"arr_{i}"] for i in range(len(npz.files))]
        return RunState(
            meta["last_round"],
            weights,
            meta["rounds"],
            meta.get("readiness", {}),
            meta.get("strategy", {}),
            federation=meta.get("federation", {}),
        )

    def check_resumable(self, cfg: RunConfig) -> None:
        """Refuse to resume a run whose config differs in what shapes the result."""
        path = self.root / "config.yaml"
        if not path.is_file():
            return
        from omegaconf import OmegaConf

        old = OmegaConf.to_container(OmegaConf.load(path))
        new = OmegaConf.to_container(OmegaConf.structured(cfg))
        for key in ("seed", "fed.strategy", "data.sites", "data.target", "seg"):
            before = OmegaConf.select(OmegaConf.create(old), key)
            now = OmegaConf.select(OmegaConf.create(new), key)
            if _as_json(before) != _as_json(now):
                raise UsageError(
                    f"cannot resume {self.root}: {key} differs from the checkpointed run "
                    "(only fed.rounds and timeouts may change on resume)"
                )

    def write_metrics(self, state: RunState) -> Path:
        path = self.root / "metrics.json"
        body = {
            "rounds": state.rounds,
            "final": state.final,
            "readiness": state.readiness,
            "timing": state.timing,
        }
        if state.federation:
            body["federation"] = state.federation
        _atomic_write(path, json.dumps(_clean(body), indent=1).encode())
        return path

    def read_metrics(self) -> dict[str, Any]:
        return json.loads((self.root / "metrics.json").read_text())
