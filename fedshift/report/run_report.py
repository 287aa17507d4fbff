"""report.html of a federated run: validation Dice per site per round, the final test
table, one prediction overlay per site and, when the run had secure statistics, the shift
verdicts. Self-contained HTML (inline SVG, base64 PNG), from ``templates/run.html.j2``.

Overlays are drawn by each site in its own work folder (``<run>/sites/<site>/overlays``):
in a simulation all work folders are on this machine, so the report can show them; in a
deployment they stay at the hospitals and the report says so.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

from fedshift.record import FinalRecord, RoundRecord
from fedshift.render.pages import num, render
from fedshift.render.plots import line_plot
from fedshift.report.verdicts import verdict_cards
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunState

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: final metric -> its column header
COLUMNS = {
    "dice": "Dice",
    "lesion_f1": "lesion F1",
    "lesion_precision": "lesion precision",
    "lesion_recall": "lesion recall",
    "avd": "volume difference (ml)",
    "threshold": "threshold",
}


def dice_plot(rounds: list[RoundRecord], key: str = "val_dice") -> str:
    """An inline SVG line per site of ``key`` over rounds (empty string when no data)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for entry in rounds:
        for site, metrics in entry.sites.items():
            value = metrics.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                series.setdefault(site, []).append((entry.round, float(value)))
    if not series:
        return ""
    label = COLUMNS.get(key.removeprefix("val_"), key)
    return line_plot(series, f"validation {label} per round", "round", label, ylim=(0.0, 1.0))


def final_rows(final: FinalRecord | None) -> list[list[str]]:
    """One row per site: name, role, then :data:`COLUMNS`."""
    if final is None:
        return []
    rows = []
    for role, label in (("sites", "labelled"), ("target", "target (unlabelled)")):
        for site, m in sorted(getattr(final, role).items()):
            rows.append([site, label, *(num(m.get(c)) for c in COLUMNS)])
    return rows


def _overlays(cfg: RunConfig) -> list[dict[str, str]]:
    found = []
    for site_dir in cfg.all_sites:
        name = Path(site_dir).resolve().name
        png = Path(cfg.out) / "sites" / name / "overlays" / "test.png"
        if png.is_file():
            found.append(
                {
                    "site": name,
                    "png_base64": base64.b64encode(png.read_bytes()).decode("ascii"),
                    "caption": f"{name}: truth (left) | prediction (right)",
                }
            )
    return found


def _diagnosis(cfg: RunConfig) -> dict[str, Any] | None:
    path = Path(cfg.out) / "diagnosis.json"
    if not path.is_file():
        return None
    body = json.loads(path.read_text())
    return {"after_round": body.get("after_round", "?"), "cards": verdict_cards(body)}


def write_run_report(cfg: RunConfig, state: RunState) -> Path:
    """Write ``<cfg.out>/report.html`` for a run's record; returns its path."""
    final = state.record.final
    page = render(
        TEMPLATES,
        "run.html.j2",
        name=cfg.name,
        aggregator=cfg.fed.aggregator,
        alignment=cfg.seg.align.method,
        intensity_map=cfg.fed.align_intensity,
        map_from=cfg.fed.align_from_round,
        secure_stats=cfg.fed.secure_stats,
        rounds=cfg.fed.rounds,
        seed=cfg.seed,
        n_sites=len(cfg.data.sites),
        n_targets=len(cfg.data.target),
        dice_chart=dice_plot(state.record.rounds),
        columns=list(COLUMNS.values()),
        final=final_rows(final),
        final_note=final.note if final else "",
        target_threshold=num(final.target_threshold, 2) if final else "–",
        bures=final_rows(final.bures if final else None),
        overlays=_overlays(cfg),
        diagnosis=_diagnosis(cfg),
    )
    out = Path(cfg.out) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
