"""Small inline-SVG charts for the HTML reports (no plotting dependency).

Every function returns one ``<svg>`` element as a string; coordinates are data units,
mapped linearly onto the drawing area.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
PAD = 36


@dataclass(frozen=True)
class Frame:
    """Maps data ``[x0, x1] x [y0, y1]`` onto a ``width x height`` drawing with margins."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = 360
    height: int = 240

    def x(self, v: float) -> float:
        return PAD + (v - self.x0) / max(self.x1 - self.x0, 1e-12) * (self.width - 1.5 * PAD)

    def y(self, v: float) -> float:
        return (
            self.height
            - PAD
            + (v - self.y0) / max(self.y1 - self.y0, 1e-12) * (1.5 * PAD - self.height)
        )

    def open(self, title: str, xlabel: str) -> list[str]:
        w, h = self.width, self.height
        parts = [
            f'<svg width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
            f'<text x="{w / 2}" y="14" font-size="12" text-anchor="middle">'
            f"{html.escape(title)}</text>",
            f'<rect x="{PAD}" y="{PAD / 2}" width="{w - 1.5 * PAD}" height="{h - 1.5 * PAD}" '
            'fill="none" stroke="#bbb"/>',
            f'<text x="{w / 2}" y="{h - 6}" font-size="11" text-anchor="middle">'
            f"{html.escape(xlabel)}</text>",
        ]
        for v in np.linspace(self.x0, self.x1, 5):
            parts.append(
                f'<text x="{self.x(v):.1f}" y="{h - PAD + 13}" font-size="9" '
                f'text-anchor="middle">{v:.3g}</text>'
            )
        return parts


def _legend(parts: list[str], frame: Frame, names: Sequence[str], colors: Sequence[str]) -> None:
    for i, (name, color) in enumerate(zip(names, colors, strict=True)):
        parts.append(
            f'<text x="{frame.width - 8}" y="{PAD / 2 + 14 + 13 * i}" font-size="10" '
            f'fill="{color}" text-anchor="end">{html.escape(name)}</text>'
        )


def histograms(
    edges: np.ndarray,
    series: Sequence[tuple[str, np.ndarray]],
    title: str,
    xlabel: str,
    width: int = 360,
    height: int = 240,
) -> str:
    """Normalised histograms on shared ``edges`` as step lines, one colour per series."""
    edges = np.asarray(edges, dtype=np.float64)
    pmfs = []
    for _, counts in series:
        c = np.asarray(counts, dtype=np.float64)
        pmfs.append(c / c.sum() / np.diff(edges) if c.sum() > 0 else np.zeros_like(c))
    top = max((float(p.max()) for p in pmfs), default=1.0) or 1.0
    used = np.flatnonzero(np.sum(pmfs, axis=0) > 1e-4 * top) if pmfs else np.array([0])
    lo, hi = edges[used.min()] if used.size else edges[0], edges[used.max() + 1]
    frame = Frame(float(lo), float(hi), 0.0, top * 1.05, width, height)
    parts = frame.open(title, xlabel)
    colors = [COLORS[i % len(COLORS)] for i in range(len(series))]
    for pmf, color in zip(pmfs, colors, strict=True):
        pts = []
        for k, v in enumerate(pmf):
            if edges[k + 1] < lo or edges[k] > hi:
                continue
            pts += [f"{frame.x(edges[k]):.1f},{frame.y(v):.1f}"]
            pts += [f"{frame.x(edges[k + 1]):.1f},{frame.y(v):.1f}"]
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{" ".join(pts)}"/>'
        )
    _legend(parts, frame, [n for n, _ in series], colors)
    return "".join(parts) + "</svg>"


def scatter(
    groups: Sequence[tuple[str, np.ndarray, str]],
    ellipses: Sequence[tuple[str, np.ndarray, np.ndarray, str]],
    title: str,
    xlabel: str,
    limits: tuple[float, float, float, float] | None = None,
    width: int = 300,
    height: int = 260,
) -> str:
    """Points ``(name, (N, 2), colour)`` and 2-sigma ellipses ``(name, mean, cov, colour)``."""
    pts = [p for _, p, _ in groups if len(p)]
    if limits is None:
        allp = np.concatenate(pts) if pts else np.zeros((1, 2))
        for _, mean, cov, _ in ellipses:
            r = 2 * np.sqrt(np.diag(cov))
            allp = np.concatenate([allp, [mean - r, mean + r]])
        lo, hi = allp.min(0), allp.max(0)
        span = np.maximum(hi - lo, 1e-6)
        limits = (lo[0] - 0.05 * span[0], hi[0] + 0.05 * span[0], lo[1] - 0.05 * span[1],
                  hi[1] + 0.05 * span[1])  # fmt: skip
    frame = Frame(*limits, width, height)
    parts = frame.open(title, xlabel)
    for _, points, color in groups:
        for x, y in np.asarray(points).reshape(-1, 2):
            parts.append(
                f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="1.6" fill="{color}" '
                'fill-opacity="0.55"/>'
            )
    theta = np.linspace(0, 2 * np.pi, 64)
    for _, mean, cov, color in ellipses:
        vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
        circle = np.stack([np.cos(theta), np.sin(theta)], 1) * 2 * np.sqrt(np.maximum(vals, 0))
        curve = circle @ vecs.T + mean
        path = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in curve)
        parts.append(f'<polygon fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
    names = [n for n, _, _ in groups] + [n for n, *_ in ellipses]
    colors = [c for *_, c in groups] + [c for *_, c in ellipses]
    _legend(parts, frame, names, colors)
    return "".join(parts) + "</svg>"
