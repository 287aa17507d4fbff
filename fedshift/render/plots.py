"""The reports' charts, drawn with matplotlib and returned as inline SVG text.

Every function returns one ``<svg>`` element as a string, ready to place in an HTML page:
no XML prolog, text kept as text (searchable, in the page's font), ids prefixed so that
several charts on one page do not clash, and no date, so the same data gives the same
bytes. Legends sit outside the data area (right of it or below it).

Figures are built on matplotlib's object API with the Agg canvas: no pyplot, no global
figure state, safe to call from any thread.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle

#: series colours (matplotlib's tab10), in order
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
#: line styles of successive histograms (a mapped copy drawn dashed over the original)
LINESTYLES = ("-", "-", "--", ":")
POINT_COLOR = "#4c72b0"
OUTLIER_COLOR = "#d62728"
#: flagged cases named next to their dot; more than this are counted instead
MAX_NAMED = 4

_STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "fedshift",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#888",
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "legend.frameon": False,
}


@contextmanager
def _style() -> Iterator[None]:
    with rc_context(_STYLE):
        yield


def _figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_svg(fig: Figure) -> str:
    """The figure as one ``<svg>`` element (no prolog, no date, ids unique to its content)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :].strip()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    prefix = "c" + hashlib.sha1(text.encode()).hexdigest()[:8] + "-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)


def _finite(values: Mapping[str, float | None]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}


def strip_plot(
    name: str,
    values: Mapping[str, float | None],
    flagged: set[str] | frozenset[str] = frozenset(),
    width_in: float = 4.6,
) -> str:
    """One metric over a site's cases: a horizontal box plot (quartiles, median, whiskers
    at min and max) with every case as a dot; cases in ``flagged`` are red, larger and
    named (up to :data:`MAX_NAMED`; the rest counted in the title).

    Parameters
    ----------
    name : metric name, the chart's title.
    values : ``{case: value}``; ``None`` and NaN are left out (and counted in the title).
    flagged : cases to mark as outliers.
    """
    finite = _finite(values)
    missing = len(values) - len(finite)
    with _style():
        fig = _figure(width_in, 1.25)
        ax = fig.add_subplot()
        ax.grid(False, axis="y")
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        red = sorted(c for c in finite if c in flagged)
        title = name + (f"  ({missing} n/a)" if missing else "")
        if len(red) > MAX_NAMED:
            title += f"  ({len(red)} outliers)"
        ax.set_title(title, loc="left")
        if not finite:
            ax.set_xticks([])
            ax.text(0.5, 0.5, "no value", ha="center", va="center", transform=ax.transAxes)
            return to_svg(fig)
        cases = sorted(finite)
        array = np.array([finite[c] for c in cases])
        q1, median, q3 = np.percentile(array, [25, 50, 75])
        ax.hlines(1, array.min(), array.max(), color="#999", lw=1)
        ax.add_patch(Rectangle((q1, 0.75), q3 - q1, 0.5, fc="#e8eef7", ec="#777", lw=1))
        ax.vlines(median, 0.75, 1.25, color="#333", lw=1.8)
        jitter = 1 + ((np.arange(len(cases)) * 7) % 11 - 5) * 0.03
        bad = np.array([c in flagged for c in cases])
        ax.scatter(array[~bad], jitter[~bad], s=10, color=POINT_COLOR, alpha=0.6, lw=0)
        ax.scatter(array[bad], jitter[bad], s=26, color=OUTLIER_COLOR, lw=0, zorder=3)
        if len(red) <= MAX_NAMED:
            for case, value, y in zip(cases, array, jitter, strict=True):
                if case in flagged:
                    ax.annotate(case, (value, y), (3, 5), textcoords="offset points",
                                fontsize=7, color=OUTLIER_COLOR)  # fmt: skip
        ax.set_ylim(0.55, 1.45)
        return to_svg(fig)


