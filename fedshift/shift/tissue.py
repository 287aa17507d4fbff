"""Tissue order and lesion separability: what a monotone intensity map cannot change.

FedShift's intensity alignment (:mod:`fedshift.shift.intensity`) maps a site's brain
intensities onto the federation's histogram with an increasing function, so it keeps the
rank order of voxels. Two things follow, and this module measures both:

- **tissue order** (:func:`tissue_order`, no labels, every case): where cerebrospinal
  fluid (CSF) sits among the deep brain's intensities. On FLAIR the CSF signal is nulled
  and CSF is the darkest tissue; a FLAIR whose inversion time is too short (or a
  T2-weighted image) has CSF above white matter (WM). No increasing map turns one order
  into the other, and a model trained on "bright is lesion" reads the bright CSF as lesion.
- **lesion separability** (:func:`lesion_auc`, :func:`separability`, labelled cases): the
  area under the ROC curve of intensity for lesion against normal-appearing white matter
  (NAWM) and against grey matter (GM). An AUC depends on ranks only, so a strictly
  increasing map leaves it exactly unchanged: it is what an intensity map cannot improve.

How CSF is found without labels
-------------------------------
Intensity rank alone cannot say which class is CSF (that is the question), so location
does. The lateral and third ventricles are CSF and fill the deep brain next to the
mid-sagittal plane; deep white matter lies mostly lateral to them (the corpus callosum
aside), and deep grey matter beside them.

1. *Deep region*: brain voxels whose distance to the border of the brain mask is at least
   :data:`DEEP_FRACTION` of the largest such distance (mm). This leaves out the mask's rim,
   where a mask made from intensities holds skull (dark in every MR contrast) as well as
   the outer CSF and cortex.
2. *Midline zone*: deep voxels within :data:`MIDLINE_MM` of the brain mask's left-right
   centre of mass (axis 0 of a RAS volume).
3. The deep voxels' intensities are turned into mid-ranks (0 darkest, 1 brightest; ties
   share a rank) and cut into :data:`CSF_BINS` bins of equal counts. A bin's *midline
   enrichment* is its share of midline voxels over the deep region's share. The CSF bin is
   the most enriched one.

``csf_rank`` is the mean rank of the CSF bin's voxels: about 0.03 on FLAIR (CSF the darkest
deep tissue), above :data:`CSF_BRIGHT_RANK` (0.5) when CSF is brighter than most deep
tissue, of which white matter is the largest part. Being a rank it does not move with a
contrast curve, a scale or an offset (the intensity map's job); it moves only when the
tissues change order. Failure modes are listed in ``docs/diagnosis.md``.

Everything here is pure numpy / scipy on arrays that stay at the site; only the scalars
returned (through the site's descriptor summaries) leave it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: equal-count intensity bins of the deep region; ``csf_rank`` is resolved to about 1/CSF_BINS
CSF_BINS = 20
#: deep region: distance to the brain mask's border at least this fraction of the largest
DEEP_FRACTION = 0.35
#: midline zone: deep voxels within this distance (mm) of the brain's left-right centre
MIDLINE_MM = 10.0
#: the depth is measured on a grid of at least this spacing (mm; an integer stride of the
#: image's): a distance known to a voxel of that size decides "deep" well enough, and a
#: 1 mm volume's distance transform costs 8x less
DEPTH_GRID_MM = 2.0
#: fewest deep voxels to rank (the floor of the appearance descriptors; a real brain at
#: 3 mm has ~25,000)
MIN_DEEP_VOXELS = 64
#: ``csf_rank`` above this: CSF brighter than most deep tissue (white matter the largest part)
CSF_BRIGHT_RANK = 0.5
#: fewest voxels of a reference tissue (NAWM, GM) for an AUC
MIN_REFERENCE_VOXELS = 20
#: the mixture behind the NAWM / GM proxies is fitted on at most this many voxels (strided)
EM_MAX_VOXELS = 50_000
EM_ITERATIONS = 200


@dataclass(frozen=True, eq=False)
class DeepRegion:
    """The deep brain voxels the tissue order is read from (see the module docstring).

    Attributes
    ----------
    mask : (X, Y, Z) bool, the deep region
    values : (N,) float64 intensities of ``mask``'s voxels (C order)
    ranks : (N,) mid-ranks of ``values`` in (0, 1]
    midline : (N,) bool, within :data:`MIDLINE_MM` of the left-right centre
    bins : (N,) int, equal-count rank bin of each voxel, 0 .. CSF_BINS - 1
    enrichment : (CSF_BINS,) midline enrichment of each bin (0 for an empty bin)
    """

    mask: np.ndarray
    values: np.ndarray
    ranks: np.ndarray
    midline: np.ndarray
    bins: np.ndarray
    enrichment: np.ndarray

    @property
    def csf_bin(self) -> int:
        """The bin most enriched at the midline: the ventricles' intensity."""
        return int(np.argmax(self.enrichment))

    def csf_bins(self) -> np.ndarray:
        """(N,) bool, voxels of :attr:`csf_bin` and the contiguous bins around it whose
        enrichment is above 1 and at least halfway between 1 and the peak's (CSF and its
        partial volume)."""
        peak = self.csf_bin
        cut = max(1.0 + 0.5 * (self.enrichment[peak] - 1.0), 1.0 + 1e-9)
        lo = hi = peak
        while lo > 0 and self.enrichment[lo - 1] >= cut:
            lo -= 1
        while hi < CSF_BINS - 1 and self.enrichment[hi + 1] >= cut:
            hi += 1
        return (self.bins >= lo) & (self.bins <= hi)


