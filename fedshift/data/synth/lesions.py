"""White-matter lesions: periventricular ovoids and deep white-matter blobs.

Lesions are placed in template (MNI) space, so they move with the subject's anatomy, and
drawn as soft ellipsoids on the output grid (partial volume at the border).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fedshift.data.synth.anatomy import Template, ventricle_distance_mm


@dataclass(frozen=True)
class Lesion:
    """An ellipsoid lesion: centre (MNI mm), radii (mm) and rotation (3x3)."""

    center_mm: tuple[float, float, float]
    radii_mm: tuple[float, float, float]
    rotation: tuple[tuple[float, ...], ...]
    periventricular: bool

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("rotation")
        return d


_CANDIDATES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _candidates(template: Template) -> tuple[np.ndarray, np.ndarray]:
    """MNI mm of white-matter voxels near (periventricular) and far from the ventricles."""
    if id(template) in _CANDIDATES:
        return _CANDIDATES[id(template)]
    wm = template.maps[1] > 0.8
    dist = ventricle_distance_mm(template)
    near = np.argwhere(wm & (dist > 1.5) & (dist <= 9.0))
    deep = np.argwhere(wm & (dist > 12.0))
    to_mm = lambda ijk: ijk @ template.affine[:3, :3].T + template.affine[:3, 3]  # noqa: E731
    result = to_mm(near).astype(np.float32), to_mm(deep).astype(np.float32)
    _CANDIDATES[id(template)] = result
    return result


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def sample_lesions(
    template: Template,
    rng: np.random.Generator,
    *,
    mean_count: float,
    median_radius_mm: float,
    periventricular_fraction: float,
) -> list[Lesion]:
    """Draw a Poisson number of lesions with log-normal radii (clipped to 1.5-15 mm)."""
    near, deep = _candidates(template)
    count = int(rng.poisson(mean_count))
    lesions = []
    for _ in range(count):
        periv = bool(rng.random() < periventricular_fraction)
        pool = near if periv else deep
        center = pool[rng.integers(len(pool))]
        r = float(np.clip(rng.lognormal(np.log(median_radius_mm), 0.35), 1.5, 15.0))
        elong = (
            1.0,
            rng.uniform(0.7, 1.1),
            rng.uniform(1.3, 2.0) if periv else rng.uniform(0.8, 1.3),
        )
        radii = tuple(float(r * e) for e in elong)
        rot = _random_rotation(rng)
        lesions.append(
            Lesion(tuple(float(c) for c in center), radii, tuple(map(tuple, rot.tolist())), periv)
        )
    return lesions


def draw_lesions(points_mm: np.ndarray, lesions: list[Lesion], voxel_mm: float) -> np.ndarray:
    """Lesion fraction (X, Y, Z) in [0, 1]: union of soft ellipsoids.

    Parameters
    ----------
    points_mm : (3, X, Y, Z) template coordinates sampled by each output voxel.
    lesions : the lesions, in template mm.
    voxel_mm : output voxel size; the soft border is one voxel wide.
    """
    shape = points_mm.shape[1:]
    frac = np.zeros(shape, dtype=np.float32)
    flat = points_mm.reshape(3, -1)
    for lesion in lesions:
        c = np.asarray(lesion.center_mm, dtype=np.float32)[:, None]
        radii = np.asarray(lesion.radii_mm, dtype=np.float32)
        reach = radii.max() + 2 * voxel_mm
        near = np.all(np.abs(flat - c) <= reach, axis=0)
        if not near.any():
            continue
        local = np.asarray(lesion.rotation, dtype=np.float32).T @ (flat[:, near] - c)
        d = np.sqrt(((local / radii[:, None]) ** 2).sum(axis=0))  # 1 on the surface
        soft = np.clip((1.0 - d) * radii.min() / voxel_mm + 0.5, 0.0, 1.0)
        view = frac.reshape(-1)
        view[near] = np.maximum(view[near], soft)
    return frac
