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


def test_robust_comparison_is_against_the_other_sites_median_and_spread(rng):
    """The middle of a spread federation: low similarity (few cases like its own among
    the others) but a small offset; a site at one end: a large, signed one. Offsets are
    the median difference over 1.4826 MADs of the other sites' cases, z over its error."""
    fam = "population"
    middle = KernelSummary.of(fam, _rows(rng, 20, 1.0))
    low = KernelSummary.of(fam, _rows(rng, 20, 0.0))
    high = KernelSummary.of(fam, _rows(rng, 20, 2.0))
    lower = KernelSummary.of(fam, _rows(rng, 20, 0.8))
    higher = KernelSummary.of(fam, _rows(rng, 20, 1.2))
    assert similarity(middle, middle + low + high) < 0.5
    fed = middle + low + high + lower + higher
    mid = desc.robust_comparison(middle, fed)
    assert abs(mid["lesion_volume"].offset) < 0.3 and mid["lesion_volume"].cases == (20, 80)
    assert desc.robust_comparison(high, fed)["lesion_volume"].offset > 1.0
    assert desc.robust_comparison(low, fed)["lesion_volume"].offset < -1.0
    # an evenly split rest has no middle: its median is the split's edge, not its centre;
    # counted in, the site in the middle tips the federation's median onto itself
    split = middle + low + high
    assert abs(desc.robust_comparison(middle, split, "others")["lesion_volume"].offset) > 0.5
    assert abs(desc.robust_comparison(middle, split)["lesion_volume"].offset) < 0.1
    # against plain numbers: 200 cases each side, the histogram's bins are fine enough
    a = rng.normal(1.0, 0.3, 200)
    b = rng.normal(2.0, 0.6, 200)
    rows = lambda v: [{"lesion_volume": x, "lesion_count": 1.5} for x in v]  # noqa: E731
    own = KernelSummary.of(fam, rows(a))
    fed = own + KernelSummary.of(fam, rows(b))
    found = desc.robust_comparison(own, fed, "others")["lesion_volume"]
    mad = lambda v: 1.4826 * np.median(np.abs(v - np.median(v)))  # noqa: E731
    diff = np.median(a) - np.median(b)
    pooled = np.sqrt((mad(a) ** 2 + mad(b) ** 2) / 2)
    assert found.offset == pytest.approx(diff / pooled, rel=0.05)
    assert found.z == pytest.approx(diff / (1.2533 * pooled * np.sqrt(2 / 200)), rel=0.05)
    four = KernelSummary.of(fam, rows(a[:4]))
    few = desc.robust_comparison(four, four + KernelSummary.of(fam, rows(b)), "others")
    weighted = np.sqrt((4 * mad(a[:4]) ** 2 + 200 * mad(b) ** 2) / 204)
    expected = (np.median(a[:4]) - np.median(b)) / (1.2533 * weighted * np.sqrt(1 / 4 + 1 / 200))
    assert few["lesion_volume"].z == pytest.approx(expected, rel=0.1)
    whole = desc.robust_comparison(own, fed)["lesion_volume"]  # the federation's median case
    assert whole.offset == pytest.approx((np.median(a) - np.median([*a, *b])) / pooled, rel=0.1)
    with pytest.raises(ValueError, match="centre"):
        desc.robust_comparison(own, fed, "pooled")
    one = KernelSummary.of(fam, _rows(rng, 1, 1.0))
    assert desc.robust_comparison(one, one + middle) is None
    assert desc.robust_comparison(fed, fed) is None  # no other site to compare with


def test_one_outlier_site_moves_neither_the_others_centre_nor_their_spread(rng):
    """Four alike sites and one at 2.5x the load with larger lesions (the issue's case): the
    alike sites stay well inside one spread of the others; a mean and standard deviation
    of the others' cases would put them a spread away."""
    fam = "population"
    alike = [KernelSummary.of(fam, _rows(rng, 10, 1.0)) for _ in range(4)]
    outlier = KernelSummary.of(fam, _rows(rng, 10, 4.0))
    fed = sum(alike, outlier)
    for site in alike:
        assert abs(desc.robust_comparison(site, fed)["lesion_volume"].offset) < 0.6
    assert desc.robust_comparison(outlier, fed)["lesion_volume"].offset > 5.0


def test_the_floor_bounds_an_offset_where_the_others_hardly_vary():
    """Cases that all sit in one bin have no spread to divide by: the floor does."""
    fam = "acquisition"

    def rows(n, noise):
        return [
            {"noise": noise, "contrast": -2.3, "nonuniformity": -3.6, "sharpness": -0.12}
            for _ in range(n)
        ]

    rest = KernelSummary.of(fam, rows(12, -3.5))
    own = KernelSummary.of(fam, rows(4, -3.0))
    found = desc.robust_comparison(own, own + rest)
    assert found["noise"].offset == pytest.approx(0.5 / desc.ROBUST_FLOOR["noise"], rel=0.15)
    assert found["noise"].z > 5  # tight on both sides: a sure difference
    assert found["contrast"].offset == pytest.approx(0.0, abs=1e-9)


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


def test_robust_offsets_place_the_one_unchanged_scanner_among_the_others(rng):
    """Every site but one changes one setting, each another: the unchanged site has no
    peer (low similarity) but sits on the other sites' median case on every descriptor."""
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
    offsets = {
        k: {n: c.offset for n, c in desc.robust_comparison(s, fed).items()}
        for k, s in summaries.items()
    }
    assert max(abs(v) for v in offsets["unchanged"].values()) < 0.5
    assert offsets["contrast"]["contrast"] > 2.0
    assert offsets["noisy"]["noise"] > 3.0
    assert offsets["blurred"]["sharpness"] < -5.0
    assert offsets["both"]["nonuniformity"] > 2.0
    one = KernelSummary.of(fam, sites["unchanged"][:1])
    assert desc.robust_comparison(one, fed) is None
    assert desc.robust_comparison(fed, fed) is None  # no other site to compare with
