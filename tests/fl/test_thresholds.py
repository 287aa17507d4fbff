"""The decision threshold a site without labels gets: the mean of what the labelled sites
tuned in the last finished round, sites without validation cases left out."""

from __future__ import annotations

import pytest

from fedshift.fl import keys
from fedshift.fl.server import last_threshold, mean_threshold
from fedshift.runstate import RunState


def test_mean_threshold_skips_sites_without_validation_cases() -> None:
    metrics = {
        "a": {"threshold": 0.3, keys.NUM_EXAMPLES: 2.0},
        "b": {"threshold": 0.5, keys.NUM_EXAMPLES: 1.0},
        "target": {"threshold": 0.9, keys.NUM_EXAMPLES: 0.0},
        "broken": {"threshold": float("nan"), keys.NUM_EXAMPLES: 3.0},
    }
    assert mean_threshold(metrics) == pytest.approx(0.4)
    assert mean_threshold({"target": {keys.NUM_EXAMPLES: 0.0}}) is None


def test_last_threshold_reads_the_last_round() -> None:
    assert last_threshold(RunState()) is None
    state = RunState()
    for rnd, (a, b) in enumerate([(0.2, 0.4), (0.6, 0.8)], start=1):
        state.rounds.append(
            {
                "round": rnd,
                "sites": {
                    "a": {"val_threshold": a, f"val_{keys.NUM_EXAMPLES}": 1.0, "train_loss": 1},
                    "b": {"val_threshold": b, f"val_{keys.NUM_EXAMPLES}": 1.0},
                },
            }
        )
    assert last_threshold(state) == pytest.approx(0.7)