def _volume(name: str, array: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    out = np.asarray(array)
    if out.ndim != 3:
        raise ValueError(f"{name} must be a 3-D volume (X, Y, Z), got shape {out.shape}")
    if shape is not None and out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, the image {shape}")
    return out


def mid_ranks(values: np.ndarray) -> np.ndarray:
    """Mid-ranks of ``values`` scaled to (0, 1]: ``(#smaller + #smaller-or-equal) / 2n``.

    Tied values share a rank, so a rank does not depend on where a voxel sits.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    upto = np.cumsum(counts)
    return ((upto - counts / 2.0) / max(v.size, 1))[inverse.ravel()]


def deep_region(
    image: np.ndarray, brain_mask: np.ndarray, zooms: Sequence[float] = (1.0, 1.0, 1.0)
) -> DeepRegion:
    """The deep region of a brain, its intensity ranks and their midline enrichment.

    Parameters
    ----------
    image : (X, Y, Z) intensities, RAS+ (axis 0 left-right); any increasing transform of
        them gives the same result
    brain_mask : (X, Y, Z) bool
    zooms : voxel sizes (mm)

    Raises
    ------
    ValueError
        When the deep region holds fewer than :data:`MIN_DEEP_VOXELS` finite voxels or
        none lie near the midline.
    """
    x = _volume("image", image)
    brain = _volume("brain_mask", brain_mask, x.shape).astype(bool) & np.isfinite(x)
    z = np.ones(3)
    given = np.asarray(zooms, dtype=np.float64).ravel()[:3]
    z[: given.size] = np.where(np.isfinite(given) & (given > 0), given, 1.0)
    depth = _depth(brain, z)
    deep = brain & (depth >= DEEP_FRACTION * float(depth.max(initial=0.0)))
    if deep.sum() < MIN_DEEP_VOXELS:
        raise ValueError(
            f"brain mask holds {int(brain.sum())} voxels ({int(deep.sum())} deep); too few "
            f"to rank tissues (at least {MIN_DEEP_VOXELS} deep voxels)"
        )
    centre = float(ndimage.center_of_mass(brain)[0])
    offset_mm = np.abs(np.nonzero(deep)[0] - centre) * z[0]
    midline = offset_mm <= MIDLINE_MM
    if not midline.any():
        raise ValueError(
            f"no deep brain voxel lies within {MIDLINE_MM:g} mm of the brain's left-right "
            "centre; is axis 0 left-right (RAS)?"
        )
    values = x[deep].astype(np.float64)
    ranks = mid_ranks(values)
    bins = np.minimum((ranks * CSF_BINS).astype(np.int64), CSF_BINS - 1)
    counts = np.bincount(bins, minlength=CSF_BINS).astype(np.float64)
    at_midline = np.bincount(bins, weights=midline, minlength=CSF_BINS)
    share = np.divide(at_midline, counts, out=np.zeros(CSF_BINS), where=counts > 0)
    return DeepRegion(deep, values, ranks, midline, bins, share / midline.mean())


def _depth(brain: np.ndarray, zooms: np.ndarray) -> np.ndarray:
    """(X, Y, Z) distance (mm) of each brain voxel to the mask's border, read on a grid of
    :data:`DEPTH_GRID_MM` (every ``step``-th voxel) and repeated back to the full grid."""
    step = max(1, int(DEPTH_GRID_MM // float(zooms.min())))
    coarse = np.pad(brain[::step, ::step, ::step], 1)
    depth = ndimage.distance_transform_edt(coarse, sampling=zooms * step)[1:-1, 1:-1, 1:-1]
    for axis in range(3):
        depth = np.repeat(depth, step, axis=axis)
    return depth[: brain.shape[0], : brain.shape[1], : brain.shape[2]]


def tissue_order(
    image: np.ndarray, brain_mask: np.ndarray, zooms: Sequence[float] = (1.0, 1.0, 1.0)
) -> dict[str, float]:
    """Where CSF sits among the deep brain's intensities (no labels).

    Parameters
    ----------
    image : (X, Y, Z) intensities (raw, N4-corrected or z-scored: only their order inside
        the brain counts), RAS+
    brain_mask : (X, Y, Z) bool
    zooms : voxel sizes (mm)

    Returns
    -------
    dict
        ``csf_rank``: mean intensity rank (0 darkest, 1 brightest) of the deep voxels in the
        intensity bin most concentrated next to the mid-sagittal plane (the ventricles);
        about 0.03 on FLAIR, above :data:`CSF_BRIGHT_RANK` when CSF is brighter than white
        matter. ``csf_enrichment``: that bin's midline enrichment (about 1: no ventricle
        signal, ``csf_rank`` is then unreliable; 2-3 on the synthetic FLAIR).
        ``csf_intensity``, ``deep_median``: median intensity of the CSF bin and of the
        deep region, in the units of ``image``. Scalars; the image stays at the site.

    Raises
    ------
    ValueError
        When the brain is too small to rank (see :func:`deep_region`).
    """
    return csf_order(deep_region(image, brain_mask, zooms))


def csf_order(region: DeepRegion) -> dict[str, float]:
    """:func:`tissue_order` of a :class:`DeepRegion` already computed."""
    peak = region.bins == region.csf_bin
    return {
        "csf_rank": float(region.ranks[peak].mean()),
        "csf_enrichment": float(region.enrichment[region.csf_bin]),
        "csf_intensity": float(np.median(region.values[peak])),
        "deep_median": float(np.median(region.values)),
    }


def lesion_auc(image: np.ndarray, lesion_mask: np.ndarray, reference_mask: np.ndarray) -> float:
    """AUC of intensity for lesion against reference voxels (Mann-Whitney U / (n1 n0)).

    ``P(lesion voxel > reference voxel) + P(tie) / 2`` over all pairs, exact (sorting, no
    sampling). It depends on ranks only: a strictly increasing map of the intensities leaves
    it unchanged. 1: every lesion voxel brighter than every reference voxel, 0.5: no
    separation.

    Parameters
    ----------
    image : (X, Y, Z) intensities
    lesion_mask, reference_mask : (X, Y, Z) bool; voxels in both count as lesion

    Returns
    -------
    float in [0, 1]; NaN when either set has no finite voxel.
    """
    x = _volume("image", image)
    lesion = _volume("lesion_mask", lesion_mask, x.shape).astype(bool) & np.isfinite(x)
    reference = _volume("reference_mask", reference_mask, x.shape).astype(bool)
    reference &= np.isfinite(x) & ~lesion
    if not lesion.any() or not reference.any():
        return float("nan")
    ref = np.sort(x[reference].astype(np.float64))
    les = x[lesion].astype(np.float64)
    below = np.searchsorted(ref, les, side="left")
    ties = np.searchsorted(ref, les, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (float(ref.size) * float(les.size)))


def _em_1d(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(means, variances, weights) of a k-class 1-D Gaussian mixture by EM, started at the
    ``(i + 1/2) / k`` quantiles: deterministic, no random draw."""
    mu = np.quantile(x, (np.arange(k) + 0.5) / k)
    floor = 1e-6 * float(np.var(x)) + 1e-12
    var = np.full(k, float(np.var(x)) / k**2 + floor)
    w = np.full(k, 1.0 / k)
    previous = -np.inf
    for _ in range(EM_ITERATIONS):
        logp = -0.5 * ((x[:, None] - mu) ** 2 / var + np.log(2 * np.pi * var)) + np.log(w)
        top = logp.max(axis=1, keepdims=True)
        p = np.exp(logp - top)
        total = p.sum(axis=1, keepdims=True)
        loglik = float((np.log(total) + top).sum())
        r = p / total
        n = r.sum(axis=0) + 1e-12
        w, mu = n / n.sum(), (r * x[:, None]).sum(axis=0) / n
        var = np.maximum((r * (x[:, None] - mu) ** 2).sum(axis=0) / n, floor)
        if loglik - previous <= 1e-8 * abs(loglik):
            break
        previous = loglik
    return mu, var, w


