"""report.html of a federated run: validation Dice per site per round, the final table and
one prediction overlay per site. Self-contained HTML (inline SVG, base64 PNG).

Overlays are drawn by each site in its own work folder (``<run>/sites/<site>/overlays``):
in a simulation all work folders are on this machine, so the report can show them; in a
deployment they stay at the hospitals and the report says so.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from fedshift.runconfig import RunConfig
from fedshift.runstate import RunState

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
_COLUMNS = ("dice", "lesion_f1", "lesion_precision", "lesion_recall", "avd", "threshold")


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def dice_plot(
    rounds: list[dict[str, Any]], key: str = "val_dice", width: int = 520, height: int = 260
) -> str:
    """An inline SVG line per site of ``key`` over rounds (empty string when no data)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in rounds:
        for site, metrics in entry.get("sites", {}).items():
            value = metrics.get(key)
            if value is not None and math.isfinite(value):
                series.setdefault(site, []).append((int(entry["round"]), float(value)))
    if not series:
        return ""
    n = max(r for pts in series.values() for r, _ in pts)
    pad = 40
    x = lambda r: pad + (r - 1) / max(n - 1, 1) * (width - 2 * pad)  # noqa: E731
    y = lambda v: height - pad - v * (height - 2 * pad)  # noqa: E731
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{key} per round">',
        f'<line x1="{pad}" y1="{y(0)}" x2="{width - pad}" y2="{y(0)}" stroke="#999"/>',
        f'<line x1="{pad}" y1="{y(0)}" x2="{pad}" y2="{y(1)}" stroke="#999"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<text x="{pad - 6}" y="{y(tick) + 4}" font-size="10" text-anchor="end">{tick:.2f}</text>'
        )
    for r in range(1, n + 1):
        parts.append(
            f'<text x="{x(r)}" y="{height - pad + 14}" font-size="10" text-anchor="middle">{r}</text>'
        )
    for i, (site, pts) in enumerate(sorted(series.items())):
        color = _COLORS[i % len(_COLORS)]
        path = " ".join(f"{x(r):.1f},{y(v):.1f}" for r, v in pts)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        parts.append(
            f'<text x="{width - pad + 4}" y="{y(pts[-1][1]) + 4}" font-size="11" fill="{color}">'
            f"{html.escape(site)}</text>"
        )
    parts.append(
        f'<text x="{width / 2}" y="{height - 6}" font-size="11" text-anchor="middle">round</text></svg>'
    )
    return "".join(parts)


def final_table(final: dict[str, Any]) -> str:
    rows = ["<tr><th>site</th><th>role</th>" + "".join(f"<th>{c}</th>" for c in _COLUMNS) + "</tr>"]
    for role in ("sites", "target"):
        for site, m in sorted(final.get(role, {}).items()):
            label = "labelled" if role == "sites" else "target (unlabelled)"
            rows.append(
                f"<tr><td>{html.escape(site)}</td><td>{label}</td>"
                + "".join(f"<td>{_num(m.get(c))}</td>" for c in _COLUMNS)
                + "</tr>"
            )
    return "<table>" + "".join(rows) + "</table>"


def _overlays(cfg: RunConfig) -> str:
    blocks = []
    for site_dir in cfg.all_sites:
        name = Path(site_dir).resolve().name
        png = Path(cfg.out) / "sites" / name / "overlays" / "test.png"
        if png.is_file():
            data = base64.b64encode(png.read_bytes()).decode()
            blocks.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(name)}'>"
                f"<figcaption>{html.escape(name)}: truth (left) | prediction (right)</figcaption></figure>"
            )
    if not blocks:
        return "<p>No overlays here: in a deployment they stay in each site's work folder.</p>"
    return "".join(blocks)


def _diagnosis(cfg: RunConfig) -> str:
    path = Path(cfg.out) / "diagnosis.json"
    if not path.is_file():
        return "<p>No shift diagnosis: run with <code>fed.secure_stats=true</code>.</p>"
    from fedshift.report.diagnosis_report import verdict_table

    return (
        verdict_table(json.loads(path.read_text()))
        + "<p>Histograms and embedding projections per site: "
        "<a href='diagnosis.html'>diagnosis.html</a>.</p>"
    )


def write_run_report(cfg: RunConfig, state: RunState) -> Path:
    out = Path(cfg.out) / "report.html"
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>FedShift run {html.escape(cfg.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}figure{{display:inline-block;margin:6px}}</style>
</head><body><h1>FedShift run: {html.escape(cfg.name)}</h1>
<p>aggregator <b>{html.escape(cfg.fed.aggregator)}</b>, alignment <b>{html.escape(cfg.seg.align.method)}</b>, {cfg.fed.rounds} rounds, seed {cfg.seed},
{len(cfg.data.sites)} labelled site(s), {len(cfg.data.target)} target site(s).
Test metrics: labelled sites on their own test split (imagesTs/labelsTs, threshold tuned on
their validation split); target sites on labelsTs only, with the mean threshold of the labelled sites.</p>
<h2>Validation Dice per round</h2>{dice_plot([r.to_json() for r in state.record.rounds]) or "<p>(no per-round validation)</p>"}
<h2>Final test metrics</h2>{final_table(state.record.final.to_json() if state.record.final else {})}
<h2>One prediction per site</h2>{_overlays(cfg)}
<h2>Shift diagnosis</h2>{_diagnosis(cfg)}
</body></html>"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    return out
