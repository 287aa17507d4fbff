"""fedshift.render.plots: every chart is one well-formed inline <svg>, text escaped, ids
unique per chart, the same data giving the same bytes."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from fedshift.render import plots

SVG = "{http://www.w3.org/2000/svg}"


def _charts(rng: np.random.Generator) -> dict[str, str]:
    edges = np.linspace(-3, 3, 25)
    return {
        "strip": plots.strip_plot("snr", {"c1": 1.0, "c2": 2.0, "c3": None}, {"c2"}),
        "line": plots.line_plot(
            {"a": [(1, 0.2), (2, 0.5)], "b": [(1, 0.1), (2, 0.3)]}, "Dice", "round", "Dice"
        ),
        "hist": plots.histograms(
            edges, [("site", rng.integers(0, 9, 24)), ("fed", rng.integers(0, 9, 24))], "t", "z"
        ),
        "scatter": plots.scatter(
            [("bg", rng.normal(size=(30, 2)), "#1f77b4")],
            [("ref", np.zeros(2), np.eye(2), "#2ca02c")],
            "embeddings",
            "axis 1",
            "axis 2",
        ),
    }


def test_each_chart_is_one_parsable_svg_element(rng: np.random.Generator) -> None:
    for name, svg in _charts(rng).items():
        assert svg.startswith("<svg") and svg.endswith("</svg>"), name
        assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<metadata" not in svg
        root = ET.fromstring(svg)
        assert root.tag == f"{SVG}svg"
        assert root.iter(f"{SVG}text"), "text is kept as text"


def test_text_is_escaped_and_kept_searchable() -> None:
    svg = plots.line_plot({"<script>x</script>": [(1, 0.5)]}, "t & u", "round", "Dice")
    assert "<script>" not in svg and "&lt;script&gt;x&lt;/script&gt;" in svg
    assert "t &amp; u" in svg
    ET.fromstring(svg)


def test_ids_differ_between_charts_and_output_is_deterministic(rng) -> None:
    first = _charts(np.random.default_rng(0))
    again = _charts(np.random.default_rng(0))
    assert first == again  # no date, no random ids
    ids = [set(re.findall(r'\bid="([^"]+)"', svg)) for svg in first.values()]
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            assert not ids[i] & ids[j]
    for svg in first.values():  # every reference points at an id of the same chart
        refs = set(re.findall(r"url\(#([^)]+)\)", svg)) | set(re.findall(r'href="#([^"]+)"', svg))
        assert refs <= set(re.findall(r'\bid="([^"]+)"', svg))


def test_strip_plot_names_the_flagged_case_and_counts_missing_values() -> None:
    svg = plots.strip_plot("cnr", {"case_a": 1.0, "case_b": 5.0, "case_c": None}, {"case_b"})
    assert "case_b" in svg and "case_a" not in svg and "(1 n/a)" in svg
    assert plots.OUTLIER_COLOR in svg
    assert "no value" in plots.strip_plot("cnr", {"x": None})


def test_line_plot_without_points_is_refused() -> None:
    with pytest.raises(ValueError, match="no series"):
        plots.line_plot({"a": []}, "Dice", "round", "Dice")


def test_legend_sits_outside_the_axes() -> None:
    """The legend's text starts right of the axes' right edge (line plot)."""
    svg = plots.line_plot({"site0": [(1, 0.1), (2, 0.9)]}, "t", "round", "Dice", ylim=(0, 1))
    root = ET.fromstring(svg)
    patch = next(g for g in root.iter(f"{SVG}g") if g.get("id", "").endswith("patch_2"))
    axes_right = max(
        float(v) for v in re.findall(r"[ML] ([\d.]+) ", patch.find(f"{SVG}path").get("d"))
    )
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("id", "").endswith("legend_1"))
    label = next(t for t in legend.iter(f"{SVG}text") if t.text == "site0")
    assert float(label.get("x")) > axes_right
