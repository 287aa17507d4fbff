"""Flower record conversions."""

from __future__ import annotations

import numpy as np

from fedshift.fl import keys
from fedshift.fl.records import from_arrays, metrics_record, to_arrays
from fedshift.model.config import ModelConfig
from fedshift.model.network import build_network, get_weights


def test_model_weights_round_trip_through_arrayrecord() -> None:
    weights = get_weights(
        build_network(ModelConfig(channels=(4, 8), strides=(2,), feat_dim=4), seed=0)
    )
    back = from_arrays(to_arrays(weights))
    assert len(back) == len(weights)
    assert all(
        np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(weights, back, strict=True)
    )


def test_metrics_record_carries_case_count() -> None:
    record = metrics_record({"loss": 0.5}, num_examples=7)
    assert record[keys.NUM_EXAMPLES] == 7 and record["loss"] == 0.5
