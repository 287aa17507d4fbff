"""Shift descriptors respond to the change they name; kernel summaries add up and compare."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fedshift.shift import descriptors as desc
from fedshift.shift.descriptors import KernelSummary, appearance, features, similarity

ZOOMS = (2.0, 2.0, 2.0)
SHAPE = (32, 32, 32)


def _phantom(seed: int = 0):
    """Clean textured 'brain' (values ~0.6-1.6) inside a scalp shell, air outside."""
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(float)
    r = np.sqrt(((grid - 15.5) ** 2).sum(0))
    brain, head = r < 9.0, r < 11.0
    texture = ndimage.gaussian_filter(rng.normal(size=SHAPE), 1.0)
    texture /= texture[brain].std()
    clean = np.where(brain, np.exp(0.25 * texture), np.where(head, 1.1, 0.0))
    return clean.astype(np.float64), brain, head


def _acquire(clean, rng, noise=0.02, gamma=1.0, bias=0.0, blur=0.0):
    """The chain of the synthetic scanner: contrast curve, through-plane (z) blur, a
    left-right bias field, Rician noise."""
    x = clean**gamma
    if blur:
        x = ndimage.gaussian_filter1d(x, blur, axis=2)
    if bias:
        x = x * np.exp(bias * (np.indices(SHAPE)[0] / SHAPE[0] - 0.5))
    return np.hypot(x + rng.normal(0, noise, SHAPE), rng.normal(0, noise, SHAPE))


def _describe(image, brain, head, corrected=None):
    return appearance(image, image if corrected is None else corrected, brain, head, ZOOMS)


@pytest.fixture(scope="module")
def base():
    clean, brain, head = _phantom()
    ref = _describe(_acquire(clean, np.random.default_rng(1)), brain, head)
    return clean, brain, head, ref


def _changed(base, **kw):
    clean, brain, head, ref = base
    out = _describe(_acquire(clean, np.random.default_rng(1), **kw), brain, head)
    return {k: out[k] - ref[k] for k in ref}


def test_noise_is_measured_in_the_air(base):
    d = _changed(base, noise=0.08)
    assert d["noise"] == pytest.approx(np.log(4.0), abs=0.15)
    assert abs(d["contrast"]) < 0.05  # the noise variance is removed from the contrast


def test_contrast_curve_raises_contrast_only(base):
    d = _changed(base, gamma=1.5)
    assert d["contrast"] == pytest.approx(np.log(1.5), abs=0.1)
    assert abs(d["noise"]) < 0.1 and abs(d["sharpness"]) < 0.1
    assert abs(d["nonuniformity"]) < 0.2


def test_bias_field_raises_nonuniformity_and_n4_keeps_it_out_of_the_contrast(base):
    from fedshift.model.config import PreprocessConfig
    from fedshift.model.preprocess import n4_correct

    clean, brain, head, _ = base
    plain = _acquire(clean, np.random.default_rng(1))
    biased = _acquire(clean, np.random.default_rng(1), bias=0.8)
    cfg = PreprocessConfig()
    a = _describe(plain, brain, head, n4_correct(plain, head, ZOOMS, cfg))
    b = _describe(biased, brain, head, n4_correct(biased, head, ZOOMS, cfg))
    assert b["nonuniformity"] - a["nonuniformity"] > 0.3  # the field's asymmetry grows
    assert abs(b["contrast"] - a["contrast"]) < 0.05
    assert abs(b["noise"] - a["noise"]) < 0.1 and abs(b["sharpness"] - a["sharpness"]) < 0.1


def test_through_plane_blur_lowers_sharpness(base):
    d = _changed(base, blur=1.0)
    assert d["sharpness"] < -0.15
    assert abs(d["noise"]) < 0.1


def test_intensity_scale_changes_nothing(base):
    clean, brain, head, _ = base
    image = _acquire(clean, np.random.default_rng(1))
    a = _describe(image, brain, head)
    b = _describe(7.0 * image, brain, head)
    assert a == pytest.approx(b, abs=1e-9)


def test_too_small_a_brain_is_refused(base):
    clean, _, head, _ = base
    with pytest.raises(ValueError, match="too few"):
        _describe(clean, np.zeros(SHAPE, bool), head)


def test_lesion_descriptors():
    label = np.zeros((12, 12, 12), np.uint8)
    label[2:4, 2:4, 2:4] = 1
    label[7:10, 7:10, 7:10] = 1
    assert desc.lesion_load(label, (2.0, 2.0, 2.0)) == (2, pytest.approx(35 * 8 / 1000))
    pop = desc.population(label, (1.0, 1.0, 1.0))
    assert pop == {"lesion_volume": pytest.approx(np.log1p(0.035)), "lesion_count": np.log1p(2)}
    dilated = ndimage.binary_dilation(label)
    ann = desc.annotation(dilated, label, (3.0, 3.0, 3.0))
    assert ann["volume_agreement"] > 0.5 and ann["count_agreement"] == 0.0
    missed = desc.annotation(label * 0, label, (3.0, 3.0, 3.0))
    assert missed["count_agreement"] == pytest.approx(np.log(1 / 3))


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
