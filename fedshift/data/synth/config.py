"""Settings of the synthetic federation: one :class:`SynthConfig`, one :class:`SiteSpec` per site.

Every per-site knob is off by default (its neutral value), so a scenario file names only
the shifts it plants. Units: mm for lengths, mm^3 for volumes; intensities are relative to
the mean white-matter intensity of the unshifted scanner (1.0 = WM).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedshift.data.synth.protocol import FIELDS_T, REFERENCE_PROTOCOL, Protocol, resolve_protocol
from fedshift.errors import ConfigError


@dataclass
class SiteSpec:
    """One synthetic hospital. Defaults = no shift."""

    labelled: bool = True  # False: a target site, labels written only under labelsTs
    n_train: int | None = None  # None: the scenario's n_train
    n_test: int | None = None
    # population shift: P(anatomy)
    lesion_load: float = 1.0  # multiplies the mean lesion count
    lesion_size: float = 1.0  # multiplies lesion radii
    # acquisition shift: P(image | anatomy)
    gamma: float = 1.0  # contrast curve I -> I**gamma (on WM-normalised intensities)
    bias_field: float = 0.0  # peak-to-peak log-amplitude of a smooth multiplicative field
    noise: float = 0.0  # extra Rician noise std, relative to WM
    blur_mm: float = 0.0  # through-plane (z) Gaussian blur, FWHM in mm
    slice_thickness_mm: float = 0.0  # > voxel size: thick slices, interpolated back
    scale: float = 1.0  # intensity scale of the stored values
    offset: float = 0.0  # intensity offset, relative to WM
    # MR physics (physics.py): tissue contrast from the inversion recovery signal equation
    field_t: float = 0.0  # 0: the fixed contrast table; 1.5 or 3.0 (T): physics
    tr_ms: float = 0.0  # TR, TE, TI all 0: the field's standard protocol
    te_ms: float = 0.0
    ti_ms: float = 0.0
    csf_inflow: float = 0.0  # [0, 1] fresh-CSF share at the centre of ventricular spots
    slice_gap_mm: float = 0.0  # gap between slices of slice_thickness_mm (2D acquisition)
    # annotation shift: P(label | anatomy)
    rater_dilation: int = 0  # voxels; negative erodes
    missed_below_mm3: float = 0.0  # lesions smaller than this are not annotated
    n_raters: int = 1  # > 1 writes extra raters under labelsTr_raters/
    # quality problems, on a fraction of this site's training cases
    ghosting_fraction: float = 0.0
    spike_fraction: float = 0.0

    def protocol(self) -> Protocol | None:
        """The site's FLAIR protocol (None: the legacy contrast table, ``field_t`` 0)."""
        return resolve_protocol(self.field_t, self.tr_ms, self.te_ms, self.ti_ms)

    def planted_shifts(self) -> list[str]:
        """The kinds of shift this site's settings plant, in the order acquisition,
        population, annotation. Quality problems (ghosting, spikes) are per-case artefacts,
        not a shift; extra raters leave the site's own labels unchanged.

        Contrast is compared with a fixed reference, as every other knob is with its
        neutral value: the legacy table for ``field_t`` 0, the standard 3 T protocol
        (``protocol.REFERENCE_PROTOCOL``) for a physics site. So physics sites at the 3 T
        standard protocol are unshifted among themselves, any other protocol (1.5 T, or
        other TR/TE/TI) is an acquisition shift, and so are CSF inflow and a slice gap.
        A federation mixing legacy sites with physics sites at the 3 T standard protocol
        plants a contrast difference this per-site rule does not see: avoid that mix.
        """
        protocol = self.protocol()
        acquisition = (
            self.gamma != 1.0
            or self.bias_field > 0
            or self.noise > 0
            or self.blur_mm > 0
            or self.slice_thickness_mm > 0
            or self.scale != 1.0
            or self.offset != 0.0
            or (protocol is not None and protocol != REFERENCE_PROTOCOL)
            or self.csf_inflow > 0
            or self.slice_gap_mm > 0
        )
        population = self.lesion_load != 1.0 or self.lesion_size != 1.0
        annotation = self.rater_dilation != 0 or self.missed_below_mm3 > 0
        kinds = zip(
            ("acquisition", "population", "annotation"),
            (acquisition, population, annotation),
            strict=True,
        )
        return [name for name, planted in kinds if planted]


