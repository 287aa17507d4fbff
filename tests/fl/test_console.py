"""Flower and Ray in the simulation: each Flower line once, their noise only with -v."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from flwr.common.logger import ConsoleHandler, log

from fedshift.fl.simulation import quiet_flower, ray_init_args


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture()
def root_lines() -> Iterator[_Collect]:
    """What reaches the root logger's handlers (FedShift's console), with Flower's logger
    restored afterwards."""
    flower = logging.getLogger("flwr")
    saved = (list(flower.handlers), list(flower.filters), flower.level, flower.propagate)
    collect = _Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    yield collect
    root.removeHandler(collect)
    flower.handlers[:], flower.filters[:], flower.level, flower.propagate = saved


def test_flower_lines_reach_the_console_once(root_lines: _Collect) -> None:
    assert any(isinstance(h, ConsoleHandler) for h in logging.getLogger("flwr").handlers)
    quiet_flower(verbose=False)
    assert not any(isinstance(h, ConsoleHandler) for h in logging.getLogger("flwr").handlers)
    log(logging.INFO, "configure_train: Sampled %d nodes", 5)
    log(logging.DEBUG, "Using InMemoryLinkState")
    log(logging.WARNING, "DEPRECATED FEATURE: The `run_simulation` function is deprecated")
    log(logging.WARNING, "fraction_evaluate is set to 0.0. Federated evaluation will be skipped.")
    log(logging.ERROR, "An exception was raised when processing a message by RayBackend")
    assert root_lines.messages == [
        "configure_train: Sampled 5 nodes",
        "An exception was raised when processing a message by RayBackend",
    ]


def test_verbose_shows_flower_debug_and_noise(root_lines: _Collect) -> None:
    quiet_flower(verbose=False)
    quiet_flower(verbose=True)  # called again: the filter goes
    log(logging.DEBUG, "Using InMemoryLinkState")
    log(logging.WARNING, "fraction_evaluate is set to 0.0. Federated evaluation will be skipped.")
    assert root_lines.messages == [
        "Using InMemoryLinkState",
        "fraction_evaluate is set to 0.0. Federated evaluation will be skipped.",
    ]


def test_ray_logs_at_error_unless_verbose_and_forwards_the_sites_output() -> None:
    quiet, loud = ray_init_args(False), ray_init_args(True)
    assert quiet["logging_level"] == "ERROR" and loud["logging_level"] == "INFO"
    assert quiet["log_to_driver"] is True and loud["log_to_driver"] is True
