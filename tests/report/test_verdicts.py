"""fedshift.report.verdicts: a site's verdict in words, and the indicator table."""

from __future__ import annotations

from fedshift.report.verdicts import (
    FAMILY_WORDS,
    TISSUE_WORDS,
    indicator_table,
    verdict,
    verdict_cards,
)


def test_a_shifted_site_gets_its_families_in_words_and_its_evidence_as_a_list() -> None:
    card = verdict(
        {
            "shift": ["acquisition"],
            "evidence": "images unlike the federation's median case (noise -6.4 scales); "
            "annotation similarity 0.40 not attributed: images differ",
            "indicators": {"acquisition_similarity": 0.2, "population_similarity": 0.9},
        }
    )
    assert card["status"] == "shifted" and card["families"] == ["acquisition"]
    assert FAMILY_WORDS["acquisition"] in card["sentence"]
    assert len(card["evidence"]) == 2 and card["evidence"][1].startswith("annotation")
    assert card["similarities"] == "acquisition 0.20, population 0.90"


def test_clear_and_unknown_verdicts() -> None:
    clear = verdict({"shift": [], "evidence": "every similarity at or above 0.5",
                     "indicators": {"acquisition_similarity": 0.9}})  # fmt: skip
    assert clear["status"] == "clear" and clear["sentence"].startswith("No shift found")
    unknown = verdict({"shift": [], "indicators": {}})
    assert unknown["status"] == "unknown" and unknown["evidence"] == []
    assert verdict({"shift": [], "evidence": "nothing measured"})["status"] == "unknown"


def test_cards_are_in_site_order() -> None:
    body = {"sites": {"b": {"shift": []}, "a": {"shift": ["population"]}}}
    assert [c["site"] for c in verdict_cards(body)] == ["a", "b"]


def test_indicator_table_has_sites_as_columns_and_drops_unmeasured_groups() -> None:
    body = {
        "sites": {
            "b": {"indicators": {"acquisition_similarity": 0.5, "dice": None}},
            "a": {"indicators": {"acquisition_similarity": 0.25, "dice": 0.7}},
        }
    }
    table = indicator_table(body)
    assert table["sites"] == ["a", "b"]
    titles = [g["title"] for g in table["groups"]]
    assert len(titles) == 2 and titles[0].startswith("Similarity") and "Distances" in titles[1]
    similarity = table["groups"][0]["rows"]
    assert similarity == [{"label": "acquisition", "cells": ["0.250", "0.500"]}]
    assert table["groups"][1]["rows"][0]["cells"] == ["0.700", "–"]


def test_bright_csf_is_said_in_words_beside_the_acquisition_offsets() -> None:
    body = {
        "sites": {
            "s": {"shift": [], "indicators": {"csf_rank": 0.025, "csf_rank_offset": 0.0}},
            "t": {
                "shift": ["acquisition"],
                "evidence": "images unlike the federation's median case (csf_rank +3.8 scales)",
                "indicators": {
                    "csf_rank": 0.975,
                    "csf_rank_offset": 3.8,
                    "lesion_auc_nawm": 0.97,
                    "lesion_auc_nawm_mapped": 0.97,
                },
            },
        }
    }
    s, t = verdict_cards(body)
    assert s["tissue"] is None
    assert t["tissue"] == TISSUE_WORDS
    assert "CSF brighter than white matter: the tissues changed order" in TISSUE_WORDS
    groups = indicator_table(body)["groups"]
    offsets = next(g["rows"] for g in groups if "median case" in g["title"])
    assert {"label": "tissue order (CSF rank)", "cells": ["0.000", "3.800"]} in offsets
    cannot = next(g for g in groups if "monotone intensity map cannot change" in g["title"])
    assert cannot["rows"][0] == {"label": "CSF rank", "cells": ["0.025", "0.975"]}
    order = [r["label"] for g in groups for r in g["rows"]]
    assert order.index("tissue order (CSF rank)") < order.index("CSF rank")
    assert "AUC lesion vs NAWM, intensity-mapped" in order and "AUC lesion vs GM" not in order


def test_a_named_kind_says_its_margin_and_how_often_a_shift_that_large_was_named() -> None:
    from fedshift.shift.detection import detection_rate
    from fedshift.shift.diagnosis import DiagnosisConfig

    bound = DiagnosisConfig().population_effect
    indicators = {"population_effect": -(bound + 0.6), "cases": 6.0}
    card = verdict({"shift": ["population"], "evidence": "", "indicators": indicators})
    (line,) = card["margins"]
    assert line.startswith(f"population: size {bound + 0.6:.2f}, +0.60 past the bound of {bound:g}")
    rate, n = detection_rate("population", bound + 0.6, 6.0)
    assert f"named {100 * rate:.0f} % of the time at {n} cases per site" in line
    # annotation decided by calibration cases: the study has no curve for it
    calibrated = {"calibration_volume": 0.3, "annotation_similarity": 0.2}
    card = verdict({"shift": ["annotation"], "evidence": "", "indicators": calibrated})
    assert card["margins"] == []
    assert verdict({"shift": [], "evidence": "", "indicators": indicators})["margins"] == []
