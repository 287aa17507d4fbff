"""Kernel summaries of shift descriptors add up, round-trip and compare sites."""

from __future__ import annotations

import numpy as np
import pytest

from fedshift.shift import descriptors as desc
from fedshift.shift.descriptors import KernelSummary, features, similarity


def test_random_features_approximate_the_gaussian_kernel(rng):
    scales = np.array([s for _, s in desc.FAMILIES["population"]])
    x = rng.normal(size=(40, 2)) * scales
    phi = features("population", x)
    exact = np.exp(-0.5 * (((x[:, None] - x[None]) / scales) ** 2).sum(-1))
    assert np.abs(phi @ phi.T - exact).max() < 0.35
    assert np.abs(phi @ phi.T - exact).mean() < 0.06


def _rows(rng, n, volume, count=1.5):
    return [
        {"lesion_volume": volume + 0.2 * rng.standard_normal(), "lesion_count": count}
        for _ in range(n)
    ]


def test_summaries_add_up_and_round_trip(rng):
    a, b = _rows(rng, 5, 1.0), _rows(rng, 7, 2.0)
    both = KernelSummary.of("population", a + b)
    parts = KernelSummary.of("population", a) + KernelSummary.of("population", b)
    np.testing.assert_allclose(both.to_vector(), parts.to_vector(), atol=1e-12)
    back = KernelSummary.from_vector("population", both.to_vector())
    assert back.n == 12 and back.sq == pytest.approx(both.sq)
    with pytest.raises(ValueError, match="values"):
        KernelSummary.from_vector("population", np.zeros(3))
    with pytest.raises(ValueError, match="cannot combine"):
        both + KernelSummary.zeros("annotation")
    assert KernelSummary.of("population", []).n == 0
    volumes = [r["lesion_volume"] for r in a + b]
    mean, sd = both.moments()["lesion_volume"]
    assert mean == pytest.approx(np.mean(volumes)) and sd == pytest.approx(np.std(volumes, ddof=1))
    assert both.moments()["lesion_count"] == (pytest.approx(1.5), pytest.approx(0.0, abs=1e-6))


def test_similarity_alike_and_unlike(rng):
    fam = "population"
    own = KernelSummary.of(fam, _rows(rng, 10, 1.0))
    same = KernelSummary.of(fam, _rows(rng, 30, 1.0))
    far = KernelSummary.of(fam, _rows(rng, 30, 4.0))
    assert similarity(own, own + same) > 0.8
    assert similarity(own, own + far) < 0.05
    # half the rest like the site: in between
    mixed = similarity(own, own + same + far)
    assert 0.2 < mixed < 0.8


def test_similarity_needs_two_cases_each_side(rng):
    fam = "population"
    one = KernelSummary.of(fam, _rows(rng, 1, 1.0))
    many = KernelSummary.of(fam, _rows(rng, 10, 1.0))
    assert similarity(one, one + many) is None
    assert similarity(many, many + one) is None


def test_mean_difference_is_cohens_d_against_the_rest(rng):
    """The middle of a spread federation: low similarity (few cases like its own among
    the others) but a small effect; a site at one end: a large, signed effect."""
    fam = "population"
    middle = KernelSummary.of(fam, _rows(rng, 20, 1.0))
    low = KernelSummary.of(fam, _rows(rng, 20, 0.0))
    high = KernelSummary.of(fam, _rows(rng, 20, 2.0))
    fed = middle + low + high
    assert similarity(middle, fed) < 0.5
    d_middle = desc.mean_difference(middle, fed)
    assert abs(d_middle["lesion_volume"]) < 0.3 and d_middle["lesion_count"] == 0.0
    d_high = desc.mean_difference(high, fed)["lesion_volume"]
    d_low = desc.mean_difference(low, fed)["lesion_volume"]
    assert d_high > 1.0 and d_low < -1.0
    a, b = _rows(rng, 5, 1.0), _rows(rng, 7, 2.0)
    d = desc.mean_difference(KernelSummary.of(fam, a), KernelSummary.of(fam, a + b))
    va, vb = [r["lesion_volume"] for r in a], [r["lesion_volume"] for r in b]
    pooled = np.sqrt((np.var(va, ddof=1) + np.var(vb, ddof=1)) / 2)
    assert d["lesion_volume"] == pytest.approx((np.mean(va) - np.mean(vb)) / pooled)
    assert desc.mean_difference(KernelSummary.of(fam, a[:1]), KernelSummary.of(fam, a)) is None


def test_histogram_median_matches_the_cases(rng):
    a, b = _rows(rng, 9, 1.0), _rows(rng, 6, 3.0)
    summary = KernelSummary.of("population", a) + KernelSummary.of("population", b)
    volumes = [r["lesion_volume"] for r in a + b]
    lo, hi = desc.RANGES["lesion_volume"]
    width = (hi - lo) / desc.HIST_BINS
    assert summary.medians()["lesion_volume"] == pytest.approx(np.median(volumes), abs=width)
    assert summary.hist.sum() == 2 * 15  # one count per case and descriptor
    far = KernelSummary.of("population", [{"lesion_volume": 99.0, "lesion_count": -5.0}] * 2)
    assert far.hist[0, -1] == 2 and far.hist[1, 0] == 2  # outside a range: its end bin
    assert np.isnan(KernelSummary.zeros("population").medians()["lesion_count"])


def _scanner(rng, n: int, **shift: float) -> list[dict[str, float]]:
    """Acquisition descriptors of n cases of a scanner that moves some descriptors."""
    base = {"noise": -3.5, "contrast": -2.3, "nonuniformity": -3.6, "sharpness": -0.12}
    return [
        {k: v + shift.get(k, 0.0) + 0.02 * rng.standard_normal() for k, v in base.items()}
        for _ in range(n)
    ]


def test_median_offsets_place_the_one_unchanged_scanner_on_the_federation(rng):
    """Every site but one changes one setting, each another: the unchanged site has no
    peer (low similarity) but sits on the federation's median case on every descriptor."""
    fam = "acquisition"
    sites = {
        "unchanged": _scanner(rng, 10),
        "contrast": _scanner(rng, 10, contrast=0.3),
        "noisy": _scanner(rng, 10, noise=1.0),
        "blurred": _scanner(rng, 10, sharpness=-0.5, contrast=-0.25),
        "both": _scanner(rng, 10, noise=1.2, nonuniformity=1.0),
    }
    summaries = {k: KernelSummary.of(fam, v) for k, v in sites.items()}
    fed = sum(summaries.values(), KernelSummary.zeros(fam))
    assert similarity(summaries["unchanged"], fed) < 0.5
    offsets = {k: desc.median_offsets(s, fed) for k, s in summaries.items()}
    assert max(abs(v) for v in offsets["unchanged"].values()) < 0.5
    assert offsets["contrast"]["contrast"] > 2.0
    assert offsets["noisy"]["noise"] > 3.0
    assert offsets["blurred"]["sharpness"] < -5.0
    assert offsets["both"]["nonuniformity"] > 2.0
    one = KernelSummary.of(fam, sites["unchanged"][:1])
    assert desc.median_offsets(one, fed) is None
    assert desc.median_offsets(fed, fed) is None  # no other site to compare with
