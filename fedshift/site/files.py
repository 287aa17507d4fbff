"""A site's private shift folder: what it keeps for its own report. Never sent.

``<work_dir>/shift/``::

    local.npz          its statistics of the latest round (vector, round id, agreement with
                       the global model), per-case descriptors, a few sampled embeddings
    reference.npz      the latest reference the coordinator broadcast
    indicators.json    the scalars it reported for that reference
    intensity_map.npz  its 1-D OT map onto the federation's intensity histogram (when
                       ``fed.align_intensity`` is on); applied after preprocessing

A SuperNode starts a process per message, so what one message computes and a later one
needs (statistics -> reference) goes through this folder; the secure-aggregation secrets
stay in Flower's node state instead (:mod:`fedshift.fl.client_secure`).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fedshift import atomic
from fedshift.shift.descriptors import FAMILIES
from fedshift.shift.indicators import SiteIndicators
from fedshift.shift.intensity import IntensityMap
from fedshift.shift.reference import Reference
from fedshift.shift.stats import SiteStatistics, StatsLayout
from fedshift.site.stats import LocalStatistics


def _save_npz(path: Path, **arrays: Any) -> None:
    atomic.save_npz(path, arrays)


def _optional(value: float | None) -> np.ndarray:
    return np.array([np.nan if value is None else value], dtype=np.float64)


class ShiftFolder:
    """Reads and writes ``<work_dir>/shift``."""

    def __init__(self, work_dir: str | Path) -> None:
        self.root = Path(work_dir) / "shift"

    @property
    def local_path(self) -> Path:
        return self.root / "local.npz"

    def save_local(self, local: LocalStatistics, round_id: str) -> None:
        rows = {
            f"rows.{family}": np.array(
                [[r[name] for name, _ in FAMILIES[family]] for r in local.rows.get(family, [])],
                dtype=np.float64,
            ).reshape(-1, len(FAMILIES[family]))
            for family in FAMILIES
        }
        _save_npz(
            self.local_path,
            round_id=np.array(round_id),
            vector=local.stats.to_vector(),
            feat_dim=np.array(local.stats.layout.feat_dim),
            agreement=np.array([local.dice is not None]),
            dice=_optional(local.dice),
            volume_bias=_optional(local.volume_bias),
            samples=local.samples,
            sample_labels=local.sample_labels,
            **rows,
        )

    def load_local(self, round_id: str | None = None) -> LocalStatistics:
        """The saved statistics; ``round_id`` given: refuse those of another round."""
        if not self.local_path.is_file():
            raise FileNotFoundError(f"no site statistics in {self.root}")
        with np.load(self.local_path) as data:
            saved = str(data["round_id"])
            if round_id is not None and saved != round_id:
                raise ValueError(
                    f"{self.local_path} holds statistics of round {saved!r}, not {round_id!r}"
                )
            layout = StatsLayout(int(data["feat_dim"]))
            measured = bool(data["agreement"][0])
            dice, bias = (float(data[k][0]) if measured else None for k in ("dice", "volume_bias"))
            rows = {
                family: [
                    dict(zip([n for n, _ in FAMILIES[family]], map(float, r), strict=True))
                    for r in data[f"rows.{family}"]
                ]
                for family in FAMILIES
            }
            return LocalStatistics(
                stats=SiteStatistics.from_vector(data["vector"], layout),
                dice=dice,
                volume_bias=bias,
                rows=rows,
                samples=data["samples"],
                sample_labels=data["sample_labels"],
            )

    def save_reference(self, reference: Reference, indicators: SiteIndicators) -> None:
        _save_npz(self.root / "reference.npz", **reference.to_arrays())
        atomic.write_json(self.root / "indicators.json", _finite(asdict(indicators)))

    def load_reference(self) -> Reference | None:
        path = self.root / "reference.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        try:
            return Reference.from_arrays(arrays)
        except ValueError as err:
            raise ValueError(
                f"{path}: {err}; the file was written by a FedShift with another layout "
                "of the statistics. The next statistics round replaces it (or delete it)"
            ) from err

    def indicators(self) -> dict[str, Any] | None:
        path = self.root / "indicators.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def save_intensity_map(self, mapping: IntensityMap) -> None:
        _save_npz(self.root / "intensity_map.npz", x=mapping.x, y=mapping.y)

    def intensity_map(self) -> IntensityMap | None:
        path = self.root / "intensity_map.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            return IntensityMap(x=data["x"].copy(), y=data["y"].copy())


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in values.items()
    }
