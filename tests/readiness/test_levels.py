"""fedshift.readiness.levels: the MIDaR level from the evidence."""

from __future__ import annotations

import pytest

from fedshift.readiness.levels import (
    LEVEL_A,
    LEVEL_B,
    LEVEL_C,
    LEVEL_D,
    LevelEvidence,
    assign_level,
    at_least,
)

GOOD = dict(
    n_readable_images=5,
    identifiable=False,
    structured=True,
    n_usable=5,
    has_train_labels=True,
    n_usable_labelled_train=3,
)


@pytest.mark.parametrize(
    "change,level",
    [
        ({}, LEVEL_A),
        ({"n_usable_labelled_train": 0}, LEVEL_B),
        ({"has_train_labels": False, "n_usable_labelled_train": 0}, LEVEL_B),
        ({"n_usable": 0, "n_usable_labelled_train": 0}, LEVEL_C),
        ({"structured": False}, LEVEL_C),
        ({"identifiable": True}, LEVEL_D),
        ({"n_readable_images": 0, "n_usable": 0, "n_usable_labelled_train": 0}, LEVEL_D),
    ],
)
def test_assign_level(change: dict, level: str) -> None:
    assert assign_level(LevelEvidence(**{**GOOD, **change})) == level


def test_at_least() -> None:
    assert at_least("A", "B") and at_least("B", "B") and not at_least("C", "B")
    with pytest.raises(ValueError, match="unknown readiness level"):
        at_least("E", "B")
