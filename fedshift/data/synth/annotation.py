"""Annotation: how a site's raters turn the true lesion mask into the label they write."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fedshift.data.synth.config import SiteSpec

_CROSS = ndimage.generate_binary_structure(3, 1)


def rater_style(truth: np.ndarray, spec: SiteSpec, voxel_mm3: float) -> np.ndarray:
    """The site's annotation protocol: dilate/erode by ``rater_dilation`` voxels, then drop
    lesions smaller than ``missed_below_mm3``. Returns uint8 {0, 1}."""
    label = truth.astype(bool)
    if spec.rater_dilation > 0:
        label = ndimage.binary_dilation(label, _CROSS, iterations=spec.rater_dilation)
    elif spec.rater_dilation < 0:
        label = ndimage.binary_erosion(label, _CROSS, iterations=-spec.rater_dilation)
    if spec.missed_below_mm3 > 0:
        components, n = ndimage.label(label)
        if n:
            sizes = np.bincount(components.ravel()) * voxel_mm3
            keep = sizes >= spec.missed_below_mm3
            keep[0] = False
            label = keep[components]
    return label.astype(np.uint8)


def extra_rater(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another rater of the same case: misses ~15% of lesions and draws borders differently
    (the mask is smoothed and re-thresholded with a random smooth offset)."""
    components, n = ndimage.label(label)
    keep = np.concatenate([[False], rng.random(n) >= 0.15])
    kept = keep[components]
    soft = ndimage.gaussian_filter(kept.astype(np.float32), 0.8)
    jitter = ndimage.gaussian_filter(rng.normal(size=label.shape).astype(np.float32), 2.0)
    jitter *= 0.15 / max(float(jitter.std()), 1e-6)
    return ((soft + jitter) > 0.5).astype(np.uint8)
