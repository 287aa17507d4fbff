"""readiness.html from its template: sections in reading order, every value escaped,
per-case tables folded, one chart per image quality metric."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from fedshift.readiness.iqm import IQM_NAMES
from fedshift.readiness.report_html import render_html

EVIL = "<script>alert(1)</script>"


def _report() -> dict[str, Any]:
    finding = {
        "code": "iqm_outlier",
        "severity": "warning",
        "message": "snr far from the site's cases <b>",
        "file": "imagesTr/x_0000.nii.gz",
    }
    error = {"code": "unreadable", "severity": "error", "message": "bad", "file": "imagesTr/y"}
    iqm = {f"case{i}": {m: float(i + k) for k, m in enumerate(IQM_NAMES)} for i in range(5)}
    return {
        "fedshift_version": "0.1.0",
        "site": EVIL,
        "level": "B",
        "level_meaning": "usable images",
        "level_reasons": ["1 case not usable"],
        "n_cases": 6,
        "n_usable": 5,
        "counts": {
            "train": 5,
            "test": 1,
            "usable_labelled_train": 4,
            "findings": {"error": 1, "warning": 1, "info": 1},
        },
        "findings": [{"code": "note", "severity": "info", "message": "a note", "file": None}],
        "cases": [
            {
                "case": "case0",
                "split": "train",
                "usable": True,
                "has_label": True,
                "findings": [finding],
            },
            {
                "case": EVIL,
                "split": "test",
                "usable": False,
                "has_label": False,
                "findings": [error],
            },
        ],  # fmt: skip
        "iqm": iqm,
        "iqm_outliers": [{"case": "case4", "metric": "snr", "value": 4.0, "z": 5.0}],
        "label_stats": {
            "case0": {
                "n_lesions": 3,
                "lesion_volume_ml": 1.5,
                "mean_lesion_ml": 0.5,
                "max_lesion_ml": 0.9,
                "lesion_to_nawm": 1.8,
            },
        },  # fmt: skip
        "raters": {},
        "attestations": {"ethics_reference": "EC-1", "annotation_protocol": None},
    }


def test_every_value_is_escaped() -> None:
    page = render_html(_report(), [{"case": EVIL, "caption": EVIL, "png_base64": "AAAA"}])
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # title, h1, rows, mosaic
    assert "cases &lt;b&gt;" in page


def test_sections_come_in_reading_order_and_tables_are_folded() -> None:
    page = render_html(_report(), [{"case": "case0", "caption": "c", "png_base64": "AAAA"}])
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    heads = re.findall(r"<h2>(.*?)</h2>", page)
    assert heads == [
        "Findings",
        "Cases",
        "Attestations",
        "Image quality metrics",
        "Label statistics",
        "Mosaics",
    ]
    assert '<span class="level level-B" title="MIDaR level">B</span>' in page
    assert page.index("Only the level and the counts") < page.index("<h2>Findings</h2>")
    findings = page[page.index("<h2>Findings</h2>") : page.index("<h2>Cases</h2>")]
    assert findings.index("unreadable") < findings.index("iqm_outlier")  # errors first
    assert "<summary>1 note</summary>" in findings  # notes folded
    assert page.count("<details>") == 3  # notes, cases, label statistics per case
    assert 'class="scroll"' in page and "overflow-x:auto" in page
    assert "not given" in page and "EC-1" in page
    assert "data:image/png;base64,AAAA" in page


def test_one_valid_chart_per_metric_with_the_outlier_named() -> None:
    page = render_html(_report())
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == len(IQM_NAMES)
    for svg in svgs:
        ET.fromstring(svg)
    assert "case4" in svgs[IQM_NAMES.index("snr")]
    assert "<h2>Mosaics</h2>" not in page  # none given


def test_a_site_without_measurements_says_so() -> None:
    report = {**_report(), "iqm": {}, "label_stats": {}, "cases": [], "findings": []}
    page = render_html(report)
    assert "No image could be measured." in page and "No error and no warning." in page
    assert "<h2>Label statistics</h2>" not in page
