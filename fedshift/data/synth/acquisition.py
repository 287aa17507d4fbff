"""From anatomy to a stored FLAIR-like image: contrast, scanner effects, artefacts, noise.

Order of the chain (each step a pure function of its inputs and a seeded generator):
tissue contrast -> contrast curve (gamma) -> through-plane blur / thick slices -> bias
field -> quality artefacts (k-space) -> Rician noise -> intensity scale/offset -> int16.
Intensities are relative to white matter (WM = 1) until the final scaling. The tissue
contrast is the fixed :data:`FLAIR` table, or a site's protocol's (:mod:`.physics`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from fedshift.data.synth.config import SiteSpec

#: FLAIR-like mean intensity per tissue (WM = 1): CSF dark, GM > WM, lesions bright
FLAIR = {"gm": 1.3, "wm": 1.0, "csf": 0.15, "skull": 0.05, "scalp": 1.1}
LESION = 1.9
#: stored value of WM intensity 1.0 (before the site's scale)
STORED_WM = 500.0


def _smooth_field(shape: tuple[int, ...], coarse: int, rng: np.random.Generator) -> np.ndarray:
    grid = rng.normal(size=(coarse, coarse, coarse)).astype(np.float32)
    return ndimage.zoom(grid, [s / coarse for s in shape], order=3, mode="nearest")


def flair_contrast(
    maps: np.ndarray,
    lesion: np.ndarray,
    rng: np.random.Generator,
    tissues: Mapping[str, float] = FLAIR,
    lesion_mean: float = LESION,
) -> np.ndarray:
    """Mix tissue fractions (5, X, Y, Z) into FLAIR intensities, with a mild tissue texture
    and bright lesions (lesion fraction (X, Y, Z) replaces the tissue underneath).
    ``tissues`` (keys and order of :data:`FLAIR`) and ``lesion_mean`` are the means
    relative to WM: the legacy table, or a protocol's (:func:`physics.flair_means`); the
    random draws are the same either way."""
    means = np.asarray(list(tissues.values()), dtype=np.float32)
    image = np.tensordot(means, maps, axes=1)
    texture = 1.0 + 0.04 * _smooth_field(image.shape, 12, rng)
    image *= texture
    lesion_level = lesion_mean * float(rng.uniform(0.92, 1.08))
    return (image * (1.0 - lesion) + lesion_level * lesion).astype(np.float32)


def through_plane(
    image: np.ndarray, voxel_mm: float, blur_mm: float, thickness_mm: float, gap_mm: float = 0.0
) -> np.ndarray:
    """Blur along z (Gaussian, FWHM ``blur_mm``) and/or acquire thick slices along z
    (boxcar of ``thickness_mm``, one slice every thickness, linearly interpolated back).

    With ``gap_mm`` > 0, a 2D acquisition's slice profile: slices of ``thickness_mm``
    (boxcar, at least one voxel) every ``thickness_mm + gap_mm``, so the tissue in the gaps
    is never measured; linearly interpolated back between slice centres. Lengths in mm,
    image (X, Y, Z) with z through-plane.
    """
    if blur_mm > 0:
        image = ndimage.gaussian_filter1d(image, blur_mm / 2.3548 / voxel_mm, axis=2)
    if gap_mm > 0:
        return _gapped_slices(image, voxel_mm, thickness_mm, gap_mm)
    step = int(round(thickness_mm / voxel_mm))
    if step > 1:
        slab = ndimage.uniform_filter1d(image, size=step, axis=2, mode="nearest")
        image = _interpolate_slices(slab[:, :, ::step], image.shape[2], step)
    return image.astype(np.float32)


def _gapped_slices(
    image: np.ndarray, voxel_mm: float, thickness_mm: float, gap_mm: float
) -> np.ndarray:
    size = max(int(round(thickness_mm / voxel_mm)), 1)
    spacing = (thickness_mm + gap_mm) / voxel_mm  # voxels between slice centres
    slab = ndimage.uniform_filter1d(image, size=size, axis=2, mode="nearest")
    centres = np.rint(np.arange(0.0, image.shape[2], spacing)).astype(int)
    centres = np.clip(centres, 0, image.shape[2] - 1)
    return _interpolate_slices(slab[:, :, centres], image.shape[2], spacing).astype(np.float32)


def _interpolate_slices(coarse: np.ndarray, n: int, spacing: float) -> np.ndarray:
    """Back to ``n`` planes from slices every ``spacing`` planes (linear along z)."""
    pos = np.arange(n, dtype=np.float32) / spacing
    lo = np.clip(np.floor(pos).astype(int), 0, coarse.shape[2] - 1)
    hi = np.clip(lo + 1, 0, coarse.shape[2] - 1)
    w = (pos - np.floor(pos))[None, None, :]
    return (1 - w) * coarse[:, :, lo] + w * coarse[:, :, hi]


def bias_field(shape: tuple[int, ...], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field exp(f) whose log has peak-to-peak ``strength``."""
    f = _smooth_field(shape, 4, rng)
    f = (f - f.min()) / max(float(np.ptp(f)), 1e-6) - 0.5
    return np.exp(strength * f).astype(np.float32)


