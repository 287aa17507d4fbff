"""Per-case shift descriptors respond to the change they name."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fedshift.shift import case_descriptors as cases
from fedshift.shift.case_descriptors import appearance

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
    assert cases.lesion_load(label, (2.0, 2.0, 2.0)) == (2, pytest.approx(35 * 8 / 1000))
    pop = cases.population(label, (1.0, 1.0, 1.0))
    assert pop == {"lesion_volume": pytest.approx(np.log1p(0.035)), "lesion_count": np.log1p(2)}
    dilated = ndimage.binary_dilation(label)
    ann = cases.annotation(dilated, label, (3.0, 3.0, 3.0))
    assert ann["volume_agreement"] > 0.5 and ann["count_agreement"] == 0.0
    missed = cases.annotation(label * 0, label, (3.0, 3.0, 3.0))
    assert missed["count_agreement"] == pytest.approx(np.log(1 / 3))
