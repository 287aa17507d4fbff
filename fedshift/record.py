"""The run record: what a run folder's JSON files hold, as typed dataclasses.

One contract, documented here; :class:`fedshift.runstate.RunFolder` is the only writer.

``RUN/metrics.json`` (:class:`RunRecord`)::

    {"rounds": [{"round": 1, "sites": {SITE: {"val_dice": ..., "train_loss": ...}},
                 "seconds": {"train": s, "evaluate": s}, "aligned": false}, ...],
     "final": {"sites": {SITE: {"dice": ..., "lesion_f1": ..., ...}},    # labelled sites
               "target": {SITE: {...}},                                 # sites without labels
               "target_threshold": 0.35,        # what the targets were scored with
               "bures": {... the same, with each site's Bures map ...},  # secure stats only
               "note": "..."},                                          # baselines only
     "readiness": {SITE: {"level": "A", "n_cases": 8, "n_usable": 8, "trains": true}},
     "timing": {"serverapp_s": ..., ...},
     "federation": {"statistics": [{...sums only...}], "diagnosis": {SITE: {...}}},
     "privacy": {"epsilon": 7.9, "delta": 1e-05, "releases": 5, ...}}  # fed.dp_epsilon only

A site's metrics are ``name -> number``; a metric that could not be computed (NaN) is
``null`` in the file and ``None`` here. ``RUN/diagnosis.json`` (:class:`DiagnosisRecord`):
``{"after_round": int, "round_id": str, "sites": {SITE: {"shift": [...], "evidence":
..., "indicators": {...}, ...}}}``. Nothing here is raw image data: metrics, counts and
securely aggregated sums only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: one site's metrics: name -> value (None where it could not be computed)
Metrics = dict[str, float | None]


def _metrics(raw: dict[str, Any]) -> dict[str, Metrics]:
    return {str(site): dict(values) for site, values in raw.items()}


@dataclass
class RoundRecord:
    """One federated round: per site the validation (``val_*``) and training (``train_*``)
    metrics, seconds spent, and whether the alignment term was on."""

    round: int
    sites: dict[str, Metrics]
    seconds: dict[str, float] = field(default_factory=dict)
    aligned: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "sites": self.sites,
            "seconds": self.seconds,
            "aligned": self.aligned,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RoundRecord:
        return cls(
            int(raw["round"]),
            _metrics(raw.get("sites", {})),
            dict(raw.get("seconds", {})),
            bool(raw.get("aligned", False)),
        )

    def validation(self) -> dict[str, Metrics]:
        """Site -> validation metrics with the ``val_`` prefix removed."""
        return {
            site: {k.removeprefix("val_"): v for k, v in m.items() if k.startswith("val_")}
            for site, m in self.sites.items()
        }


@dataclass
class FinalRecord:
    """The final model's test metrics. ``target_threshold``: the mean threshold the
    labelled sites tuned on validation, which sites without labels are scored with."""

    sites: dict[str, Metrics]
    target: dict[str, Metrics]
    target_threshold: float | None = None
    bures: FinalRecord | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "sites": self.sites,
            "target": self.target,
            "target_threshold": self.target_threshold,
        }
        if self.bures is not None:
            body["bures"] = self.bures.to_json()
        if self.note:
            body["note"] = self.note
        return body

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FinalRecord:
        return cls(
            _metrics(raw.get("sites", {})),
            _metrics(raw.get("target", {})),
            raw.get("target_threshold"),
            cls.from_json(raw["bures"]) if raw.get("bures") else None,
            str(raw.get("note", "")),
        )


@dataclass
class SiteReadiness:
    """What a site answered to the readiness query (only these leave the site)."""

    level: str
    n_cases: int
    n_usable: int
    trains: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "n_cases": self.n_cases,
            "n_usable": self.n_usable,
            "trains": self.trains,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SiteReadiness:
        return cls(
            str(raw["level"]), int(raw["n_cases"]), int(raw["n_usable"]), bool(raw["trains"])
        )


@dataclass
class FederationRecord:
    """The secure statistics rounds: one summary of sums per round (participants, total
    counts, clipped values, reference means; never one site's statistics) and the last
    round's verdict per site (``{"shift": [...], "evidence": str}``)."""

    statistics: list[dict[str, Any]] = field(default_factory=list)
    diagnosis: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.statistics or self.diagnosis)

    def to_json(self) -> dict[str, Any]:
        return {"statistics": self.statistics, "diagnosis": self.diagnosis}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FederationRecord:
        return cls(list(raw.get("statistics", [])), dict(raw.get("diagnosis", {})))


@dataclass
class PrivacyRecord:
    """Differential privacy spent so far (``fed.dp_epsilon``): ``epsilon`` at ``delta``
    after ``releases`` noised means, each site's update clipped to ``clip_norm`` and the
    noise's standard deviation ``noise_multiplier * clip_norm / sites`` per weight;
    ``accountant`` names the method. Covers the model updates only, not the scalar
    metrics the sites report."""

    epsilon: float
    delta: float
    releases: int
    noise_multiplier: float
    clip_norm: float
    accountant: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PrivacyRecord:
        return cls(**raw)


@dataclass
class RunRecord:
    """``metrics.json``: the rounds so far, the final evaluation once there is one, the
    sites' readiness answers, timings and the statistics rounds' summaries."""

    rounds: list[RoundRecord] = field(default_factory=list)
    final: FinalRecord | None = None
    readiness: dict[str, SiteReadiness] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    federation: FederationRecord = field(default_factory=FederationRecord)
    privacy: PrivacyRecord | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "rounds": [r.to_json() for r in self.rounds],
            "final": self.final.to_json() if self.final else {},
            "readiness": {k: v.to_json() for k, v in self.readiness.items()},
            "timing": self.timing,
        }
        if self.federation:
            body["federation"] = self.federation.to_json()
        if self.privacy:
            body["privacy"] = self.privacy.to_json()
        return body

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunRecord:
        return cls(
            [RoundRecord.from_json(r) for r in raw.get("rounds", [])],
            FinalRecord.from_json(raw["final"]) if raw.get("final") else None,
            {k: SiteReadiness.from_json(v) for k, v in raw.get("readiness", {}).items()},
            dict(raw.get("timing", {})),
            FederationRecord.from_json(raw.get("federation", {})),
            PrivacyRecord.from_json(raw["privacy"]) if raw.get("privacy") else None,
        )

    @classmethod
    def read(cls, path: str | Path) -> RunRecord:
        """Read a ``metrics.json``."""
        return cls.from_json(json.loads(Path(path).read_text()))

    def last_validation(self) -> dict[str, Metrics]:
        """Site -> validation metrics of the last finished round (empty before one)."""
        return self.rounds[-1].validation() if self.rounds else {}


@dataclass
class DiagnosisRecord:
    """``diagnosis.json``: the last statistics round's verdict and indicators per site."""

    after_round: int
    round_id: str
    sites: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"after_round": self.after_round, "round_id": self.round_id, "sites": self.sites}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DiagnosisRecord:
        return cls(int(raw["after_round"]), str(raw["round_id"]), dict(raw["sites"]))

    @classmethod
    def read(cls, path: str | Path) -> DiagnosisRecord:
        return cls.from_json(json.loads(Path(path).read_text()))
