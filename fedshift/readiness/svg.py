"""Inline SVG strip + box plots of one metric over a site's cases (no JS, no libraries)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from html import escape

import numpy as np

OUTLIER_COLOR = "#d62728"
POINT_COLOR = "#4c72b0"


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _box(array: np.ndarray, x: Callable[[float], float], mid: float) -> list[str]:
    """Whisker line (min-max), quartile box and median line."""
    q1, med, q3 = np.percentile(array, [25, 50, 75])
    return [
        f'<line x1="{x(array.min()):.1f}" x2="{x(array.max()):.1f}" y1="{mid}" y2="{mid}" '
        'stroke="#999"/>',
        f'<rect x="{x(q1):.1f}" y="{mid - 10}" width="{max(x(q3) - x(q1), 1):.1f}" height="20" '
        'fill="#e8eef7" stroke="#777"/>',
        f'<line x1="{x(med):.1f}" x2="{x(med):.1f}" y1="{mid - 10}" y2="{mid + 10}" '
        'stroke="#333" stroke-width="2"/>',
    ]


def _dots(
    values: Mapping[str, float],
    flagged: set[str] | frozenset[str],
    x: Callable[[float], float],
    mid: float,
) -> list[str]:
    """One circle per case, deterministic vertical jitter, flagged cases red and larger."""
    parts = []
    for i, (case, value) in enumerate(sorted(values.items())):
        jitter = ((i * 7) % 11 - 5) * 1.6
        bad = case in flagged
        parts.append(
            f'<circle cx="{x(value):.1f}" cy="{mid + jitter:.1f}" r="{4.5 if bad else 3}" '
            f'fill="{OUTLIER_COLOR if bad else POINT_COLOR}" fill-opacity="{1 if bad else 0.6}">'
            f"<title>{escape(case)}: {_fmt(value)}</title></circle>"
        )
    return parts


def strip_plot(
    name: str,
    values: Mapping[str, float | None],
    flagged: set[str] | frozenset[str] = frozenset(),
    width: int = 560,
    height: int = 78,
) -> str:
    """A horizontal box plot (quartiles, median, whiskers at min/max) with every case as a
    dot; cases in ``flagged`` are red and larger. Hovering a dot shows case and value.

    Parameters
    ----------
    name : metric name, shown on the left.
    values : ``{case: value}``; ``None`` and NaN are left out (and counted in the label).
    """
    finite = {c: float(v) for c, v in values.items() if v is not None and math.isfinite(v)}
    missing = len(values) - len(finite)
    left, right, mid = 110, 60, height / 2 - 6
    label = escape(name) + (f" ({missing} n/a)" if missing else "")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(name)} distribution">',
        f'<text x="4" y="{mid + 4:.0f}" font-size="12">{label}</text>',
    ]
    if not finite:
        parts.append(f'<text x="{left}" y="{mid + 4:.0f}" font-size="11">no value</text></svg>')
        return "".join(parts)
    array = np.asarray(list(finite.values()))
    span = float(array.max() - array.min()) or max(abs(float(array.max())), 1.0)
    lo, hi = float(array.min()) - 0.05 * span, float(array.max()) + 0.05 * span

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (width - left - right)

    axis_y, median = height - 8, float(np.median(array))
    parts += _box(array, x, mid) + _dots(finite, flagged, x, mid)
    parts += [
        f'<text x="{left}" y="{axis_y}" font-size="10" fill="#555">{_fmt(lo)}</text>',
        f'<text x="{width - right}" y="{axis_y}" font-size="10" fill="#555" '
        f'text-anchor="end">{_fmt(hi)}</text>',
        f'<text x="{x(median):.1f}" y="{axis_y}" font-size="10" fill="#333" '
        f'text-anchor="middle">median {_fmt(median)}</text>',
        "</svg>",
    ]
    return "".join(parts)
