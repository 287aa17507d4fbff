"""fedshift.readiness.outliers: robust z-scores against a reference distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedshift.readiness.outliers import find_outliers, reference_from, robust_z


def test_robust_z_of_a_known_sample() -> None:
    reference = [1.0, 2.0, 3.0, 4.0, 5.0]  # median 3, MAD 1
    z = robust_z([3.0, 3.0 + 1.4826], reference, min_relative_scale=0)
    np.testing.assert_allclose(z, [0.0, 1.0])


def test_too_small_reference_gives_nan() -> None:
    assert np.all(np.isnan(robust_z([1.0], [1.0, 2.0, 3.0, 4.0])))
    assert np.all(np.isnan(robust_z([1.0], [1.0, 2.0, np.nan, 3.0, 4.0])))


def test_scale_floors() -> None:
    same = [10.0] * 6
    assert robust_z([10.2], same)[0] == pytest.approx(0.2)  # 10 % of the median
    assert robust_z([10.2], same, min_relative_scale=0, min_scale=0.1)[0] == pytest.approx(2.0)
    assert np.isnan(robust_z([1.0], [0.0] * 5)[0])


def _site(n: int, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    return {
        f"c{i}": {"snr": float(rng.normal(20, 1)), "cjv": float(rng.normal(0.5, 0.05))}
        for i in range(n)
    }


def test_per_metric_floors(rng: np.random.Generator) -> None:
    iqms = {f"c{i}": {"fber": 1000.0, "snr": 20.0} for i in range(6)}
    # fber is scored as log(fber) with a floor of 0.1 (about 10 %); snr linearly (10 % of median)
    iqms["low"] = {"fber": 650.0, "snr": 14.0}  # -35 % and -30 %
    found = {o.metric for o in find_outliers(iqms)}
    assert found == {"fber"}
    found = {o.metric for o in find_outliers(iqms, floors={"fber": (0.0, 0.5)})}
    assert found == set()


def test_advisory_metrics_never_exclude() -> None:
    iqms = {f"c{i}": {"bias_range": 0.05, "wm2max": 0.5} for i in range(6)}
    iqms["odd"] = {"bias_range": 0.5, "wm2max": 0.05}
    found = find_outliers(iqms)
    assert {o.metric for o in found} == {"bias_range", "wm2max"}
    assert not any(o.worse for o in found)


def test_worse_outlier_is_found_better_one_is_marked(rng: np.random.Generator) -> None:
    iqms = _site(8, rng)
    iqms["bad"] = {"snr": 5.0, "cjv": 0.5}
    iqms["good"] = {"snr": 60.0, "cjv": 0.5}
    found = {(o.case, o.metric): o for o in find_outliers(iqms)}
    assert set(found) == {("bad", "snr"), ("good", "snr")}
    assert found[("bad", "snr")].worse and found[("bad", "snr")].z < -3.5
    assert not found[("good", "snr")].worse


def test_needs_five_cases(rng: np.random.Generator) -> None:
    iqms = _site(3, rng)
    iqms["bad"] = {"snr": 1.0, "cjv": 0.5}
    assert find_outliers(iqms) == []


def test_reference_distribution_can_come_from_elsewhere(rng: np.random.Generator) -> None:
    """Judging a small site against a federation's reference finds what it alone cannot."""
    site = {"only": {"snr": 5.0}}
    federation = {"snr": rng.normal(20, 1, 50)}
    found = find_outliers(site, reference=federation)
    assert [(o.case, o.metric) for o in found] == [("only", "snr")]
    assert find_outliers(site) == []


def test_nan_values_are_ignored(rng: np.random.Generator) -> None:
    iqms = _site(8, rng)
    iqms["c0"]["snr"] = math.nan
    assert all(o.case != "c0" for o in find_outliers(iqms))
    assert np.isnan(reference_from(iqms)["snr"]).sum() == 1
