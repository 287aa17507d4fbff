"""How sure a verdict is: the size it read, its margin, the study's detection rate."""

from __future__ import annotations

import json

import pytest

from fedshift.shift.detection import bound, deciding_size, detection_rate, load_curves
from fedshift.shift.diagnosis import DiagnosisConfig

CURVES = {
    "kinds": {
        "population": {
            "4": [{"size": 0.5, "detected": 0.1}, {"size": 2.0, "detected": 0.7}],
            "8": [
                {"size": 0.5, "detected": 0.2},
                {"size": 1.0, "detected": 0.5},
                {"size": 1.5, "detected": 0.4},  # chance: the running maximum reads 0.5
                {"size": 3.0, "detected": 1.0},
            ],
        }
    }
}


def test_the_deciding_size_of_each_kind():
    found = {"noise_offset": -2.5, "contrast_offset": 1.0, "sharpness_offset": float("nan")}
    assert deciding_size(found, "acquisition") == 2.5
    assert deciding_size({"population_effect": -1.3}, "population") == 1.3
    assert deciding_size({"annotation_similarity": 0.3}, "annotation") == pytest.approx(0.7)
    assert deciding_size({}, "population") is None
    with pytest.raises(ValueError, match="kind"):
        deciding_size({}, "scanner")


def test_bounds_follow_the_thresholds():
    cfg = DiagnosisConfig(offset=1.5, population_effect=1.25, threshold=0.4)
    assert bound("acquisition", cfg) == 1.5
    assert bound("population", cfg) == 1.25
    assert bound("annotation", cfg) == pytest.approx(0.6)


def test_detection_rate_reads_the_nearest_case_count_and_interpolates():
    assert detection_rate("population", 2.25, 7, CURVES) == (pytest.approx(0.75), 8)
    assert detection_rate("population", 1.5, 8, CURVES) == (pytest.approx(0.5), 8)
    assert detection_rate("population", 9.0, 3, CURVES) == (pytest.approx(0.7), 4)
    assert detection_rate("population", 0.0, None, CURVES) == (pytest.approx(0.2), 8)
    assert detection_rate("annotation", 1.0, 8, CURVES) is None


def test_the_shipped_curves_cover_every_kind_and_say_where_they_come_from(tmp_path):
    shipped = load_curves()
    assert shipped is not None, "fedshift/shift/detection_curves.json is missing"
    assert "simulations/diagnosis_error_rates.py" in shipped["source"]
    assert set(shipped["kinds"]) == {"acquisition", "population", "annotation"}
    for per_cases in shipped["kinds"].values():
        for points in per_cases.values():
            assert all(0.0 <= p["detected"] <= 1.0 for p in points)
    missing = tmp_path / "none.json"
    assert load_curves(missing) is None
    written = tmp_path / "curves.json"
    written.write_text(json.dumps(CURVES))
    assert load_curves(written) == CURVES
