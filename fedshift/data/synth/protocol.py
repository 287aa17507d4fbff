"""MR protocols and relaxation times: the numbers behind the physics contrast knob.

Plain data (no numpy, no image generation), so that the scenario's settings
(:mod:`fedshift.data.synth.config`) can resolve and validate a site's protocol without
importing the generator; :mod:`fedshift.data.synth.physics` turns them into tissue means.
"""

from __future__ import annotations

from dataclasses import dataclass


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