def line_plot(
    series: Mapping[str, Sequence[tuple[float, float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
    integer_x: bool = True,
    width_in: float = 6.0,
    height_in: float = 3.0,
) -> str:
    """One line with markers per series (``{name: [(x, y), ...]}``), legend right of the
    axes. Series are drawn in name order; an empty series is left out.

    Raises
    ------
    ValueError
        No series has a point.
    """
    drawn = {k: sorted(v) for k, v in sorted(series.items()) if len(v)}
    if not drawn:
        raise ValueError(f"line_plot {title!r}: no series has a point")
    with _style():
        fig = _figure(width_in, height_in)
        ax = fig.add_subplot()
        for i, (label, points) in enumerate(drawn.items()):
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", ms=3.5, lw=1.6, color=COLORS[i % len(COLORS)],
                    label=label)  # fmt: skip
        if ylim is not None:
            ax.set_ylim(*ylim)
        if integer_x:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
        return to_svg(fig)


def histograms(
    edges: np.ndarray,
    series: Sequence[tuple[str, np.ndarray]],
    title: str,
    xlabel: str,
    width_in: float = 5.2,
    height_in: float = 2.8,
) -> str:
    """Histograms on shared bin ``edges`` (``(K + 1,)``), each ``(name, counts (K,))``,
    normalised to a density and drawn as step lines (the third dashed, see
    :data:`LINESTYLES`); the x range is cut to the bins that hold mass. Legend right of
    the axes."""
    edges = np.asarray(edges, dtype=np.float64)
    widths = np.diff(edges)
    densities = []
    for _, counts in series:
        c = np.asarray(counts, dtype=np.float64)
        densities.append(c / c.sum() / widths if c.sum() > 0 else np.zeros_like(c))
    total = np.sum(densities, axis=0) if densities else np.zeros(len(widths))
    used = np.flatnonzero(total > 1e-4 * max(float(total.max()), 1e-300))
    with _style():
        fig = _figure(width_in, height_in)
        ax = fig.add_subplot()
        for i, ((name, _), density) in enumerate(zip(series, densities, strict=True)):
            style = LINESTYLES[i % len(LINESTYLES)]
            ax.stairs(density, edges, color=COLORS[i % len(COLORS)], ls=style, lw=1.5, label=name)
        if used.size:
            ax.set_xlim(edges[used.min()], edges[used.max() + 1])
        ax.set_ylim(bottom=0)
        ax.set(title=title, xlabel=xlabel, ylabel="density")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
        return to_svg(fig)


def _ellipse(mean: np.ndarray, cov: np.ndarray, n_sigma: float = 2.0) -> np.ndarray:
    """(64, 2) points on the ``n_sigma`` contour of a 2-D Gaussian."""
    vals, vecs = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    theta = np.linspace(0, 2 * np.pi, 64)
    circle = np.stack([np.cos(theta), np.sin(theta)], 1) * n_sigma * np.sqrt(np.maximum(vals, 0))
    return circle @ vecs.T + np.asarray(mean, dtype=np.float64)


def scatter(
    groups: Sequence[tuple[str, np.ndarray, str]],
    ellipses: Sequence[tuple[str, np.ndarray, np.ndarray, str]],
    title: str,
    xlabel: str,
    ylabel: str,
    limits: tuple[float, float, float, float] | None = None,
    width_in: float = 3.6,
    height_in: float = 3.4,
) -> str:
    """Points ``(name, (N, 2), colour)`` and 2-sigma ellipses ``(name, mean (2,), cov
    (2, 2), colour)``; ``limits`` is ``(x0, x1, y0, y1)`` (default: fit the data). Legend
    below the axes."""
    with _style():
        fig = _figure(width_in, height_in)
        ax = fig.add_subplot()
        for name, points, color in groups:
            p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            ax.scatter(p[:, 0], p[:, 1], s=5, color=color, alpha=0.55, lw=0, label=name)
        for name, mean, cov, color in ellipses:
            ax.add_patch(Polygon(_ellipse(mean, cov), closed=True, fill=False, ec=color,
                                 lw=1.5, label=name))  # fmt: skip
        if limits is not None:
            ax.set_xlim(limits[0], limits[1])
            ax.set_ylim(limits[2], limits[3])
        else:
            ax.autoscale_view()
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, markerscale=2.5)
        return to_svg(fig)
