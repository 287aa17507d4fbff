"""fedshift.readiness.site_config: attestations and settings from a site YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedshift.errors import ConfigError
from fedshift.readiness.site_config import (
    Attestations,
    attestation_findings,
    load_site_config,
)


def test_defaults_without_a_file() -> None:
    cfg = load_site_config(None)
    assert cfg.attestations == Attestations()
    assert cfg.readiness.n_mosaics >= 0


def test_reads_its_sections_and_ignores_others(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        "server: {address: 'coordinator:9092'}\n"
        "attestations:\n  ethics_reference: 'IRB: 2024/117 = approved'\n"
        "readiness:\n  workers: 3\n"
    )
    cfg = load_site_config(path)
    assert cfg.attestations.ethics_reference == "IRB: 2024/117 = approved"
    assert cfg.readiness.workers == 3


@pytest.mark.parametrize(
    "text,match",
    [
        ("attestations:\n  bogus: 1\n", "bogus"),
        ("readiness:\n  workers: many\n", "workers"),
        ("readiness:\n  workers: 0\n", "workers"),
        ("- a\n- b\n", "mapping"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_site_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_site_config(tmp_path / "nope.yaml")


def test_attestation_missing_per_item() -> None:
    found = attestation_findings(Attestations(ethics_reference="IRB-1", annotation_protocol="  "))
    assert [f.code for f in found] == ["attestation_missing", "attestation_missing"]
    assert all(f.severity == "warning" for f in found)
    assert attestation_findings(Attestations("a", "b", "c")) == []
