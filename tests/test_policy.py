"""fedshift.policy: the threshold a site without labels gets (the mean of what the
labelled sites tuned, sites without validation cases left out), whether a round aligns,
and who trains."""

from __future__ import annotations

import pytest

from fedshift import policy
from fedshift.config import load_config
from fedshift.errors import ConfigError
from fedshift.runconfig import RunConfig


def test_federation_threshold_skips_sites_without_validation_cases() -> None:
    metrics = {
        "a": {"threshold": 0.3, "n_cases": 2.0},
        "b": {"threshold": 0.5, "n_cases": 1.0},
        "target": {"threshold": 0.9, "n_cases": 0.0},
        "broken": {"threshold": float("nan"), "n_cases": 3.0},
        "resumed": {"threshold": None, "n_cases": 3.0},  # NaN read back from JSON
    }
    assert policy.federation_threshold(metrics) == pytest.approx(0.4)
    assert policy.federation_threshold({"target": {"n_cases": 0.0}}) is None
    assert policy.federation_threshold({"x": {"threshold": 0.7, "k": 1}}, "k") == 0.7


def test_mean_val_dice_reads_only_sites_with_cases() -> None:
    val = {"a": {"dice": 0.2, "n_cases": 1}, "b": {"dice": 0.6, "n_cases": 1}, "t": {"dice": 0.0}}
    assert policy.mean_val_dice(val) == pytest.approx(0.4)
    assert policy.mean_val_dice({}) is None


def test_alignment_waits_for_a_model_that_finds_lesions() -> None:
    cfg = load_config(RunConfig, [], ["seg.align.method=jdot", "fed.secure_stats=true"])
    assert not policy.aligns(cfg, 1, None)  # nothing measured yet
    assert not policy.aligns(cfg, 3, 0.38)  # below fed.align_min_val_dice (0.5)
    assert policy.aligns(cfg, 4, 0.65)
    early = load_config(
        RunConfig, [], ["seg.align.method=jdot", "fed.secure_stats=true", "fed.align_from_round=5"]
    )
    assert not policy.aligns(early, 4, 0.8)
    assert not policy.aligns(RunConfig(), 4, 0.8)  # seg.align.method=none


def test_trainers_and_adapters() -> None:
    sites = [
        policy.SiteStanding("a", "A", True),
        policy.SiteStanding("b", "B", True),  # labelled but below fed.train_level A
        policy.SiteStanding("t", "B", False),
        policy.SiteStanding("u", "C", False),  # unstructured: never trains
    ]
    plain = RunConfig()
    assert policy.trainers(plain, sites) == {"a"}
    assert policy.adapters(plain, sites) == set()
    aligned = load_config(RunConfig, [], ["seg.align.method=moments", "fed.secure_stats=true"])
    assert policy.adapters(aligned, sites) == {"t"}


@pytest.mark.parametrize("value", ["-0.5", "nan", "inf"])
def test_unlabelled_weight_must_be_a_finite_non_negative_number(value: str) -> None:
    with pytest.raises(ConfigError, match="fed.unlabelled_weight"):
        load_config(RunConfig, [], [f"fed.unlabelled_weight={value}"])
