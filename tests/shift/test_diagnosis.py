"""Shift attribution on synthetic indicator tables."""

from __future__ import annotations

import numpy as np
import pytest

from fedshift.shift.diagnosis import (
    DiagnosisConfig,
    SiteIndicators,
    diagnose,
    measure,
    robust_z,
    signed_volume_bias,
)
from fedshift.shift.reference import build_reference
from fedshift.shift.stats import SiteStatistics, StatsLayout, embedding_stats, histogram


def _normal(site: str, rng: np.random.Generator) -> SiteIndicators:
    jitter = 1.0 + 0.05 * rng.standard_normal()
    return SiteIndicators(
        site=site,
        intensity_w1=0.10 * jitter,
        embedding_bw=0.50 * jitter,
        lesion_volume=0.20 * jitter,
        lesion_count=0.15 * jitter,
        dice=0.70 * jitter,
        volume_bias=0.02 * jitter,
    )


def _table(rng: np.random.Generator, **odd: float) -> list[SiteIndicators]:
    sites = [_normal(f"s{i}", rng) for i in range(5)]
    sites[0] = SiteIndicators(**{**sites[0].__dict__, **odd})
    return sites


def _shift(table: list[SiteIndicators]) -> list[list[str]]:
    return [d.shift for d in diagnose(table)]


def test_all_similar_is_none(rng):
    result = diagnose(_table(rng))
    assert all(d.shift == [] for d in result)
    assert all(abs(z) < 3 for d in result for z in d.scores.values())
    assert "no indicator" in result[0].evidence


def test_big_intensity_distance_is_acquisition(rng):
    result = diagnose(_table(rng, intensity_w1=0.8))
    assert result[0].shift == ["acquisition"] and result[0].scores["intensity_w1"] > 3
    assert "intensity_w1" in result[0].evidence
    assert all(d.shift == [] for d in result[1:])


def test_big_lesion_load_distance_is_population(rng):
    assert _shift(_table(rng, lesion_volume=1.5)) == [["population"]] + [[]] * 4


def test_big_volume_bias_is_annotation(rng):
    result = diagnose(_table(rng, volume_bias=0.6, dice=0.55))
    assert result[0].shift == ["annotation"] and result[0].scores["volume_bias"] > 3
    # a negative bias (missed lesions) counts too
    assert _shift(_table(rng, volume_bias=-0.5))[0] == ["annotation"]


def test_high_dice_is_not_a_shift(rng):
    assert _shift(_table(rng, dice=0.99))[0] == []


def test_acquisition_masks_population_and_annotation(rng):
    result = diagnose(_table(rng, intensity_w1=0.8, lesion_volume=1.5, volume_bias=0.6))
    assert result[0].shift == ["acquisition"]
    assert "not attributed" in result[0].evidence


def test_several_when_several(rng):
    result = diagnose(_table(rng, lesion_volume=1.5, volume_bias=0.6))
    assert result[0].shift == ["population", "annotation"]
    assert "partly" in result[0].evidence


def test_unlabelled_site_scored_on_what_it_has(rng):
    table = _table(rng)
    table[4] = SiteIndicators(site="u", intensity_w1=0.9, embedding_bw=0.5)
    result = diagnose(table)
    assert result[4].shift == ["acquisition"] and "dice" not in result[4].scores


def test_threshold_is_a_parameter(rng):
    table = _table(rng, intensity_w1=0.8)
    assert _shift(table)[0] == ["acquisition"]
    assert [d.shift for d in diagnose(table, DiagnosisConfig(threshold=1e6))][0] == []


def test_too_few_sites_gives_no_score():
    table = [SiteIndicators("a", 0.1), SiteIndicators("b", 5.0)]
    assert all(d.scores == {} and d.shift == [] for d in diagnose(table))
    with pytest.raises(ValueError, match="unique"):
        diagnose([SiteIndicators("a"), SiteIndicators("a")])


def test_robust_z_floor_and_bias():
    assert robust_z(1.0, [1.0, 1.0, 1.0], floor=0.1, relative_floor=0.0) == 0.0
    assert robust_z(1.5, [1.0, 1.0, 1.0], floor=0.1, relative_floor=0.0) == pytest.approx(5.0)
    assert signed_volume_bias(12.0, 10.0) == pytest.approx(0.2)
    assert np.isnan(signed_volume_bias(1.0, 0.0))


def test_measure_site_equal_to_reference_is_zero(rng):
    layout = StatsLayout(feat_dim=2)
    x = rng.normal(size=(30, 2))
    stats = SiteStatistics(
        layout=layout,
        cases=1.0,
        labelled_cases=1.0,
        embeddings={
            **SiteStatistics.zeros(layout).embeddings,
            **embedding_stats(x, np.arange(30) % 2),
        },
        intensity=histogram(rng.normal(size=200), layout.intensity_edges),
        lesion_count=histogram([3], layout.count_edges),
        lesion_volume=histogram([1.2], layout.volume_edges),
    )
    ind = measure("only", stats, build_reference(stats), dice=0.8, volume_bias=0.1)
    assert ind.intensity_w1 == pytest.approx(0.0, abs=1e-12)
    assert ind.embedding_bw == pytest.approx(0.0, abs=1e-6)
    assert ind.lesion_volume == 0.0 and ind.lesion_count == 0.0 and ind.dice == 0.8
    unlabelled = SiteStatistics.from_vector(stats.to_vector(), layout)
    other = measure(
        "u",
        SiteStatistics(**{**unlabelled.__dict__, "labelled_cases": 0.0}),
        build_reference(stats),
    )
    assert other.lesion_volume is None
