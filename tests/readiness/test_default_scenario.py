"""On the default synthetic scenario, labelled sites reach level A and exactly the planted
quality problems are excluded as iqm_outlier errors (the target site: level B)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fedshift.config import find_preset, load_config
from fedshift.data.synth.config import SynthConfig
from fedshift.data.synth.federation import write_federation
from fedshift.readiness.runner import run_readiness

pytestmark = pytest.mark.slow


def test_default_scenario_levels_and_planted_problems(tmp_path: Path) -> None:
    cfg = load_config(SynthConfig, [find_preset("default", "scenarios")])
    # the two sites with planted quality problems, and the unlabelled target
    cfg = replace(
        cfg, sites={k: v for k, v in cfg.sites.items() if k in ("site1", "site3", "target")}
    )
    truth = write_federation(cfg, tmp_path / "fed")
    for site, info in truth["sites"].items():
        planted = {c["case"] for c in info["cases"] if c.get("artifact")}
        report = run_readiness(tmp_path / "fed" / site, tmp_path / "reports" / site, workers=1)
        excluded = {
            c["case"]
            for c in report["cases"]
            if any(f["code"] == "iqm_outlier" and f["severity"] == "error" for f in c["findings"])
        }
        assert excluded == planted, site
        assert report["level"] == ("B" if site == "target" else "A")
        assert report["n_usable"] == report["n_cases"] - len(planted)
