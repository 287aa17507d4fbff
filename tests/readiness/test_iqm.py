"""fedshift.readiness.iqm: MRIQC-style metrics on phantoms with known properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mri_fixtures import head_phantom

from fedshift.readiness.iqm import (
    FLAIR_ORDER,
    IQM_NAMES,
    T1_ORDER,
    T2_ORDER,
    compute_iqms,
    efc,
    kmeans_1d,
    segment,
    subsample_step,
    tissue_order,
)


@pytest.fixture
def phantom() -> tuple[np.ndarray, np.ndarray]:
    return head_phantom((32, 32, 32), np.random.default_rng(1))


def test_every_metric_is_finite_on_a_head(phantom: tuple[np.ndarray, np.ndarray]) -> None:
    iqms = compute_iqms(phantom[0], (1.0, 1.0, 1.0), "FLAIR")
    assert list(iqms) == list(IQM_NAMES)
    assert all(math.isfinite(v) for v in iqms.values()), iqms
    assert iqms["snr"] > 5 and iqms["cnr"] > 1 and 0 < iqms["efc"] < 1
    assert 0 < iqms["wm2max"] < 1 and iqms["fber"] > 10 and iqms["bias_range"] >= 0


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float64])
def test_any_real_dtype(phantom: tuple[np.ndarray, np.ndarray], dtype: type) -> None:
    image = phantom[0] / 2 if dtype is np.uint8 else phantom[0]
    iqms = compute_iqms(np.rint(image).astype(dtype), (1, 1, 1))
    assert all(math.isfinite(v) for v in iqms.values())


def test_tissue_classes_follow_the_contrast() -> None:
    for contrast in ("FLAIR", "T1"):
        image, _ = head_phantom((32, 32, 32), np.random.default_rng(2), contrast)
        seg = segment(image, (1, 1, 1), contrast)
        means = {k: float(seg.image[m].mean()) for k, m in seg.tissues.items()}
        order = sorted(means, key=means.get)
        assert tuple(order) == tissue_order(contrast)


@pytest.mark.parametrize(
    "name,order",
    [
        ("FLAIR", FLAIR_ORDER),
        ("T2-FLAIR", FLAIR_ORDER),
        ("T1", T1_ORDER),
        ("T1w", T1_ORDER),
        ("MPRAGE", T1_ORDER),
        ("T2", T2_ORDER),
        ("PD", FLAIR_ORDER),
    ],
)
def test_tissue_order_by_channel_name(name: str, order: tuple[str, ...]) -> None:
    assert tissue_order(name) == order


def test_more_noise_means_lower_snr_and_cnr() -> None:
    clean, _ = head_phantom((32, 32, 32), np.random.default_rng(3), noise=5)
    noisy, _ = head_phantom((32, 32, 32), np.random.default_rng(3), noise=40)
    a, b = compute_iqms(clean, (1, 1, 1)), compute_iqms(noisy, (1, 1, 1))
    assert b["snr"] < a["snr"] and b["cnr"] < a["cnr"] and b["cjv"] > a["cjv"]
    assert b["fber"] < a["fber"] and b["efc"] > a["efc"]


def test_bias_field_raises_bias_range(phantom: tuple[np.ndarray, np.ndarray]) -> None:
    x = np.linspace(-1, 1, 32)[:, None, None]
    biased = phantom[0] * (1 + 0.4 * x).astype(np.float32)
    flat = compute_iqms(phantom[0], (1, 1, 1))["bias_range"]
    assert compute_iqms(biased, (1, 1, 1))["bias_range"] > flat + 0.3


def test_skull_stripped_image_has_no_background_metrics(
    phantom: tuple[np.ndarray, np.ndarray],
) -> None:
    seg = segment(phantom[0], (1, 1, 1))
    stripped = np.where(seg.brain, phantom[0], 0)
    iqms = compute_iqms(stripped, (1, 1, 1))
    assert math.isnan(iqms["fber"]) and math.isnan(iqms["cnr"])
    assert math.isfinite(iqms["snr"]) and math.isfinite(iqms["efc"])


def test_blank_image_gives_nan_not_an_error() -> None:
    iqms = compute_iqms(np.zeros((16, 16, 16)), (1, 1, 1))
    assert all(math.isnan(v) for k, v in iqms.items() if k != "wm2max")


def test_large_images_are_measured_on_a_stride(phantom: tuple[np.ndarray, np.ndarray]) -> None:
    assert subsample_step((182, 218, 182)) == 2
    assert subsample_step((32, 32, 32), max_voxels=32**3) == 1
    strided = compute_iqms(phantom[0], (1, 1, 1), max_voxels=16**3)
    full = compute_iqms(phantom[0], (1, 1, 1))
    assert segment(phantom[0], (1, 1, 1), max_voxels=16**3).step == 2
    assert strided["snr"] == pytest.approx(full["snr"], rel=0.3)


def test_efc_is_one_for_a_uniform_image_and_lower_when_focused() -> None:
    assert efc(np.ones((8, 8, 8))) == pytest.approx(1.0)
    focused = np.zeros((8, 8, 8))
    focused[4, 4, 4] = 1
    assert efc(focused) == pytest.approx(0.0, abs=1e-9)


def test_kmeans_finds_a_small_class(rng: np.random.Generator) -> None:
    values = np.concatenate(
        [rng.normal(40, 5, 100), rng.normal(200, 5, 900), rng.normal(260, 5, 950)]
    )
    np.testing.assert_allclose(kmeans_1d(values), [40, 200, 260], atol=3)


def test_non_3d_input_is_refused() -> None:
    with pytest.raises(ValueError, match="3D"):
        compute_iqms(np.zeros((8, 8)), (1, 1))
