"""One case's shift descriptors as the site measures them from its files.

The descriptors are those of :mod:`fedshift.shift.case_descriptors` and
:mod:`fedshift.shift.tissue`. Acquisition descriptors are read from the raw image file,
before any correction, and kept beside the preprocessing cache (an image does not change
between statistics rounds); the tissue order from the preprocessed image in the brain
mask (a rank: the preprocessing does not change it); population and annotation
descriptors come from the global model's predicted lesions and the site's label, the
lesion separability from the label and the preprocessed image before and after the site's
intensity map. They stay at the site: only their kernel summaries enter secure
aggregation (:mod:`fedshift.site.stats`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from fedshift.data.masks import head_mask
from fedshift.data.nifti import read_volume
from fedshift.model.config import PreprocessConfig
from fedshift.model.preprocess import PreprocessCache, n4_correct
from fedshift.shift import case_descriptors as cases
from fedshift.shift import tissue


def appearance_of(
    item: dict[str, Any],
    image_brain: np.ndarray,
    zooms: tuple[float, ...],
    preprocess: PreprocessConfig,
) -> dict[str, float]:
    """Acquisition descriptors of one case's raw image (``item["image"]``, read again:
    acquisition is measured before any correction) within the preprocessing brain mask.
    The contrast is read after N4 with ``preprocess``'s N4 settings, whether or not the
    preprocessing itself applies N4 (``preprocess.n4``)."""
    raw = read_volume(item["image"]).as_float32()
    if raw.shape != image_brain.shape:
        raise ValueError(
            f"case {item.get('case')!r}: image shape {raw.shape} differs from its "
            f"preprocessed mask {image_brain.shape}"
        )
    head = head_mask(raw)
    corrected = n4_correct(raw, head, zooms, preprocess)
    return cases.appearance(raw, corrected, image_brain, head, zooms)


def cached_appearance(
    item: dict[str, Any],
    image_brain: np.ndarray,
    zooms: tuple[float, ...],
    cache: PreprocessCache,
) -> dict[str, float]:
    """:func:`appearance_of`, kept beside the preprocessing cache (an image does not
    change between statistics rounds; its key covers its content and the preprocessing
    settings that made the brain mask)."""
    name = f"{cache.key(item['image'])}-v{cases.APPEARANCE_VERSION}.json"
    path = cache.cache_dir / "descriptors" / name
    if path.is_file():
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    values = appearance_of(item, image_brain, zooms, cache.cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(values))
    tmp.replace(path)
    return values


def separability_of(
    image: np.ndarray,
    image_brain: np.ndarray,
    label: np.ndarray,
    zooms: tuple[float, ...],
    mapped: np.ndarray | None = None,
    region: tissue.DeepRegion | None = None,
) -> dict[str, float] | None:
    """Lesion separability of one labelled case (:func:`fedshift.shift.tissue.separability`)
    before and after the site's intensity map (``mapped``; None: no map yet, the identity);
    None when a case has no lesion or too little tissue to compare with. ``region``: the
    case's :func:`~fedshift.shift.tissue.deep_region`, when already computed."""
    if not np.any(label & image_brain):
        return None
    values = tissue.separability(image, image_brain, label, zooms, mapped=mapped, region=region)
    return values if all(np.isfinite(v) for v in values.values()) else None


def case_descriptors(
    item: dict[str, Any],
    image: np.ndarray,
    image_brain: np.ndarray,
    predicted: np.ndarray,
    label: np.ndarray | None,
    zooms: tuple[float, ...],
    cache: PreprocessCache,
    mapped: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Shift descriptors of one case, per family (annotation and separability only with a
    label, separability only when it has lesions).

    ``image`` (X, Y, Z) is the preprocessed image and ``image_brain`` its brain mask;
    acquisition descriptors come from the raw image (:func:`cached_appearance`: computed
    once per image and settings), the tissue order from ``image``
    (:func:`fedshift.shift.tissue.tissue_order`); ``mapped`` is ``image`` through the
    site's intensity map, when it has one.
    """
    region = tissue.deep_region(image, image_brain, zooms)
    out = {
        "acquisition": cached_appearance(item, image_brain, zooms, cache),
        "tissue": {"csf_rank": tissue.csf_order(region)["csf_rank"]},
        "population": cases.population(predicted, zooms),
    }
    if label is not None:
        out["annotation"] = cases.annotation(label, predicted, zooms)
        separable = separability_of(image, image_brain, label, zooms, mapped, region)
        if separable is not None:
            out["separability"] = separable
    return out
