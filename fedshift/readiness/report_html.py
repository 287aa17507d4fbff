"""``readiness.html``: one self-contained page (inline CSS, SVG and PNG; no script, no
external asset) that a person at the site reads next to ``readiness.json``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from fedshift.readiness.iqm import IQM_NAMES
from fedshift.readiness.levels import LEVELS
from fedshift.readiness.svg import strip_plot

LEVEL_COLORS = {"A": "#2e7d32", "B": "#1565c0", "C": "#ef6c00", "D": "#c62828"}
SEVERITY_COLORS = {"error": "#c62828", "warning": "#ef6c00", "info": "#555"}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.level{display:inline-block;font-size:72px;font-weight:700;color:#fff;width:1.4em;
text-align:center;border-radius:.15em;margin-right:.3em;vertical-align:middle}
.summary{display:flex;align-items:center}.summary p{margin:.2em 0}
.note{background:#fff8e1;border-left:4px solid #ffb300;padding:.6em 1em}
table{border-collapse:collapse;margin:.5em 0;font-size:14px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5}.num{text-align:right}.sev{font-weight:600}
figure{display:inline-block;margin:.5em 1em .5em 0}figcaption{font-size:13px;color:#444}
img{image-rendering:pixelated;border:1px solid #ccc}
"""


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are trusted HTML)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if raw else escape(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _finding_rows(findings: Iterable[Mapping[str, Any]], case: str = "") -> list[list[str]]:
    rows = []
    for f in findings:
        color = SEVERITY_COLORS.get(f["severity"], "#222")
        rows.append(
            [
                escape(case),
                f'<span class="sev" style="color:{color}">{escape(f["severity"])}</span>',
                f"<code>{escape(f['code'])}</code>",
                escape(f["message"]),
                escape(f["file"] or ""),
            ]
        )
    return rows


def _summary(report: Mapping[str, Any]) -> str:
    level = report["level"]
    reasons = "".join(f"<li>{escape(r)}</li>" for r in report.get("level_reasons", []))
    counts = report.get("counts", {})
    sev = counts.get("findings", {})
    return (
        f'<div class="summary"><span class="level" style="background:'
        f'{LEVEL_COLORS.get(level, "#555")}" title="MIDaR level">{escape(level)}</span><div>'
        f"<p><b>Readiness level {escape(level)}</b> ({' &lt; '.join(LEVELS)}): "
        f"{escape(report.get('level_meaning', ''))}</p>"
        f"<p><b>{report['n_usable']}</b> of <b>{report['n_cases']}</b> cases usable "
        f"({counts.get('train', 0)} training, {counts.get('test', 0)} test; "
        f"{counts.get('usable_labelled_train', 0)} usable labelled training cases)</p>"
        f"<p>{sev.get('error', 0)} errors, {sev.get('warning', 0)} warnings, "
        f"{sev.get('info', 0)} notes</p><ul>{reasons}</ul></div></div>"
    )


def _attestations(report: Mapping[str, Any]) -> str:
    rows = [
        [escape(k), escape(v) if v else '<span style="color:#ef6c00">not given</span>']
        for k, v in report.get("attestations", {}).items()
    ]
    return "<h2>Attestations</h2>" + _table(["item", "statement"], rows, raw=True)


def _findings(report: Mapping[str, Any]) -> str:
    header = ["case", "severity", "code", "message", "file"]
    site_rows = _finding_rows(report["findings"])
    case_rows = [r for c in report["cases"] for r in _finding_rows(c["findings"], c["case"])]
    overview = [
        [
            escape(c["case"]),
            escape(c["split"]),
            "yes" if c["usable"] else "<b>no</b>",
            str(sum(f["severity"] == "error" for f in c["findings"])),
            str(sum(f["severity"] == "warning" for f in c["findings"])),
        ]
        for c in report["cases"]
    ]
    return (
        "<h2>Site findings</h2>"
        + (_table(header, site_rows, raw=True) if site_rows else "<p>None.</p>")
        + "<h2>Cases</h2>"
        + _table(["case", "split", "usable", "errors", "warnings"], overview, raw=True)
        + "<h2>Case findings</h2>"
        + (_table(header, case_rows, raw=True) if case_rows else "<p>None.</p>")
    )


def _iqm_plots(report: Mapping[str, Any]) -> str:
    iqm = report.get("iqm", {})
    if not iqm:
        return "<h2>Image quality metrics</h2><p>No image could be measured.</p>"
    flagged: dict[str, set[str]] = {}
    for o in report.get("iqm_outliers", []):
        flagged.setdefault(o["metric"], set()).add(o["case"])
    plots = "".join(
        "<div>"
        + strip_plot(m, {c: v.get(m) for c, v in iqm.items()}, flagged.get(m, set()))
        + "</div>"
        for m in IQM_NAMES
    )
    return (
        "<h2>Image quality metrics</h2><p>One dot per case (hover for its name); red dots "
        "are robust outliers (|z| above the limit). Box: quartiles and median.</p>" + plots
    )


def _label_tables(report: Mapping[str, Any]) -> str:
    out = ""
    stats = report.get("label_stats", {})
    if stats:
        cols = [
            "n_lesions",
            "lesion_volume_ml",
            "mean_lesion_ml",
            "max_lesion_ml",
            "lesion_to_nawm",
        ]
        rows = [[c] + [_fmt(s.get(k)) for k in cols] for c, s in stats.items()]
        out += "<h2>Label statistics</h2>" + _table(["case", *cols], rows)
    raters = report.get("raters", {})
    if raters:
        rows = [
            [c, ", ".join(r["raters"]), _fmt(r["mean_dice"]), _fmt(r["min_dice"])]
            for c, r in raters.items()
        ]
        out += "<h2>Raters' agreement</h2>" + _table(
            ["case", "raters", "mean pairwise Dice", "min pairwise Dice"], rows
        )
    return out


def _mosaics(mosaics: Sequence[Mapping[str, str]]) -> str:
    if not mosaics:
        return ""
    figures = "".join(
        f'<figure><img alt="{escape(m["case"])}" src="data:image/png;base64,{m["png_base64"]}">'
        f"<figcaption>{escape(m['caption'])}</figcaption></figure>"
        for m in mosaics
    )
    return (
        "<h2>Mosaics</h2><p>Axial, coronal and sagittal slices; the label in colour. "
        "Flagged cases first.</p>" + figures
    )


def render_html(report: Mapping[str, Any], mosaics: Sequence[Mapping[str, str]] = ()) -> str:
    """The whole page for a readiness report and its mosaics (``png_base64`` strings)."""
    site = escape(str(report.get("site", "")))
    note = (
        '<p class="note"><b>Only the level and the counts</b> (cases, usable cases) are meant '
        "to leave the site. Findings, image quality metrics, label statistics and the images "
        "on this page stay at the hospital.</p>"
    )
    body = "".join(
        [
            f"<h1>Data readiness: {site}</h1>",
            _summary(report),
            note,
            _attestations(report),
            _findings(report),
            _iqm_plots(report),
            _label_tables(report),
            _mosaics(mosaics),
            f"<p style='color:#777'>fedshift {escape(str(report.get('fedshift_version', '')))}</p>",
        ]
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Readiness {site}: level {escape(report['level'])}</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
