"""``readiness.html``: one self-contained page (inline CSS, SVG and PNG; no script, no
external asset) that a person at the site reads next to ``readiness.json``.

The page is ``templates/readiness.html.j2``; this module turns the report into the values
it shows (rows, sentences, charts). It leads with the level and what needs attention;
per-case tables are folded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from fedshift.readiness.iqm import IQM_NAMES
from fedshift.readiness.levels import LEVELS
from fedshift.render.pages import render, sig
from fedshift.render.plots import strip_plot

TEMPLATES = Path(__file__).resolve().parent / "templates"
_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
_LABEL_COLUMNS = ("n_lesions", "lesion_volume_ml", "mean_lesion_ml", "max_lesion_ml")


def _findings(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Site and case findings as flat rows, errors first, then warnings, then notes."""
    rows = [{**f, "case": ""} for f in report.get("findings", [])]
    for case in report.get("cases", []):
        rows += [{**f, "case": case["case"]} for f in case["findings"]]
    for row in rows:
        row["file"] = row.get("file") or ""
        row["file_name"] = PurePosixPath(row["file"]).name if row["file"] else ""
    return sorted(rows, key=lambda r: _SEVERITY_ORDER.get(r["severity"], 3))


def _case_rows(cases: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for c in cases:
        severities = [f["severity"] for f in c["findings"]]
        rows.append(
            [
                c["case"],
                c["split"],
                "yes" if c.get("has_label") else "no",
                "yes" if c["usable"] else "NO",
                str(severities.count("error")),
                str(severities.count("warning")),
            ]
        )
    return rows


def _unusable(cases: Iterable[Mapping[str, Any]], shown: int = 12) -> str:
    """The unusable cases' names, the first ``shown`` of them and a count of the rest."""
    names = [c["case"] for c in cases if not c["usable"]]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _iqm_plots(report: Mapping[str, Any]) -> list[str]:
    iqm = report.get("iqm", {})
    if not iqm:
        return []
    flagged: dict[str, set[str]] = {}
    for o in report.get("iqm_outliers", []):
        flagged.setdefault(o["metric"], set()).add(o["case"])
    return [
        strip_plot(m, {c: v.get(m) for c, v in iqm.items()}, flagged.get(m, set()))
        for m in IQM_NAMES
    ]


def _label_summary(stats: Mapping[str, Mapping[str, Any]]) -> str:
    volumes = [
        s["lesion_volume_ml"] for s in stats.values() if s.get("lesion_volume_ml") is not None
    ]
    counts = [s["n_lesions"] for s in stats.values() if s.get("n_lesions") is not None]
    if not volumes:
        return "No lesion volume measured"
    return (
        f"Over {len(volumes)} labelled cases, lesion volume median "
        f"{sig(float(np.median(volumes)))} ml ({sig(float(min(volumes)))} to "
        f"{sig(float(max(volumes)))} ml), median {sig(float(np.median(counts)))} lesions per case"
    )


def _label_rows(stats: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    return [
        [case] + [sig(s.get(k)) for k in (*_LABEL_COLUMNS, "lesion_to_nawm")]
        for case, s in stats.items()
    ]


def render_html(report: Mapping[str, Any], mosaics: Sequence[Mapping[str, str]] = ()) -> str:
    """The whole page for a readiness report and its mosaics (``{"case", "caption",
    "png_base64"}``)."""
    findings = _findings(report)
    counts = report.get("counts", {})
    severities = counts.get("findings", {})
    stats = report.get("label_stats", {})
    raters = report.get("raters", {})
    return render(
        TEMPLATES,
        "readiness.html.j2",
        site=str(report.get("site", "")),
        level=report["level"],
        levels=LEVELS,
        level_meaning=report.get("level_meaning", ""),
        reasons=report.get("level_reasons", []),
        n_usable=report["n_usable"],
        n_cases=report["n_cases"],
        counts={
            "train": counts.get("train", 0),
            "test": counts.get("test", 0),
            "usable_labelled_train": counts.get("usable_labelled_train", 0),
            **{k: severities.get(k, 0) for k in ("error", "warning", "info")},
        },
        problems=[f for f in findings if f["severity"] != "info"],
        notes=[f for f in findings if f["severity"] == "info"],
        unusable=_unusable(report.get("cases", [])),
        cases=_case_rows(report.get("cases", [])),
        attestations=list(report.get("attestations", {}).items()),
        iqm_plots=_iqm_plots(report),
        label_summary=_label_summary(stats),
        label_rows=_label_rows(stats),
        rater_rows=[
            [c, ", ".join(r["raters"]), sig(r["mean_dice"]), sig(r["min_dice"])]
            for c, r in raters.items()
        ],
        mosaics=list(mosaics),
        version=str(report.get("fedshift_version", "")),
    )
