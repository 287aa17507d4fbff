"""The readiness part of a site's config YAML: human attestations and check settings.

Example ``site.yaml`` (other top-level sections, used by other commands, are ignored
here)::

    attestations:
      ethics_reference: "IRB-2024-117"
      annotation_protocol: "two raters, consensus, MAGNIMS 2016 criteria"
      deidentified_by: "PACS export with DICOM PS3.15 basic profile"
    readiness:
      workers: 2

Attestations are what no program can verify; they are listed in the report, and each one
not given is an ``attestation_missing`` warning (it does not change the level).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedshift.config import load_config
from fedshift.errors import ConfigError
from fedshift.findings import Finding, finding
from fedshift.readiness.iqm import MAX_IQM_VOXELS
from fedshift.readiness.labels import MAX_OUTSIDE_FRACTION, MIN_RATER_DICE
from fedshift.readiness.outliers import MIN_REFERENCE, Z_THRESHOLD

#: the config sections readiness reads
SECTIONS = ("attestations", "readiness")


@dataclass
class Attestations:
    """Statements a person at the site makes; ``None`` means not given."""

    ethics_reference: str | None = None
    annotation_protocol: str | None = None
    deidentified_by: str | None = None


@dataclass
class ReadinessSettings:
    """Thresholds and resources of the readiness checks (defaults follow the issue)."""

    workers: int | None = None
    n_mosaics: int = 4
    outlier_z: float = Z_THRESHOLD
    min_outlier_cases: int = MIN_REFERENCE
    max_outside_fraction: float = MAX_OUTSIDE_FRACTION
    min_rater_dice: float = MIN_RATER_DICE
    max_iqm_voxels: int = MAX_IQM_VOXELS

    def validate(self) -> None:
        checks = {
            "workers": self.workers is None or self.workers >= 1,
            "n_mosaics": self.n_mosaics >= 0,
            "outlier_z": self.outlier_z > 0,
            "min_outlier_cases": self.min_outlier_cases >= 3,
            "max_outside_fraction": 0 <= self.max_outside_fraction <= 1,
            "min_rater_dice": 0 <= self.min_rater_dice <= 1,
            "max_iqm_voxels": self.max_iqm_voxels >= 4096,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"readiness.{name} is out of range: {getattr(self, name)!r}")


@dataclass
class ReadinessConfig:
    """The readiness sections of a site config."""

    attestations: Attestations = field(default_factory=Attestations)
    readiness: ReadinessSettings = field(default_factory=ReadinessSettings)

    def validate(self) -> None:
        self.readiness.validate()


def load_site_config(path: str | Path | None = None) -> ReadinessConfig:
    """Read the ``attestations`` and ``readiness`` sections of a site YAML (defaults if None).

    Other top-level sections are ignored; unknown keys inside these two sections, or
    wrong types, raise :class:`~fedshift.errors.ConfigError` naming the key.
    """
    if path is None:
        return load_config(ReadinessConfig)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"site config {str(path)!r} does not exist")
    try:
        whole = OmegaConf.load(path)
    except (OmegaConfBaseException, OSError, ValueError) as exc:
        raise ConfigError(f"site config {str(path)!r} is not valid YAML: {exc}") from exc
    if not OmegaConf.is_dict(whole):
        raise ConfigError(f"site config {str(path)!r} is not a mapping of sections")
    picked = {key: whole[key] for key in SECTIONS if key in whole and whole[key] is not None}
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ReadinessConfig), picked)
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        first = str(exc).strip().splitlines()[0]
        key = getattr(exc, "full_key", None)
        where = f" (key {key})" if key else ""
        raise ConfigError(f"site config {str(path)!r}: {first}{where}") from exc
    if not isinstance(config, ReadinessConfig):
        raise ConfigError(f"site config {str(path)!r} does not describe readiness settings")
    config.validate()
    return config


def attestation_findings(attestations: Attestations) -> list[Finding]:
    """An ``attestation_missing`` warning for each attestation not given (or blank)."""
    return [
        finding(
            "attestation_missing",
            f"attestations.{f.name} is not given in the site config; a person at the site "
            "must state it",
        )
        for f in fields(attestations)
        if not (getattr(attestations, f.name) or "").strip()
    ]


def attestations_dict(attestations: Attestations) -> dict[str, str | None]:
    return asdict(attestations)