def _classify(x: np.ndarray, mu: np.ndarray, var: np.ndarray, w: np.ndarray) -> np.ndarray:
    logp = -0.5 * ((x[:, None] - mu) ** 2 / var + np.log(var)) + np.log(w)
    return np.argmax(logp, axis=1)


def reference_tissues(
    image: np.ndarray,
    brain_mask: np.ndarray,
    lesion_mask: np.ndarray,
    zooms: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    region: DeepRegion | None = None,
) -> dict[str, np.ndarray]:
    """NAWM and GM proxies of a labelled case, for :func:`lesion_auc`.

    In the deep region (:func:`deep_region`), leaving out the lesions (dilated by one
    voxel: their partial-volume rim) and the CSF bins (:meth:`DeepRegion.csf_bins`), a
    2-class 1-D Gaussian mixture splits the rest; the class less enriched at the midline is
    white matter (deep WM lies lateral to the ventricles, deep GM beside them), the other
    grey matter. No intensity order is assumed, so the proxies hold when tissues change
    order.

    ``region``, when given, is :func:`deep_region` of the same image and mask (computed
    once for :func:`tissue_order` and this).

    Returns
    -------
    ``{"nawm": mask, "gm": mask}``, (X, Y, Z) bool each; both empty when too few voxels
    remain to split.
    """
    region = deep_region(image, brain_mask, zooms) if region is None else region
    lesion = _volume("lesion_mask", lesion_mask, region.mask.shape).astype(bool)
    near = ndimage.binary_dilation(lesion)[region.mask]
    keep = ~near & ~region.csf_bins()
    empty = {"nawm": np.zeros_like(region.mask), "gm": np.zeros_like(region.mask)}
    if keep.sum() < 2 * MIN_REFERENCE_VOXELS:
        return empty
    x = region.values[keep]
    step = max(1, int(np.ceil(x.size / EM_MAX_VOXELS)))
    label = _classify(x, *_em_1d(x[::step], 2))
    mid = region.midline[keep]
    shares = [mid[label == c].mean() if (label == c).any() else np.inf for c in (0, 1)]
    wm = int(np.argmin(shares))
    index = np.flatnonzero(region.mask.ravel())[keep]
    out = {}
    for name, chosen in (("nawm", label == wm), ("gm", label != wm)):
        mask = np.zeros(region.mask.size, dtype=bool)
        mask[index[chosen]] = True
        out[name] = mask.reshape(region.mask.shape)
    return out


