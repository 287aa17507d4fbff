"""Per-case descriptors of shift, and how a site compares their distribution to the rest.

Each case of a site is described by three small vectors, one per kind of dataset shift
(Castro, Walker & Glocker 2020):

- **acquisition** (P(X | anatomy)): image appearance measured on the raw image:
  ``noise`` (log robust sigma of the air background, relative to the median brain
  intensity), ``contrast`` (log spread of brain tissue log-intensities once a smooth field
  and the noise variance are removed: a contrast curve scales it), ``nonuniformity`` (log
  spread of that smooth field, relative to the contrast: a bias field) and ``sharpness``
  (log fine-scale spread, noise removed, relative to the contrast: blur and thick slices
  lower it);
- **population** (P(anatomy)): the lesion load the global model predicts,
  ``log1p`` of volume (mL) and of count; measured on every site, labelled or not;
- **annotation** (P(Y | anatomy)): how the site's labels disagree with the global model's
  prediction, ``log`` ratios of label to predicted lesion volume and count (labelled
  cases only). A population shift moves labels and predictions together; an annotation
  shift moves only the labels.

A site cannot see another site's cases, only the secure sum over all sites. So each family
is summarised by random Fourier features (Rahimi & Recht 2007) of its descriptor vectors,
scaled per descriptor (:data:`FAMILIES`): the sums ``n``, ``sum ||phi||^2`` and
``sum phi`` add up across sites (so do the plain sums and sums of squares of the
descriptors, which give the means and spreads a report shows). From its own sums and
the federation's, a site computes :func:`similarity`: the Gaussian-kernel similarity of
its cases to the rest of the federation's cases, normalised by how similar each group is
to itself: about 1 when its cases look like everyone else's, about 0 when no other site
has cases like them.

References
----------
.. [1] Castro, D. C., Walker, I., & Glocker, B. (2020). Causality matters in medical
   imaging. Nature Communications, 11, 3673.
.. [2] Rahimi, A., & Recht, B. (2007). Random features for large-scale kernel machines.
   NeurIPS.
.. [3] Gretton, A. et al. (2012). A kernel two-sample test. JMLR 13, 723-773.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import ndimage

#: family -> ((descriptor, kernel scale in its units), ...). The scale is the difference
#: that counts as "clearly different" for one descriptor; sites closer than that look alike.
FAMILIES: dict[str, tuple[tuple[str, float], ...]] = {
    "acquisition": (
        ("noise", 0.25),  # log: x1.28 in noise sigma
        ("contrast", 0.08),  # log: a contrast curve I**gamma with gamma 1.08
        ("nonuniformity", 0.3),  # log, relative to the contrast
        ("sharpness", 0.08),  # log, relative to the contrast
    ),
    "population": (
        ("lesion_volume", 0.5),  # log1p(mL) of predicted lesions
        ("lesion_count", 0.35),  # log1p(count) of predicted lesions
    ),
    "annotation": (
        ("volume_agreement", 0.2),  # log((label mL + 0.1) / (predicted mL + 0.1))
        ("count_agreement", 0.3),  # log((label count + 1) / (predicted count + 1))
    ),
}

#: version of :func:`appearance`; kept appearance descriptors of another version are not
#: reused (bump it with any change to what :func:`appearance` computes)
APPEARANCE_VERSION = 1
#: random Fourier features per family
N_FEATURES = 256
#: floor of the air-noise estimate (relative to the median brain intensity): skull-stripped
#: images have no air, and log(0) must not be
NOISE_FLOOR = 1e-4
#: smooth field scale (FWHM, mm): larger than anatomy, like a bias field
FIELD_MM = 30.0
#: fine scale (FWHM, mm) that separates sharp detail from tissue contrast
DETAIL_MM = 8.0
#: brighter voxels are clipped to this brain percentile: FLAIR lesions are the brightest
#: tissue, and a lesion load must not read as a contrast change
TOP_PERCENTILE = 95.0
#: air voxels are at least this far from the head (mm)
AIR_MARGIN_MM = 10.0


def _smooth(
    values: np.ndarray, weight: np.ndarray, fwhm_mm: float, zooms: np.ndarray
) -> np.ndarray:
    """Normalised convolution: Gaussian smoothing of ``values`` where ``weight`` is 1."""
    sigma = fwhm_mm / 2.3548 / zooms
    num = ndimage.gaussian_filter(values * weight, sigma)
    return num / np.maximum(ndimage.gaussian_filter(weight, sigma), 1e-6)


def appearance(
    raw: np.ndarray, brain: np.ndarray, head: np.ndarray, zooms: tuple[float, ...]
) -> dict[str, float]:
    """Acquisition descriptors of one raw image (see the module docstring).

    Parameters
    ----------
    raw : (X, Y, Z) stored intensities (before any preprocessing)
    brain : (X, Y, Z) bool brain mask
    head : (X, Y, Z) bool head mask; voxels at least ``AIR_MARGIN_MM`` outside it are air
    zooms : voxel sizes (mm)

    Returns
    -------
    dict with ``noise``, ``contrast``, ``nonuniformity``, ``sharpness`` (all log scale)
    """
    z = np.asarray(zooms[:3], dtype=np.float64)
    inner = ndimage.binary_erosion(brain, iterations=1)
    if inner.sum() < 64:
        inner = brain
    if inner.sum() < 64:
        raise ValueError(f"brain mask holds {int(brain.sum())} voxels; too few to describe")
    x = np.clip(np.asarray(raw, dtype=np.float64), 0.0, None)
    x /= max(float(np.median(x[inner])), 1e-6)
    margin = max(1, int(np.ceil(AIR_MARGIN_MM / z.min())))
    air = x[~ndimage.binary_dilation(head, iterations=margin)]
    sigma = 1.4826 * float(np.median(np.abs(air - np.median(air)))) if air.size > 100 else 0.0
    # tissue: the brighter 60 % of the brain (a quantile, so a contrast curve keeps it)
    floor, top = (float(v) for v in np.percentile(x[inner], [40, TOP_PERCENTILE]))
    tissue = inner & (x > floor)
    logx = np.log(np.clip(x, floor, max(top, floor * (1 + 1e-6))))
    weight = inner.astype(np.float64)
    field = _smooth(logx, weight, FIELD_MM, z)
    # Rician noise in the log domain of tissue voxels: (sigma / x)^2
    noise_var = float(np.mean(np.where(tissue, (sigma / np.maximum(x, floor)) ** 2, 0.0)[inner]))
    contrast = 0.5 * np.log(max(float(np.var((logx - field)[inner])) - noise_var, 1e-8))
    detail = logx - _smooth(logx, weight, DETAIL_MM, z)
    sharp = 0.5 * np.log(max(float(np.var(detail[inner])) - noise_var, 1e-8))
    return {
        "noise": float(np.log(max(sigma, NOISE_FLOOR))),
        "contrast": float(contrast),
        "nonuniformity": float(np.log(max(float(field[inner].std()), 1e-8)) - contrast),
        "sharpness": float(sharp - contrast),
    }


def lesion_load(
    label: np.ndarray, spacing_mm: Sequence[float], connectivity: int = 26
) -> tuple[int, float]:
    """Lesion count (connected components) and total lesion volume of one case.

    ``label`` (X, Y, Z), ``> 0`` lesion; ``spacing_mm`` voxel size (mm); ``connectivity``
    6, 18 or 26. Returns ``(count, volume_ml)``, the volume in mL.
    """
    rank = {6: 1, 18: 2, 26: 3}.get(connectivity)
    if rank is None:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    fg = np.asarray(label) > 0
    _, count = ndimage.label(fg, structure=ndimage.generate_binary_structure(3, rank))
    return int(count), float(fg.sum() * np.prod(spacing_mm[:3]) / 1000.0)


def population(predicted: np.ndarray, zooms: tuple[float, ...]) -> dict[str, float]:
    """Population descriptors from the global model's predicted lesion mask."""
    count, volume = lesion_load(predicted, zooms)
    return {"lesion_volume": float(np.log1p(volume)), "lesion_count": float(np.log1p(count))}


