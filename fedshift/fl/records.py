"""Conversions between Flower records and plain FedShift values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict

from fedshift.fl import keys
from fedshift.runconfig import RunConfig, unflatten


def to_arrays(weights: list[np.ndarray]) -> ArrayRecord:
    return ArrayRecord(numpy_ndarrays=[np.ascontiguousarray(w) for w in weights])


def from_arrays(record: ArrayRecord) -> list[np.ndarray]:
    return record.to_numpy_ndarrays()


def metrics_record(metrics: Mapping[str, float], num_examples: int) -> MetricRecord:
    """A MetricRecord with the FedAvg weight (number of cases) under ``num-examples``."""
    values: dict[str, float | int] = {k: float(v) for k, v in metrics.items()}
    values[keys.NUM_EXAMPLES] = int(num_examples)
    return MetricRecord(values)


def site_record(name: str, **extra: str | int | float | bool) -> ConfigRecord:
    return ConfigRecord({keys.SITE_NAME: name, **extra})


def reply_site(content: RecordDict) -> str:
    """The site name a reply carries."""
    return str(content.config_records[keys.SITE][keys.SITE_NAME])


def reply_metrics(content: RecordDict) -> dict[str, float]:
    """The reply's scalar metrics (list values, such as a voxel size, are read apart)."""
    record = content.metric_records[keys.METRICS]
    return {k: float(v) for k, v in record.items() if not isinstance(v, list)}  # type: ignore[arg-type]


def run_config(context: Context, defaults: Mapping[str, Any] | None = None) -> RunConfig:
    """The run's config: the app's flat defaults overlaid with Flower's run config."""
    return unflatten({**(defaults or {}), **dict(context.run_config)})
