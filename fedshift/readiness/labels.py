"""Label checks and statistics: values, emptiness, position in the brain, raters' agreement.

Labels are binary lesion masks (0 background, 1 lesion). Statistics stay at the site
(the readiness report); only the level and counts leave it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
from scipy import ndimage

from fedshift.findings import Finding, finding

#: a label with more than this fraction of its voxels outside the brain mask is wrong
MAX_OUTSIDE_FRACTION = 0.05
#: the smallest pairwise Dice between raters below which a case is flagged
MIN_RATER_DICE = 0.5
#: at most this many offending values are listed in a finding
_SHOWN_VALUES = 5


def label_value_findings(data: np.ndarray, file: str | None) -> list[Finding]:
    """``label_values`` when any finite voxel is not 0 or 1, else ``empty_label`` (warning)
    when no voxel is 1. NaN/inf voxels are left to the ``non_finite`` check."""
    values = data[np.isfinite(data)] if np.issubdtype(data.dtype, np.inexact) else data.ravel()
    zero, one = values == 0, values == 1
    bad = ~(zero | one)
    if bad.any():
        shown = np.unique(values[bad])
        listed = ", ".join(f"{v:g}" for v in shown[:_SHOWN_VALUES].astype(float))
        more = f" and {shown.size - _SHOWN_VALUES} more" if shown.size > _SHOWN_VALUES else ""
        return [
            finding(
                "label_values",
                f"{int(bad.sum()):,} voxels hold values other than 0 and 1: {listed}{more}",
                file,
            )
        ]
    if not one.any():
        return [finding("empty_label", "label has no foreground voxel (value 1)", file)]
    return []


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every true voxel of a 3D mask (None if empty)."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def outside_fraction(label: np.ndarray, mask: np.ndarray, step: int = 1) -> float:
    """Fraction of foreground voxels of ``label`` that fall outside ``mask``.

    Parameters
    ----------
    label : (X, Y, Z) bool, full resolution.
    mask : bool mask on the strided grid ``label[::step, ::step, ::step]``; voxel ``i``
        of the label is looked up at ``i // step``.
    """
    box = bounding_box(label)
    if box is None:
        return 0.0
    coords = np.nonzero(label[box])
    inside = mask[tuple((c + b.start) // step for c, b in zip(coords, box, strict=True))]
    return float(1.0 - inside.mean())


def outside_findings(
    fraction: float, file: str | None, limit: float = MAX_OUTSIDE_FRACTION
) -> list[Finding]:
    if fraction <= limit:
        return []
    return [
        finding(
            "label_outside_brain",
            f"{fraction:.0%} of label voxels lie outside the brain mask (limit {limit:.0%})",
            file,
        )
    ]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks; 1.0 when both are empty."""
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(a & b)) / total


def pairwise_dice(labels: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Dice of every pair of raters' masks, keyed ``"rater_a|rater_b"``."""
    masks = {name: np.asarray(mask) > 0 for name, mask in labels.items()}
    return {f"{a}|{b}": dice(masks[a], masks[b]) for a, b in combinations(sorted(masks), 2)}


def rater_summary(
    pairs: Mapping[str, float],
    raters: Sequence[str],
    file: str | None,
    min_dice: float = MIN_RATER_DICE,
) -> tuple[dict[str, object], list[Finding]]:
    """Mean and min pairwise Dice of a case, and ``rater_disagreement`` when min < ``min_dice``."""
    values = np.asarray(list(pairs.values()), dtype=float)
    summary: dict[str, object] = {
        "raters": list(raters),
        "mean_dice": float(values.mean()) if values.size else None,
        "min_dice": float(values.min()) if values.size else None,
        "pairs": dict(pairs),
    }
    found = []
    if values.size and values.min() < min_dice:
        worst = min(pairs, key=lambda k: pairs[k])
        found.append(
            finding(
                "rater_disagreement",
                f"raters {worst.replace('|', ' and ')} overlap with Dice {values.min():.2f} "
                f"(< {min_dice:g}); mean pairwise Dice {values.mean():.2f}",
                file,
            )
        )
    return summary, found


def label_stats(
    label: np.ndarray,
    zooms: Sequence[float],
    image: np.ndarray | None = None,
    wm: np.ndarray | None = None,
    step: int = 1,
) -> dict[str, float | int | None]:
    """Lesion count (26-connected components), volumes (mL) and lesion/NAWM contrast.

    Parameters
    ----------
    label : (X, Y, Z) bool lesion mask, full resolution.
    zooms : voxel sizes in mm.
    image, wm : intensities and white-matter mask on the strided grid ``[::step]`` (from
        the IQM segmentation); ``lesion_to_nawm`` is the median lesion intensity over the
        median of normal-appearing white matter (WM without lesion), ``None`` without them.
    """
    voxel_ml = float(np.prod(np.abs(np.asarray(zooms[:3], dtype=float)))) / 1000.0
    box = bounding_box(label)
    cropped = label[box] if box is not None else label[:0, :0, :0]
    components, n = ndimage.label(cropped, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(components.ravel())[1:] * voxel_ml if n else np.zeros(0)
    stats: dict[str, float | int | None] = {
        "n_lesions": int(n),
        "lesion_volume_ml": float(sizes.sum()),
        "mean_lesion_ml": float(sizes.mean()) if n else None,
        "max_lesion_ml": float(sizes.max()) if n else None,
        "lesion_to_nawm": None,
    }
    if image is not None and wm is not None and n:
        lesion = label[::step, ::step, ::step]
        nawm = wm & ~lesion
        if lesion.any() and nawm.any():
            reference = float(np.median(image[nawm]))
            if reference > 0:
                stats["lesion_to_nawm"] = float(np.median(image[lesion])) / reference
    return stats