@dataclass
class SynthConfig:
    """A whole synthetic federation."""

    name: str = "default"
    seed: int = 0
    voxel_mm: float = 3.0  # 3 mm: CPU-friendly (~60^3); 1 mm for GPU work
    n_train: int = 10
    n_test: int = 4
    base_noise: float = 0.03  # scanner noise every site has, relative to WM
    lesion_count: float = 10.0  # mean lesions per case (Poisson)
    lesion_radius_mm: float = 4.0  # median lesion radius (log-normal)
    periventricular_fraction: float = 0.6
    deformation_mm: float = 3.0  # std of the smooth random displacement
    scale_sd: float = 0.04  # std of the global head scale
    ventricle_sd: float = 0.25  # std of the log ventricle enlargement
    ghosting_strength: float = 0.5  # k-space line intensity of motion ghosts
    spike_strength: float = 0.3  # k-space spike height relative to the k-space maximum
    calibration_cases: int = 5  # shared cases every labelled site's raters annotate; 0: none
    sites: dict[str, SiteSpec] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.sites:
            raise ConfigError("sites: a scenario needs at least one site")
        if not 0.5 <= self.voxel_mm <= 8.0:
            raise ConfigError(f"voxel_mm must be within [0.5, 8] mm, got {self.voxel_mm}")
        if self.n_train < 0 or self.n_test < 0:
            raise ConfigError(f"n_train/n_test must be >= 0, got {self.n_train}/{self.n_test}")
        if self.calibration_cases < 0:
            raise ConfigError(f"calibration_cases must be >= 0, got {self.calibration_cases}")
        for name, spec in self.sites.items():
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(f"site name {name!r} must be letters, digits, '-' or '_'")
            for knob in ("ghosting_fraction", "spike_fraction"):
                value = getattr(spec, knob)
                if not 0.0 <= value <= 1.0:
                    raise ConfigError(f"sites.{name}.{knob} must be in [0, 1], got {value}")
            if spec.gamma <= 0 or spec.scale <= 0:
                raise ConfigError(f"sites.{name}: gamma and scale must be > 0")
            if spec.n_raters < 1:
                raise ConfigError(f"sites.{name}.n_raters must be >= 1, got {spec.n_raters}")
            if spec.lesion_load < 0 or spec.lesion_size <= 0:
                raise ConfigError(f"sites.{name}: lesion_load >= 0 and lesion_size > 0 required")
            _validate_physics(name, spec)

    def site_cases(self, name: str) -> tuple[int, int]:
        spec = self.sites[name]
        n_train = self.n_train if spec.n_train is None else spec.n_train
        n_test = self.n_test if spec.n_test is None else spec.n_test
        return n_train, n_test


def _validate_physics(name: str, spec: SiteSpec) -> None:
    """The MR physics knobs of one site (see :mod:`fedshift.data.synth.physics`)."""
    fields = ", ".join(f"{f:g}" for f in FIELDS_T)
    if spec.field_t != 0 and spec.field_t not in FIELDS_T:
        raise ConfigError(
            f"sites.{name}.field_t must be 0 (the fixed contrast table) or one of {fields} T, "
            f"got {spec.field_t}"
        )
    timing = {"tr_ms": spec.tr_ms, "te_ms": spec.te_ms, "ti_ms": spec.ti_ms}
    if spec.field_t == 0 and (any(timing.values()) or spec.csf_inflow != 0):
        raise ConfigError(
            f"sites.{name}: tr_ms, te_ms, ti_ms and csf_inflow need field_t {fields} "
            "(they act through the signal equation); field_t is 0"
        )
    if any(timing.values()) and not all(v > 0 for v in timing.values()):
        raise ConfigError(
            f"sites.{name}: set all of tr_ms, te_ms, ti_ms > 0, or all three to 0 for the "
            f"field's standard protocol; got {timing}"
        )
    if spec.ti_ms + spec.te_ms >= spec.tr_ms > 0:
        raise ConfigError(
            f"sites.{name}: ti_ms + te_ms must be < tr_ms (inversion delay and echo within "
            f"one repetition), got TI {spec.ti_ms:g} + TE {spec.te_ms:g} >= TR {spec.tr_ms:g}"
        )
    if not 0.0 <= spec.csf_inflow <= 1.0:
        raise ConfigError(f"sites.{name}.csf_inflow must be in [0, 1], got {spec.csf_inflow}")
    if spec.slice_gap_mm < 0:
        raise ConfigError(f"sites.{name}.slice_gap_mm must be >= 0, got {spec.slice_gap_mm}")
    if spec.slice_gap_mm > 0 and spec.slice_thickness_mm <= 0:
        raise ConfigError(
            f"sites.{name}: slice_gap_mm {spec.slice_gap_mm:g} needs slice_thickness_mm > 0 "
            "(the gap lies between slices)"
        )