def annotation(
    label: np.ndarray, predicted: np.ndarray, zooms: tuple[float, ...]
) -> dict[str, float]:
    """Annotation descriptors: the site's label against the global model's prediction."""
    lc, lv = lesion_load(label, zooms)
    pc, pv = lesion_load(predicted, zooms)
    return {
        "volume_agreement": float(np.log((lv + 0.1) / (pv + 0.1))),
        "count_agreement": float(np.log((lc + 1.0) / (pc + 1.0))),
    }


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
    """Length of one family's summary: ``n``, ``sum |phi|^2``, ``sum phi`` (D), and the
    plain sums and sums of squares of its d descriptors."""
    return 2 + N_FEATURES + 2 * len(FAMILIES[family])


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
    """

    family: str
    n: float
    sq: float
    total: np.ndarray
    sums: np.ndarray
    squares: np.ndarray

    @classmethod
    def zeros(cls, family: str) -> KernelSummary:
        d = len(FAMILIES[family])
        return cls(family, 0.0, 0.0, np.zeros(N_FEATURES), np.zeros(d), np.zeros(d))

    @classmethod
    def of(cls, family: str, rows: list[Mapping[str, float]]) -> KernelSummary:
        """The summary of descriptor dicts (one per case, keys of ``FAMILIES[family]``)."""
        if not rows:
            return cls.zeros(family)
        names = [n for n, _ in FAMILIES[family]]
        x = np.array([[r[n] for n in names] for r in rows], dtype=np.float64)
        phi = features(family, x)
        return cls(
            family, float(len(rows)), float((phi**2).sum()), phi.sum(0), x.sum(0), (x**2).sum(0)
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
        parts = [[self.n, self.sq], self.total, self.sums, self.squares]
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
        return cls(
            family, float(vec[0]), float(vec[1]), total.copy(), rest[:d].copy(), rest[d:].copy()
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
