"""diagnosis.html from its template: verdicts first, the indicator table folded, one
section per site, every name escaped. (The per-site charts, drawn from a site's private
shift folder, are checked in tests/site/test_site_files.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fedshift.report.diagnosis_report import render_diagnosis, write_diagnosis_report

EVIL = "<script>alert(1)</script>"
BODY = {
    "after_round": 3,
    "sites": {
        "a": {
            "shift": [],
            "evidence": "every similarity at or above 0.5 (acquisition 0.91)",
            "indicators": {"acquisition_similarity": 0.91, "intensity_w1": 0.05},
        },
        "t": {
            "shift": ["acquisition"],
            "evidence": "images unlike the federation's median case (noise -6.4 scales)",
            "indicators": {"acquisition_similarity": 0.12, "noise_offset": -6.4},
        },
        EVIL: {"shift": [], "indicators": {}},
    },
}


def test_page_leads_with_the_verdicts_and_folds_the_table() -> None:
    page = render_diagnosis(BODY, "run-1")
    assert page.startswith("<!DOCTYPE html>") and "<title>FedShift shift diagnosis: run-1" in page
    verdicts = page.index("<h2>Verdict per site</h2>")
    table = page.index("<summary>Every indicator, every site (table)</summary>")
    assert verdicts < table < page.index("<h2>a</h2>")
    assert page.count('<div class="card ') == 3
    assert '<span class="tag bad">acquisition shift</span>' in page
    assert "noise -6.4 scales" in page and "after round 3" in page
    assert re.search(r"<th scope=\"row\">noise</th><td class=\"num\">–</td>", page)
    assert '<div class="scroll">' in page


def test_site_names_are_escaped_and_missing_files_are_said() -> None:
    page = render_diagnosis(BODY, EVIL)
    assert "<script" not in page
    assert "<h2>&lt;script&gt;alert(1)&lt;/script&gt;</h2>" in page
    assert page.count("private files are not here") == 3
    assert "<svg" not in page  # no site's private files here: no chart


def test_write_needs_the_run_diagnosis(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="secure_stats"):
        write_diagnosis_report(tmp_path)
    (tmp_path / "diagnosis.json").write_text(json.dumps(BODY))
    out = write_diagnosis_report(tmp_path, out=tmp_path / "sub" / "d.html")
    assert out.is_file() and "<h2>t</h2>" in out.read_text()


def test_statistics_saved_with_other_descriptors_are_said_not_drawn(tmp_path: Path) -> None:
    """A site folder from before a descriptor family was added: its page says so instead
    of failing."""
    from fedshift.report.diagnosis_report import site_panel
    from fedshift.shift.reference import build_reference
    from fedshift.shift.stats import SiteStatistics, StatsLayout

    class Older:
        local_path = tmp_path / "local.npz"

        def load_reference(self):
            return build_reference(SiteStatistics.zeros(StatsLayout(2)))

        def load_local(self):
            raise KeyError("rows.tissue is not a file in the archive")

    Older.local_path.write_bytes(b"")
    panel = site_panel("old", Older(), None, {"shift": []})
    assert panel["private"] is False and "rows.tissue" in panel["stale"]
    page = render_diagnosis({"sites": {"old": {"shift": []}}}, "r", {"old": Older()})
    assert "written by a FedShift with other descriptors" in page
