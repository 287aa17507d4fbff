"""How a site compares the distribution of its cases' shift descriptors to the rest.

Each case of a site is described by three small vectors, one per kind of dataset shift
(acquisition, population, annotation; computed by :mod:`fedshift.shift.case_descriptors`,
named with their kernel scales in :data:`FAMILIES`), and two families of evidence about
what a monotone intensity map cannot change (:mod:`fedshift.shift.tissue`): the tissue
order (every case) and the lesion separability (labelled cases).

A site cannot see another site's cases, only the secure sum over all sites. So each family
is summarised by random Fourier features (Rahimi & Recht 2007) of its descriptor vectors,
scaled per descriptor (:data:`FAMILIES`): the sums ``n``, ``sum ||phi||^2`` and
``sum phi`` add up across sites (so do the plain sums and sums of squares of the
descriptors, which give the means and spreads a report shows, and a histogram of each
descriptor on a grid every site shares (:data:`RANGES`), which gives the federation's
median case). From its own sums and
the federation's, a site computes :func:`similarity`: the Gaussian-kernel similarity of
its cases to the rest of the federation's cases, normalised by how similar each group is
to itself: about 1 when its cases look like everyone else's, about 0 when no other site
has cases like them. Or :func:`robust_comparison`: per descriptor, how far the site's
median case lies from the federation's median case, in the robust spread of its own and
the other sites' cases (never less than the descriptor's scale), and how sure that
difference is. The federation's median is where most sites are when most share a setting,
so a site that kept the common setting on every axis sits near it, however the other
sites moved, and one outlier site moves neither the median nor the others' spread.

References
----------
.. [1] Rahimi, A., & Recht, B. (2007). Random features for large-scale kernel machines.
   NeurIPS.
.. [2] Gretton, A. et al. (2012). A kernel two-sample test. JMLR 13, 723-773.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np

#: family -> ((descriptor, kernel scale in its units), ...). The scale is the difference
#: that counts as "clearly different" for one descriptor; sites closer than that look alike.
FAMILIES: dict[str, tuple[tuple[str, float], ...]] = {
    "acquisition": (
        ("noise", 0.25),  # log: x1.28 in noise sigma
        ("contrast", 0.12),  # log: tissue contrast x1.13 (a contrast curve I**1.13)
        ("nonuniformity", 0.4),  # log: x1.5 in the asymmetric bias field
        ("sharpness", 0.05),  # log ratio of directional detail
    ),
    "population": (
        ("lesion_volume", 0.5),  # log1p(mL) of predicted lesions
        ("lesion_count", 0.35),  # log1p(count) of predicted lesions
    ),
    "annotation": (
        ("volume_agreement", 0.2),  # log((label mL + 0.1) / (predicted mL + 0.1))
        ("count_agreement", 0.3),  # log((label count + 1) / (predicted count + 1))
    ),
    # acquisition evidence a monotone intensity map cannot change (fedshift.shift.tissue)
    "tissue": (
        ("csf_rank", 0.25),  # rank of CSF among deep tissue: ~0.03 FLAIR, > 0.5 CSF above WM
    ),
    "separability": (  # labelled cases only; shown, never decides a verdict
        ("lesion_auc_nawm", 0.05),  # AUC of intensity, lesion vs normal-appearing WM
        ("lesion_auc_gm", 0.05),  # lesion vs grey matter
        ("lesion_auc_nawm_mapped", 0.05),  # the same after the site's intensity map
        ("lesion_auc_gm_mapped", 0.05),
    ),
}
#: the kinds of shift (Castro et al. 2020), each decided from its own family; the other
#: families are evidence: ``tissue`` joins acquisition's median offsets, ``separability``
#: is reported only
SHIFT_KINDS: tuple[str, ...] = ("acquisition", "population", "annotation")

#: descriptor -> (low, high) of its histogram; values outside count in the end bins
RANGES: dict[str, tuple[float, float]] = {
    "noise": (-9.0, 0.0),
    "contrast": (-5.0, -0.5),
    "nonuniformity": (-7.0, 1.0),
    "sharpness": (-1.5, 0.5),
    "lesion_volume": (0.0, 6.0),
    "lesion_count": (0.0, 6.0),
    "volume_agreement": (-5.0, 5.0),
    "count_agreement": (-4.0, 4.0),
    "csf_rank": (0.0, 1.0),
    "lesion_auc_nawm": (0.0, 1.0),
    "lesion_auc_gm": (0.0, 1.0),
    "lesion_auc_nawm_mapped": (0.0, 1.0),
    "lesion_auc_gm_mapped": (0.0, 1.0),
}
#: bins of each descriptor's histogram
HIST_BINS = 128

#: random Fourier features per family
N_FEATURES = 256


@cache
def _projection(family: str) -> tuple[np.ndarray, np.ndarray]:
    """The family's random Fourier projection, the same at every site (seeded by name)."""
    names = FAMILIES[family]
    rng = np.random.default_rng(zlib.crc32(f"fedshift-descriptors/{family}".encode()))
    scales = np.array([s for _, s in names])
    w = rng.normal(size=(len(names), N_FEATURES)) / scales[:, None]
    b = rng.uniform(0.0, 2.0 * np.pi, size=N_FEATURES)
    return w, b


