"""Each step of a site's indicators: what it falls back to, and that it says which way."""

from __future__ import annotations

import numpy as np

from fedshift.shift.calibration import Calibration
from fedshift.shift.descriptors import KernelSummary
from fedshift.shift.embeddings import embedding_stats
from fedshift.shift.indicators import (
    OFFSET,
    SIMILARITY,
    acquisition_offsets,
    calibration_indicators,
    embedding_distance,
    family_similarities,
    population_effect,
)
from fedshift.shift.reference import build_reference
from fedshift.shift.stats import SiteStatistics, StatsLayout

LAYOUT = StatsLayout(feat_dim=2)


def _with(**fields) -> SiteStatistics:
    zero = SiteStatistics.zeros(LAYOUT)
    return SiteStatistics(**{**zero.__dict__, **fields})


def _load(rng: np.random.Generator, volume: float, n: int = 6) -> KernelSummary:
    rows = [
        {"lesion_volume": volume + 0.2 * rng.standard_normal(), "lesion_count": 1.5}
        for _ in range(n)
    ]
    return KernelSummary.of("population", rows)


def test_population_effect_has_the_sign_of_the_lesion_load(rng):
    high = _with(cases=6.0, descriptors={"population": _load(rng, 3.0)})
    rest = _with(cases=12.0, descriptors={"population": _load(rng, 1.0, 12)})
    reference = build_reference(high + rest)
    assert population_effect(high, reference) > 3.0
    assert population_effect(rest, reference) < -3.0


def test_steps_without_their_family_measure_nothing():
    empty = SiteStatistics.zeros(LAYOUT)
    reference = build_reference(empty)
    assert population_effect(empty, reference) is None
    assert acquisition_offsets(empty, reference) == {}
    assert set(family_similarities(empty, reference)) <= set(SIMILARITY.values())
    assert all(v is None for v in family_similarities(empty, reference).values())


def test_offsets_are_named_by_their_indicator():
    def site(noise: float) -> SiteStatistics:
        rows = [
            {"noise": noise, "contrast": -2.5, "nonuniformity": -1.2, "sharpness": -0.3}
            for _ in range(6)
        ]
        return _with(cases=6.0, descriptors={"acquisition": KernelSummary.of("acquisition", rows)})

    a, b, c = site(-4.0), site(-4.0), site(-3.0)
    offsets = acquisition_offsets(c, build_reference(a + b + c))
    assert set(offsets) == set(OFFSET.values())
    assert offsets["noise_offset"] > 1.0 and abs(offsets["contrast_offset"]) < 0.5


def test_embedding_distance_falls_back_to_all_embeddings(rng):
    x = rng.normal(size=(40, 2))
    labelled = _with(embeddings={**SiteStatistics.zeros(LAYOUT).embeddings,
                                 **embedding_stats(x, np.arange(40) % 2)})  # fmt: skip
    unlabelled = _with(embeddings={**SiteStatistics.zeros(LAYOUT).embeddings,
                                   **embedding_stats(x + 0.5, None)})  # fmt: skip
    reference = build_reference(labelled, min_count=2)
    assert embedding_distance(unlabelled, reference) > 0.1
    assert embedding_distance(SiteStatistics.zeros(LAYOUT), reference) is None


def test_calibration_indicators_carry_the_three_measures():
    assert calibration_indicators(None) == {}
    got = calibration_indicators(Calibration(cases=3, volume=0.2, count=-0.1, dice=0.7))
    assert got == {"calibration_volume": 0.2, "calibration_count": -0.1, "calibration_dice": 0.7}
