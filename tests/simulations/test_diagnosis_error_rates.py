"""The error-rate study's own parts, on made-up descriptor rows (no images, no model)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from fedshift.shift import case_descriptors as cases

SCRIPT = Path(__file__).parents[2] / "simulations" / "diagnosis_error_rates.py"
_spec = importlib.util.spec_from_file_location("diagnosis_error_rates", SCRIPT)
study = importlib.util.module_from_spec(_spec)
sys.modules["diagnosis_error_rates"] = study  # its dataclasses look their module up
_spec.loader.exec_module(study)


def _case(rng, noise=-3.5, count=10.0, label_scale=1.0):
    """One case's rows as a site measures them: a predicted and a labelled lesion mask."""
    zooms = (3.0, 3.0, 3.0)
    n = max(int(rng.poisson(count)), 1)
    predicted = np.zeros((20, 20, 20), bool)
    label = np.zeros_like(predicted)
    for i in range(min(n, 9)):
        predicted[2 * i + 1, 2:4, 2:4] = True
        label[2 * i + 1, 2:4, 2 : 2 + max(int(2 * label_scale), 1)] = True
    return {
        "acquisition": [
            {
                "noise": noise + 0.02 * rng.standard_normal(),
                "contrast": -2.3,
                "nonuniformity": -3.6,
                "sharpness": -0.1,
            }
        ],
        "tissue": [{"csf_rank": 0.03}],
        "population": [cases.population(predicted, zooms)],
        "annotation": [cases.annotation(label, predicted, zooms)],
    }


def test_reading_the_load_off_the_labels_inverts_the_agreement_ratios(rng):
    zooms = (3.0, 3.0, 3.0)
    predicted = np.zeros((20, 20, 20), bool)
    predicted[2:4, 2:4, 2:4] = True
    label = predicted.copy()
    label[10:13, 10:13, 10:13] = True  # one more lesion, larger volume
    case = {
        "population": [cases.population(predicted, zooms)],
        "annotation": [cases.annotation(label, predicted, zooms)],
    }
    read = study.label_read(case)["population"][0]
    assert read == pytest.approx(cases.population(label, zooms))


def test_a_drawn_federation_keeps_its_unshifted_sites_apart(rng):
    pools = {p: [_case(rng) for _ in range(8)] for p in study.POOLS}
    pools["base"] = [_case(rng) for _ in range(48)]
    for _ in range(50):
        sites = study.draw_federation(rng, pools, range(48))
        assert len(sites) in study.SITES
        unshifted = [s for s in sites if s.pool == "base"]
        assert len(sites) - len(unshifted) <= len(sites) // 3
        drawn = [c for s in unshifted for c in s.cases]
        assert len(drawn) == len(set(drawn))  # no case at two sites
        assert len({len(s.cases) for s in sites}) == 1


def test_thresholds_are_chosen_under_the_false_alarm_target_and_the_shift_is_seen(rng):
    pools = {p: [_case(rng) for _ in range(8)] for p in study.POOLS}
    pools["base"] = [_case(rng) for _ in range(48)]
    pools["noise06"] = [_case(rng, noise=-2.0) for _ in range(8)]  # a scanner 6 scales away
    drawn = study.draw(pools, range(48), 40, seed=3)
    federations = study.simulate(drawn, pools, "federation")
    chosen, result, tried = study.choose(federations, target=0.05)
    assert len(tried) == np.prod([len(v) for v in study.GRID.values()])
    assert max(result["false_alarms"].values()) <= 0.05
    assert result["detected"]["noise06"] == 1.0
    sizes = study.true_sizes(pools, "federation")
    assert sizes["noise06"] > 5.0
    curve = study.curves(federations, chosen, sizes)["acquisition"]
    assert all(p["detected"] == 1.0 for n in curve.values() for p in n if p["pool"] == "noise06")