def separability(
    image: np.ndarray,
    brain_mask: np.ndarray,
    lesion_mask: np.ndarray,
    zooms: Sequence[float] = (1.0, 1.0, 1.0),
    mapped: np.ndarray | None = None,
    *,
    region: DeepRegion | None = None,
) -> dict[str, float]:
    """Lesion separability of one labelled case, before and after an intensity map.

    Parameters
    ----------
    image : (X, Y, Z) intensities (the site's preprocessed image), RAS+
    brain_mask, lesion_mask : (X, Y, Z) bool; lesions outside the brain are left out
    zooms : voxel sizes (mm)
    mapped : (X, Y, Z) the same image through the site's intensity map, optional; its AUCs
        are read on the same voxels (the proxies come from ``image``). Without it the
        ``_mapped`` values equal the others (the identity map).
    region : :func:`deep_region` of ``image`` and ``brain_mask``, when already computed

    Returns
    -------
    dict
        ``lesion_auc_nawm``, ``lesion_auc_gm`` (:func:`lesion_auc` against the proxies of
        :func:`reference_tissues`) and ``lesion_auc_nawm_mapped``, ``lesion_auc_gm_mapped``;
        NaN where a set is empty. Scalars; the voxels stay at the site.
    """
    brain = _volume("brain_mask", brain_mask).astype(bool)
    lesion = _volume("lesion_mask", lesion_mask, brain.shape).astype(bool) & brain
    tissues = reference_tissues(image, brain, lesion, zooms, region=region)
    after = image if mapped is None else _volume("mapped", mapped, brain.shape)
    out = {}
    for name, ref in tissues.items():
        enough = ref.sum() >= MIN_REFERENCE_VOXELS
        out[f"lesion_auc_{name}"] = lesion_auc(image, lesion, ref) if enough else float("nan")
        out[f"lesion_auc_{name}_mapped"] = (
            lesion_auc(after, lesion, ref) if enough else float("nan")
        )
    return {k: out[k] for k in SEPARABILITY}


#: the keys of :func:`separability`, in the order its descriptor family lists them
SEPARABILITY = (
    "lesion_auc_nawm",
    "lesion_auc_gm",
    "lesion_auc_nawm_mapped",
    "lesion_auc_gm_mapped",
)
