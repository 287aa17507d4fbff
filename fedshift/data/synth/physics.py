"""FLAIR tissue contrast from the inversion recovery signal equation (an optional site knob).

The legacy generator uses one fixed table of relative tissue intensities
(:data:`fedshift.data.synth.acquisition.FLAIR`). A site with ``field_t`` 1.5 or 3.0 derives
the brain's tissue means instead from published relaxation times and its protocol
(TR, TE, TI), so two sites can differ in ways no monotone intensity map undoes: a short TI
leaves CSF brighter than white matter and puts lesions below grey matter.

Magnitude inversion recovery, one echo, full inversion, TE << TR (e.g. Bernstein, King &
Zhou 2004, *Handbook of MRI Pulse Sequences*, section 14.2)::

    S = PD * |1 - 2 exp(-TI/T1) + exp(-TR/T1)| * exp(-TE/T2)

normalised to white matter (WM = 1), as the legacy table. Also here: CSF inflow spots in
the lateral ventricles (a 2D FLAIR artefact, Kallmes et al. 2001 Radiology 221:251).
Everything is a synthetic image property: nothing here leaves a hospital.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fedshift.data.synth.acquisition import FLAIR
from fedshift.data.synth.anatomy import Template
from fedshift.data.synth.protocol import (
    FIELDS_T,
    REFERENCE_PROTOCOL,
    RELAXATION,
    STANDARD_PROTOCOLS,
    Protocol,
    Relaxation,
    resolve_protocol,
)

__all__ = [
    "FIELDS_T",
    "REFERENCE_PROTOCOL",
    "RELAXATION",
    "STANDARD_PROTOCOLS",
    "Protocol",
    "Relaxation",
    "TissueContrast",
    "flair_means",
    "inflow_spots",
    "ir_signal",
    "resolve_protocol",
    "ventricle_fraction",
]


def ir_signal(tissue: Relaxation, protocol: Protocol) -> float:
    """Magnitude inversion recovery signal of one tissue (arbitrary units, see module)."""
    t1, tr, ti = tissue.t1_ms, protocol.tr_ms, protocol.ti_ms
    recovery = abs(1.0 - 2.0 * np.exp(-ti / t1) + np.exp(-tr / t1))
    return float(tissue.pd * recovery * np.exp(-protocol.te_ms / tissue.t2_ms))


@dataclass(frozen=True)
class TissueContrast:
    """Mean intensities relative to WM (WM = 1).

    tissues : one value per tissue, keys and order of ``acquisition.FLAIR``.
    lesion : lesion level (``acquisition.LESION``'s counterpart).
    fresh_csf : CSF that missed the inversion (inflowing spins): PD exp(-TE/T2), relative
        to WM; the level of :func:`inflow_spots`.
    """

    tissues: dict[str, float]
    lesion: float
    fresh_csf: float


def flair_means(protocol: Protocol) -> TissueContrast:
    """Tissue means of ``protocol`` from :data:`RELAXATION`, normalised to WM = 1.

    Skull and scalp keep the legacy values (``acquisition.FLAIR``): cortical bone has
    almost no signal under any protocol, and the scalp (fat, muscle) lies outside the
    brain, where the shift of interest is not; keeping them keeps the head outline, which
    masks and intensity normalisation lean on, as in the legacy images.
    """
    table = RELAXATION[protocol.field_t]
    wm = ir_signal(table["wm"], protocol)
    tissues = {
        name: ir_signal(table[name], protocol) / wm if name in table else value
        for name, value in FLAIR.items()
    }
    csf = table["csf"]
    fresh = csf.pd * float(np.exp(-protocol.te_ms / csf.t2_ms)) / wm
    return TissueContrast(tissues, ir_signal(table["lesion"], protocol) / wm, fresh)


def ventricle_fraction(template: Template, points_mm: np.ndarray) -> np.ndarray:
    """(X, Y, Z) fraction in [0, 1] of the template's lateral ventricles at each output voxel.

    The subject's own ventricles: ``points_mm`` (3, X, Y, Z) are the template (MNI) mm each
    output voxel samples (:attr:`anatomy.Subject.points_mm`), so the mask follows the
    subject's scale, ventricle enlargement and deformation (linear interpolation).
    """
    inv = np.linalg.inv(template.affine)
    flat = points_mm.reshape(3, -1)
    vox = inv[:3, :3] @ flat + inv[:3, 3:4]
    mask = template.ventricles.astype(np.float32)
    frac = ndimage.map_coordinates(mask, vox, order=1, mode="constant", cval=0.0)
    return frac.reshape(points_mm.shape[1:]).astype(np.float32)


def inflow_spots(
    ventricular_csf: np.ndarray,
    strength: float,
    contrast: TissueContrast,
    voxel_mm: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
    """CSF inflow hyperintensities: intensity to add (X, Y, Z) and the number of spots.

    CSF flowing into a 2D FLAIR slice from outside the inversion slab was never inverted
    and is not nulled (Kallmes et al. 2001 Radiology 221:251). Here 1-6 spots (1 + Poisson
    of mean 2) of Gaussian profile (sigma 2-4 mm) in the lateral ventricles; at a spot's
    centre a share ``strength`` of the CSF is fresh (level ``contrast.fresh_csf``).

    Parameters
    ----------
    ventricular_csf : (X, Y, Z) fraction of ventricular CSF per voxel, e.g. the minimum of
        :func:`ventricle_fraction` and the CSF map: the spots never leave it.
    strength : fresh CSF share in [0, 1] at a spot's centre. Fresh CSF is 16x WM at the
        3 T standard protocol and 7x at the 1.5 T one, so 0.1 gives spots about as bright
        as lesions at 3 T and a little below WM at 1.5 T.
    """
    candidates = np.argwhere(ventricular_csf > 0.5)
    if len(candidates) == 0 or strength <= 0:
        return np.zeros(ventricular_csf.shape, np.float32), 0
    count = 1 + min(int(rng.poisson(2.0)), 5)
    grid = np.indices(ventricular_csf.shape, dtype=np.float32) * voxel_mm
    profile = np.zeros(ventricular_csf.shape, np.float32)
    for _ in range(count):
        centre = candidates[rng.integers(len(candidates))].astype(np.float32) * voxel_mm
        sigma = float(rng.uniform(2.0, 4.0))
        d2 = ((grid - centre[:, None, None, None]) ** 2).sum(axis=0)
        profile = np.maximum(profile, np.exp(-d2 / (2 * sigma**2)))
    excess = contrast.fresh_csf - contrast.tissues["csf"]
    return (strength * excess * profile * ventricular_csf).astype(np.float32), count
