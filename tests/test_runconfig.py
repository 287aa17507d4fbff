"""Run config: one schema for simulation and deployment, flattened for Flower."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import tomllib

from fedshift.config import CONFIG_DIR, load_config
from fedshift.errors import ConfigError
from fedshift.runconfig import (
    RunConfig,
    default_run,
    flatten,
    flower_table,
    level_at_least,
    unflatten,
    with_flower_table,
)

ROOT = Path(__file__).resolve().parent.parent


def test_flatten_round_trip() -> None:
    cfg = load_config(
        RunConfig, [CONFIG_DIR / "default.yaml"], ["data.sites=[a,b]", "fed.rounds=2"]
    )
    flat = flatten(cfg)
    assert all(isinstance(v, bool | int | float | str) for v in flat.values())
    assert flat["data.sites"] == 'json:["a", "b"]'
    assert unflatten(flat) == cfg


def test_pyproject_flower_table_agrees_with_the_dataclasses() -> None:
    """`flwr run .` and `fedshift simulate` start from the same settings: pyproject's table
    is what `python -m fedshift.runconfig --write` generates from the dataclasses."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    app_config = pyproject["tool"]["flwr"]["app"]["config"]
    expected = flatten(replace(default_run(), out="runs/flwr"))
    stale = sorted(
        k for k in app_config.keys() | expected.keys() if app_config.get(k) != expected.get(k)
    )
    assert not stale, (
        f"pyproject.toml is stale in {stale}: run python -m fedshift.runconfig --write"
    )
    generated = tomllib.loads(flower_table())
    assert generated["tool"]["flwr"]["app"]["config"] == expected


def test_writing_the_flower_table_keeps_the_rest_of_pyproject() -> None:
    text = '[project]\nname = "x"\n\n[tool.flwr.app.config]\n"fed.rounds" = 9\n\n[tool.z]\na = 1\n'
    written = with_flower_table(text)
    parsed = tomllib.loads(written)
    assert parsed["project"] == {"name": "x"} and parsed["tool"]["z"] == {"a": 1}
    assert parsed["tool"]["flwr"]["app"]["config"]["fed.rounds"] == 5
    assert with_flower_table(written) == written
    at_end = with_flower_table('[project]\nname = "x"\n\n[tool.flwr.app.config]\n"a" = 1\n')
    assert "seg.align.method" in tomllib.loads(at_end)["tool"]["flwr"]["app"]["config"]


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
