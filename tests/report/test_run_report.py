"""report.html of a run from its template: Dice per round as a chart, the final table,
overlays when the sites' work folders are here, and the shift verdicts when the run had
secure statistics."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from fedshift.record import FinalRecord, RoundRecord, RunRecord
from fedshift.render.png import png_bytes
from fedshift.report.run_report import dice_plot, write_run_report
from fedshift.runconfig import DataConfig, RunConfig
from fedshift.runstate import RunState

EVIL = "<script>alert(1)</script>"


def _state() -> RunState:
    rounds = [
        RoundRecord(r, {"s1": {"val_dice": 0.2 * r}, EVIL: {"val_dice": None}}) for r in (1, 2, 3)
    ]
    final = FinalRecord(
        sites={"s1": {"dice": 0.61, "lesion_f1": 0.7, "threshold": 0.5}},
        target={EVIL: {"dice": 0.4, "lesion_f1": None}},
        target_threshold=0.5,
    )
    return RunState(record=RunRecord(rounds=rounds, final=final))


def _cfg(tmp_path: Path, sites: tuple[str, ...] = ()) -> RunConfig:
    return RunConfig(name=EVIL, out=str(tmp_path / "run"), data=DataConfig(sites=sites))


def test_sections_chart_and_table(tmp_path: Path) -> None:
    page = write_run_report(_cfg(tmp_path), _state()).read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "<h1>FedShift run: &lt;script&gt;alert(1)&lt;/script&gt;</h1>" in page
    heads = re.findall(r"<h2>(.*?)</h2>", page)
    assert heads == [
        "Validation Dice per round",
        "Final test metrics",
        "One prediction per site",
        "Shift diagnosis",
    ]
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 1
    ET.fromstring(svgs[0])
    assert '<td class="num">0.610</td>' in page and "target (unlabelled)" in page
    assert "No overlays here" in page and "fed.secure_stats=true" in page


def test_overlays_and_verdicts_when_they_are_there(tmp_path: Path) -> None:
    site = tmp_path / "data" / "hospital1"
    site.mkdir(parents=True)
    cfg = _cfg(tmp_path, (str(site),))
    overlay = Path(cfg.out) / "sites" / "hospital1" / "overlays" / "test.png"
    overlay.parent.mkdir(parents=True)
    overlay.write_bytes(png_bytes(np.zeros((4, 4), np.uint8)))
    body = {"after_round": 2, "sites": {"hospital1": {"shift": ["population"], "evidence": "x"}}}
    (Path(cfg.out) / "diagnosis.json").write_text(json.dumps(body))
    page = write_run_report(cfg, _state()).read_text()
    data = base64.b64encode(overlay.read_bytes()).decode()
    assert f"data:image/png;base64,{data}" in page and "hospital1: truth (left)" in page
    assert '<span class="tag bad">population shift</span>' in page
    assert 'href="diagnosis.html"' in page


def test_dice_plot_is_empty_without_validation() -> None:
    assert dice_plot([RoundRecord(1, {"s": {"train_loss": 1.0}})]) == ""