def features(family: str, rows: np.ndarray) -> np.ndarray:
    """Random Fourier features ``sqrt(2/D) cos(x W + b)`` of descriptor rows (N, d) -> (N, D).

    ``phi(x) . phi(y)`` approximates ``exp(-|(x - y) / scale|^2 / 2)``.
    """
    w, b = _projection(family)
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, w.shape[0])
    return np.sqrt(2.0 / N_FEATURES) * np.cos(rows @ w + b)


def summary_size(family: str) -> int:
    """Length of one family's summary: ``n``, ``sum |phi|^2``, ``sum phi`` (D), the plain
    sums and sums of squares of its d descriptors, and their histograms (d x HIST_BINS)."""
    d = len(FAMILIES[family])
    return 2 + N_FEATURES + 2 * d + d * HIST_BINS


def histograms(family: str, rows: np.ndarray) -> np.ndarray:
    """(d, HIST_BINS) counts of descriptor rows (N, d) on the :data:`RANGES` grid; values
    outside a range count in its end bin."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(FAMILIES[family]))
    out = np.zeros((rows.shape[1], HIST_BINS))
    for k, (name, _) in enumerate(FAMILIES[family]):
        lo, hi = RANGES[name]
        idx = np.floor((rows[:, k] - lo) / (hi - lo) * HIST_BINS).astype(np.int64)
        np.add.at(out[k], np.clip(idx, 0, HIST_BINS - 1), 1.0)
    return out


def _hist_median(counts: np.ndarray, lo: float, hi: float) -> float:
    """Median of a histogram on ``HIST_BINS`` equal bins over [lo, hi], interpolated
    linearly inside the bin that holds it (NaN when empty)."""
    total = float(counts.sum())
    if total <= 0:
        return float("nan")
    cum = np.cumsum(counts)
    k = int(np.searchsorted(cum, total / 2.0))
    before = cum[k - 1] if k > 0 else 0.0
    frac = (total / 2.0 - before) / max(float(counts[k]), 1e-12)
    width = (hi - lo) / HIST_BINS
    return lo + (k + frac) * width


@dataclass(frozen=True, eq=False)
class KernelSummary:
    """Additive summary of one family's descriptors over some cases.

    Attributes
    ----------
    family : a key of :data:`FAMILIES`
    n : number of cases
    sq : sum of ``|phi(x_i)|^2``
    total : (D,) sum of ``phi(x_i)``
    sums, squares : (d,) sums of the descriptors and of their squares (means and spreads
        for the report)
    hist : (d, HIST_BINS) histogram of each descriptor (:func:`histograms`)
    """

    family: str
    n: float
    sq: float
    total: np.ndarray
    sums: np.ndarray
    squares: np.ndarray
    hist: np.ndarray

    @classmethod
    def zeros(cls, family: str) -> KernelSummary:
        d = len(FAMILIES[family])
        return cls(
            family,
            0.0,
            0.0,
            np.zeros(N_FEATURES),
            np.zeros(d),
            np.zeros(d),
            np.zeros((d, HIST_BINS)),
        )

    @classmethod
    def of(cls, family: str, rows: list[Mapping[str, float]]) -> KernelSummary:
        """The summary of descriptor dicts (one per case, keys of ``FAMILIES[family]``)."""
        if not rows:
            return cls.zeros(family)
        names = [n for n, _ in FAMILIES[family]]
        x = np.array([[r[n] for n in names] for r in rows], dtype=np.float64)
        phi = features(family, x)
        sq = float((phi**2).sum())
        return cls(
            family, float(len(rows)), sq, phi.sum(0), x.sum(0), (x**2).sum(0), histograms(family, x)
        )

    def _combine(self, other: KernelSummary, sign: float) -> KernelSummary:
        if other.family != self.family:
            raise ValueError(f"cannot combine {self.family!r} with {other.family!r} summaries")
        return KernelSummary.from_vector(self.family, self.to_vector() + sign * other.to_vector())

    def __add__(self, other: KernelSummary) -> KernelSummary:
        return self._combine(other, 1.0)

    def __sub__(self, other: KernelSummary) -> KernelSummary:
        return self._combine(other, -1.0)

    def to_vector(self) -> np.ndarray:
        parts = [[self.n, self.sq], self.total, self.sums, self.squares, self.hist.ravel()]
        return np.concatenate(parts).astype(np.float64)

    @classmethod
    def from_vector(cls, family: str, vec: np.ndarray) -> KernelSummary:
        vec = np.asarray(vec, dtype=np.float64)
        if vec.shape != (summary_size(family),):
            raise ValueError(
                f"a {family!r} summary has {summary_size(family)} values, got {vec.shape}"
            )
        d = len(FAMILIES[family])
        total, rest = vec[2 : 2 + N_FEATURES], vec[2 + N_FEATURES :]
        hist = rest[2 * d :].reshape(d, HIST_BINS).copy()
        return cls(
            family,
            float(vec[0]),
            float(vec[1]),
            total.copy(),
            rest[:d].copy(),
            rest[d : 2 * d].copy(),
            hist,
        )

    def moments(self) -> dict[str, tuple[float, float]]:
        """Descriptor -> (mean, standard deviation) over the cases (NaN without cases)."""
        n = self.n
        out = {}
        for k, (name, _) in enumerate(FAMILIES[self.family]):
            if n < 1:
                out[name] = (float("nan"), float("nan"))
                continue
            mean = self.sums[k] / n
            var = max(self.squares[k] / n - mean**2, 0.0) * (n / (n - 1) if n > 1 else 0.0)
            out[name] = (float(mean), float(np.sqrt(var)))
        return out

    def medians(self) -> dict[str, float]:
        """Descriptor -> median over the cases, from the histogram (NaN without cases)."""
        return {
            name: _hist_median(self.hist[k], *RANGES[name])
            for k, (name, _) in enumerate(FAMILIES[self.family])
        }

    def self_similarity(self) -> float | None:
        """Mean kernel over distinct pairs of its cases (``None`` with fewer than 2)."""
        n = round(self.n)
        if n < 2:
            return None
        return (float(self.total @ self.total) - self.sq) / (n * (n - 1))


def similarity(own: KernelSummary, federation: KernelSummary) -> float | None:
    """How much a site's cases look like the rest of the federation's, in [0, ~1].

    ``mean k(own, rest) / sqrt(mean k(own, own') * mean k(rest, rest'))`` with the
    Gaussian kernel of the family's scales, pairs of distinct cases only; the rest is
    ``federation - own``. About 1 when the site is like the others, near 0 when no other
    site has cases like its own. ``None`` when either side has fewer than 2 cases or no
    measurable self-similarity (random-feature noise on very spread data).
    """
    rest = federation - own
    if round(own.n) < 2 or round(rest.n) < 2:
        return None
    s_own, s_rest = own.self_similarity(), rest.self_similarity()
    if s_own is None or s_rest is None or s_own <= 1e-6 or s_rest <= 1e-6:
        return None
    cross = float(own.total @ rest.total) / (own.n * rest.n)
    return max(cross, 0.0) / float(np.sqrt(s_own * s_rest))


def mean_difference(own: KernelSummary, federation: KernelSummary) -> dict[str, float] | None:
    """Per descriptor, the site's mean minus the rest's, in pooled within-group standard
    deviations (Cohen's d; the rest is ``federation - own``). ``None`` when either side
    has fewer than 2 cases; a descriptor with no spread on either side gives 0."""
    rest = federation - own
    if round(own.n) < 2 or round(rest.n) < 2:
        return None
    mine, theirs = own.moments(), rest.moments()
    out = {}
    for name, (mean, sd) in mine.items():
        other_mean, other_sd = theirs[name]
        spread = float(np.sqrt((sd**2 + other_sd**2) / 2))
        out[name] = (mean - other_mean) / spread if spread > 1e-12 else 0.0
    return out


#: 1.4826 x the median absolute deviation estimates a normal distribution's standard
#: deviation
MAD_TO_SD = 1.4826
#: the standard error of a median of n normal values is about sqrt(pi / 2) sd / sqrt(n)
MEDIAN_SE = 1.2533

#: descriptor -> the smallest scale :func:`robust_comparison` divides by, in its units.
#: Acquisition and tissue descriptors: their kernel scale (the change that counts as
#: clear), so an offset never reads larger than the fixed-scale offset of a tight
#: federation. Lesion loads: half their kernel scale, which only matters where the other
#: sites' cases hardly vary at all (an untrained model predicting nothing anywhere).
ROBUST_FLOOR: dict[str, float] = {
    **{name: scale for family in ("acquisition", "tissue") for name, scale in FAMILIES[family]},
    **{name: scale / 2 for name, scale in FAMILIES["population"]},
}


def _hist_mad(counts: np.ndarray, lo: float, hi: float, centre: float) -> float:
    """Median absolute deviation from ``centre`` of a histogram on ``HIST_BINS`` equal bins
    over [lo, hi], each bin's count spread evenly over it (NaN when empty)."""
    total = float(counts.sum())
    if total <= 0 or not np.isfinite(centre):
        return float("nan")
    edges = np.linspace(lo, hi, HIST_BINS + 1)
    a, b = edges[:-1], edges[1:]
    # the count within d of the centre is linear in d between the edges' distances to it
    d = np.unique(np.concatenate([[0.0], np.abs(edges - centre)]))
    overlap = np.minimum(b, centre + d[:, None]) - np.maximum(a, centre - d[:, None])
    within = (counts * np.clip(overlap, 0.0, None) / (b - a)).sum(axis=1)
    k = int(np.searchsorted(within, total / 2.0))
    if k == 0:
        return 0.0
    rise = within[k] - within[k - 1]
    frac = (total / 2.0 - within[k - 1]) / rise if rise > 0 else 0.0
    return float(d[k - 1] + frac * (d[k] - d[k - 1]))


@dataclass(frozen=True)
class Comparison:
    """One descriptor of a site against the other sites' cases (:func:`robust_comparison`).

    Attributes
    ----------
    offset : the site's median case minus the centre's (the federation's or the other
        sites' median case), over the larger of the robust spread pooled over the site's
        and the other sites' cases (``MAD_TO_SD`` x median absolute deviation, root mean
        square of the two) and the descriptor's floor (:data:`ROBUST_FLOOR`)
    z : the same difference over its standard error (``MEDIAN_SE`` x the robust spread
        pooled with each side weighted by its cases x ``sqrt(1/n_site + 1/n_rest)``): how
        sure a difference of medians of this many cases is, whatever its size
    cases : the site's cases and the other sites' cases behind it
    """

    offset: float
    z: float
    cases: tuple[int, int]


#: where :func:`robust_comparison` puts the centre a site is compared with: the median case
#: of the whole federation (the site included) or of the other sites only
CENTRES = ("federation", "others")


def robust_comparison(
    own: KernelSummary, federation: KernelSummary, centre: str = "federation"
) -> dict[str, Comparison] | None:
    """Per descriptor, the site's median case against the federation's median case, in the
    robust spread of the site's and the other sites' cases (floored at
    :data:`ROBUST_FLOOR`), with the evidence for it (:class:`Comparison`).

    Medians and median absolute deviations come from the descriptor histograms, so one
    site far from the rest moves neither the centre nor the others' spread (a mean and a
    standard deviation it would move: an outlier made its unshifted neighbours look
    shifted). The spread pools the site's own and the other sites' (``federation - own``),
    as Cohen's d does (:func:`mean_difference`). The centre
    (:data:`CENTRES`) is the whole federation's median case by default: where the other
    sites split evenly on a setting (two of four changed their slice thickness, each in
    its own way), their median falls at the edge of the split, and a site that kept the
    common setting would sit a scale from it; counted in, it tips the median to its side.
    ``centre="others"`` compares with the other sites' median case instead.

    ``None`` when the site or the rest has fewer than 2 cases; a descriptor whose medians
    are undefined is left out.
    """
    if centre not in CENTRES:
        raise ValueError(f"centre must be one of {CENTRES}, got {centre!r}")
    rest = federation - own
    n_own, n_rest = round(own.n), round(rest.n)
    if n_own < 2 or n_rest < 2:
        return None
    out = {}
    for k, (name, _) in enumerate(FAMILIES[own.family]):
        lo, hi = RANGES[name]
        mine = _hist_median(own.hist[k], lo, hi)
        theirs = _hist_median(rest.hist[k], lo, hi)
        middle = theirs if centre == "others" else _hist_median(federation.hist[k], lo, hi)
        if not (np.isfinite(mine) and np.isfinite(theirs) and np.isfinite(middle)):
            continue
        spread_rest = MAD_TO_SD * _hist_mad(rest.hist[k], lo, hi, theirs)
        spread_own = MAD_TO_SD * _hist_mad(own.hist[k], lo, hi, mine)
        # no spread below a histogram bin's: a median is not known more finely than that
        resolution = (hi - lo) / HIST_BINS
        pooled = max(float(np.sqrt((spread_own**2 + spread_rest**2) / 2)), resolution)
        # the error's spread weighs each side by its cases: a MAD of three cases is a poor
        # estimate, and a tiny one would make any difference look sure
        weighted = (n_own * spread_own**2 + n_rest * spread_rest**2) / (n_own + n_rest)
        sigma = max(float(np.sqrt(weighted)), resolution)
        error = MEDIAN_SE * sigma * float(np.sqrt(1 / n_own + 1 / n_rest))
        diff = mine - middle
        out[name] = Comparison(
            offset=diff / max(pooled, ROBUST_FLOOR[name]),
            z=diff / error,
            cases=(n_own, n_rest),
        )
    return out
