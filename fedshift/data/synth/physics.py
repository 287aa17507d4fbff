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


@dataclass(frozen=True)
class Relaxation:
    """One tissue's relaxation times (ms) and proton density (relative, free water = 1)."""

    t1_ms: float
    t2_ms: float
    pd: float


#: Relaxation per field strength (T) and tissue. Sources, value by value:
#: - WM, GM T1/T2 at 1.5 and 3 T: Stanisz et al. 2005 MRM 54:507, Table 1 (WM 884/72 and
#:   1084/69 ms, GM 1124/95 and 1820/99 ms at 1.5/3 T). Those are in vitro (bovine tissue,
#:   37 C); in vivo GM T1 at 3 T is often reported lower (Wansapura et al. 1999 JMRI 9:531:
#:   WM 832 ms, GM 1331 ms; the spread across methods: Bojorquez et al. 2017 MRI 35:69). We
#:   keep one source for both fields so that T1 lengthens with field as it does in vivo.
#: - CSF: T1 4200 ms, T2 2000 ms at both fields, rounded literature values (free water,
#:   nearly field-independent; reported T1 4000-4500 ms, T2 about 2000 ms). T1 4200 ms makes
#:   the standard protocols' TI null CSF as clinical protocols do (see STANDARD_PROTOCOLS).
#: - PD: WM 0.69, GM 0.80, CSF 1.0: rounded water contents, as in Neeb et al. 2006
#:   NeuroImage 31:1156 (quantitative water content mapping).
#: - MS lesion: T1 = 1.45 x WM's (1280 / 1570 ms), T2 120 ms, PD 0.78: rounded values
#:   chosen inside the ranges published MS relaxometry reports for chronic T2-hyperintense
#:   lesions against normal-appearing WM (T1 longer by roughly 1.3-1.9x, T2 of 100-200 ms,
#:   water content between WM's and GM's; e.g. Larsson et al. 1989 MRM 11:337). These are
#:   not one paper's table values and were not rechecked against the papers (no network
#:   access when written): treat them as plausible, not measured.
RELAXATION: dict[float, dict[str, Relaxation]] = {
    1.5: {
        "gm": Relaxation(1124.0, 95.0, 0.80),
        "wm": Relaxation(884.0, 72.0, 0.69),
        "csf": Relaxation(4200.0, 2000.0, 1.0),
        "lesion": Relaxation(1280.0, 120.0, 0.78),
    },
    3.0: {
        "gm": Relaxation(1820.0, 99.0, 0.80),
        "wm": Relaxation(1084.0, 69.0, 0.69),
        "csf": Relaxation(4200.0, 2000.0, 1.0),
        "lesion": Relaxation(1570.0, 120.0, 0.78),
    },
}
FIELDS_T = tuple(RELAXATION)


@dataclass(frozen=True)
class Protocol:
    """An inversion recovery protocol: field strength (T) and TR, TE, TI (ms)."""

    field_t: float
    tr_ms: float
    te_ms: float
    ti_ms: float


#: What ``tr_ms = te_ms = ti_ms = 0`` means at each field:
#: - 3 T: a 3D FLAIR (SPACE/CUBE/VISTA-like), TR 5000 ms, TI 1800 ms. Its TE is the
#:   "equivalent" TE of a variable-flip-angle echo train (about 140 ms, our rounded
#:   choice): the nominal effective TE (~390 ms) overstates its T2 weighting (Busse et al.
#:   2008 MRM 60:640; Mugler 2014 JMRI 39:745).
#: - 1.5 T: a 2D FLAIR, TR 9000 ms, TE 110 ms, TI 2500 ms (typical clinical values).
#: Both TIs sit at CSF's null, TI = T1 ln(2 / (1 + exp(-TR/T1))): 1796 and 2446 ms.
#: The 3 T protocol is also the reference of :meth:`SiteSpec.planted_shifts`.
STANDARD_PROTOCOLS: dict[float, Protocol] = {
    3.0: Protocol(3.0, tr_ms=5000.0, te_ms=140.0, ti_ms=1800.0),
    1.5: Protocol(1.5, tr_ms=9000.0, te_ms=110.0, ti_ms=2500.0),
}
REFERENCE_PROTOCOL = STANDARD_PROTOCOLS[3.0]


def resolve_protocol(field_t: float, tr_ms: float, te_ms: float, ti_ms: float) -> Protocol | None:
    """A site's protocol: None for ``field_t`` 0 (the legacy table), the field's standard
    protocol when TR, TE and TI are all 0, else the given one (checked by
    :meth:`SynthConfig.validate`, not here)."""
    if field_t == 0:
        return None
    if tr_ms == te_ms == ti_ms == 0:
        return STANDARD_PROTOCOLS[float(field_t)]
    return Protocol(float(field_t), float(tr_ms), float(te_ms), float(ti_ms))


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