def ghosting(
    image: np.ndarray, strength: float, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """Motion ghosts: every n-th k-space line along the phase-encode axis (y) is scaled by
    ``1 - strength``, which replicates the head at FOV/n offsets (as TorchIO's RandomGhosting)."""
    period = int(rng.integers(2, 5))
    k = np.fft.fftshift(np.fft.fftn(image))
    centre = image.shape[1] // 2
    lines = np.arange(image.shape[1]) % period == 0
    lines[centre] = False
    k[:, lines, :] *= 1.0 - strength
    out = np.abs(np.fft.ifftn(np.fft.ifftshift(k)))
    return out.astype(np.float32), {"artifact": "ghosting", "period": period, "strength": strength}


def spike(image: np.ndarray, strength: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A k-space spike away from the centre: stripes across the whole field of view."""
    k = np.fft.fftshift(np.fft.fftn(image))
    centre = np.asarray(image.shape) // 2
    offset = rng.integers(3, np.maximum(np.asarray(image.shape) // 3, 4)) * rng.choice([-1, 1], 3)
    pos = tuple(int(c + o) for c, o in zip(centre, offset, strict=True))
    k[pos] += strength * np.abs(k).max() * np.exp(1j * rng.uniform(0, 2 * np.pi))
    out = np.abs(np.fft.ifftn(np.fft.ifftshift(k)))
    return out.astype(np.float32), {"artifact": "spike", "kspace_offset": [int(o) for o in offset]}


def rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of a complex signal with Gaussian noise of std ``sigma`` per channel."""
    if sigma <= 0:
        return image
    real = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.sqrt(real**2 + imag**2)


def acquire(
    image: np.ndarray,
    spec: SiteSpec,
    *,
    voxel_mm: float,
    base_noise: float,
    artifact: str | None,
    ghosting_strength: float,
    spike_strength: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict]:
    """Apply a site's scanner to an anatomical FLAIR image; returns int16 data and what was
    planted (for truth.json)."""
    planted: dict = {}
    image = np.power(np.maximum(image, 0.0), spec.gamma, dtype=np.float32)
    image = through_plane(image, voxel_mm, spec.blur_mm, spec.slice_thickness_mm, spec.slice_gap_mm)
    if spec.bias_field > 0:
        image = image * bias_field(image.shape, spec.bias_field, rng)
    if artifact == "ghosting":
        image, planted = ghosting(image, ghosting_strength, rng)
    elif artifact == "spike":
        image, planted = spike(image, spike_strength, rng)
    image = rician_noise(image, base_noise + spec.noise, rng)
    stored = spec.scale * (image + spec.offset) * STORED_WM
    return np.clip(np.rint(stored), -32768, 32767).astype(np.int16), planted
