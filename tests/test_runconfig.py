"""Run config: one schema for simulation and deployment, flattened for Flower."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from fedshift.config import CONFIG_DIR, load_config
from fedshift.errors import ConfigError
from fedshift.runconfig import RunConfig, flatten, level_at_least, unflatten

ROOT = Path(__file__).resolve().parent.parent


def test_flatten_round_trip() -> None:
    cfg = load_config(
        RunConfig, [CONFIG_DIR / "default.yaml"], ["data.sites=[a,b]", "fed.rounds=2"]
    )
    flat = flatten(cfg)
    assert all(isinstance(v, bool | int | float | str) for v in flat.values())
    assert flat["data.sites"] == 'json:["a", "b"]'
    assert unflatten(flat) == cfg


def test_pyproject_flower_config_matches_default_yaml() -> None:
    """`flwr run .` and `fedshift simulate` start from the same settings."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    app_config = pyproject["tool"]["flwr"]["app"]["config"]
    expected = flatten(load_config(RunConfig, [CONFIG_DIR / "default.yaml"]))
    expected["out"] = "runs/flwr"
    assert app_config == expected


def test_unknown_aggregator_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="fedavg, fedprox"):
        load_config(RunConfig, [], ["fed.aggregator=fedmagic"])
    with pytest.raises(ConfigError, match="none, jdot, moments"):
        load_config(RunConfig, [], ["seg.align.method=magic"])


def test_alignment_needs_secure_statistics() -> None:
    with pytest.raises(ConfigError, match="secure_stats"):
        load_config(RunConfig, [], ["seg.align.method=jdot"])
    with pytest.raises(ConfigError, match="secure_stats"):
        load_config(RunConfig, [], ["fed.align_intensity=true"])
    with pytest.raises(ConfigError, match="seg.align.solver"):
        load_config(RunConfig, [], ["seg.align.solver=magic"])
    cfg = load_config(RunConfig, [], ["seg.align.method=jdot", "fed.secure_stats=true"])
    assert cfg.seg.align.solver == "emd" and cfg.aligns_embeddings


def test_unknown_key_named() -> None:
    with pytest.raises(ConfigError, match="nosuch"):
        unflatten({"fed.nosuch": 1})


def test_levels_order() -> None:
    assert level_at_least("A", "B") and level_at_least("B", "B")
    assert not level_at_least("C", "B") and not level_at_least("?", "D")
