"""Each step of a site's indicators: what it falls back to, and that it says which way."""

from __future__ import annotations

import numpy as np
import pytest

from fedshift.shift.calibration import Calibration
from fedshift.shift.descriptors import FAMILIES, KernelSummary
from fedshift.shift.embeddings import embedding_stats
from fedshift.shift.indicators import (
    OFFSET,
    SIMILARITY,
    Z,
    acquisition_offsets,
    calibration_indicators,
    embedding_distance,
    family_similarities,
    population_effect,
    separability_indicators,
    tissue_indicators,
)
from fedshift.shift.reference import build_reference
from fedshift.shift.stats import SiteStatistics, StatsLayout
from fedshift.shift.tissue import SEPARABILITY

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
    found = population_effect(high, reference)
    assert found["population_effect"] > 3.0 and found["population_z"] > 2.0
    assert (found["cases"], found["rest_cases"]) == (6.0, 12.0)
    assert population_effect(rest, reference, "others")["population_effect"] < -3.0
    # two thirds of the federation's cases: its median case is the rest's own
    assert abs(population_effect(rest, reference)["population_effect"]) < 1.0


def test_steps_without_their_family_measure_nothing():
    empty = SiteStatistics.zeros(LAYOUT)
    reference = build_reference(empty)
    assert population_effect(empty, reference) == {}
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
    names = [name for name, _ in FAMILIES["acquisition"]]
    assert set(offsets) == {OFFSET[n] for n in names} | {Z[n] for n in names} | {
        "cases",
        "rest_cases",
    }
    assert offsets["noise_offset"] > 1.0 and abs(offsets["contrast_offset"]) < 0.5


def test_the_tissue_order_joins_the_acquisition_offsets():
    """CSF ranked among the brightest deep tissue at one site of three: its offset is
    named with the other acquisition offsets, and the site reports its own median rank."""

    def site(rank: float) -> SiteStatistics:
        rows = [{"csf_rank": rank} for _ in range(6)]
        return _with(cases=6.0, descriptors={"tissue": KernelSummary.of("tissue", rows)})

    a, b, c = site(0.025), site(0.025), site(0.8)
    reference = build_reference(a + b + c)
    assert acquisition_offsets(c, reference)["csf_rank_offset"] > 2.0
    assert abs(acquisition_offsets(a, reference)["csf_rank_offset"]) < 0.1
    assert tissue_indicators(c) == {"csf_rank": pytest.approx(0.8, abs=0.01)}
    assert tissue_indicators(SiteStatistics.zeros(LAYOUT)) == {}


def test_separability_is_the_mean_over_the_labelled_cases():
    rows = [dict.fromkeys(SEPARABILITY, v) for v in (0.9, 0.8)]
    stats = _with(descriptors={"separability": KernelSummary.of("separability", rows)})
    got = separability_indicators(stats)
    assert got == {k: pytest.approx(0.85) for k in SEPARABILITY}
    assert separability_indicators(SiteStatistics.zeros(LAYOUT)) == {}
    assert "separability_similarity" not in SIMILARITY.values()


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
