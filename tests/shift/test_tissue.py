"""Tissue order and lesion separability: what a monotone intensity map cannot change."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fedshift.shift.descriptors import KernelSummary
from fedshift.shift.diagnosis import diagnose, measure
from fedshift.shift.intensity import apply, quantile_map
from fedshift.shift.reference import build_reference
from fedshift.shift.stats import INTENSITY_EDGES, SiteStatistics, StatsLayout, histogram
from fedshift.shift.tissue import (
    CSF_BRIGHT_RANK,
    lesion_auc,
    mid_ranks,
    reference_tissues,
    separability,
    tissue_order,
)

SHAPE = (40, 40, 40)
ZOOMS = (2.0, 2.0, 2.0)
#: FLAIR-like tissue means (WM = 1): CSF nulled, GM above WM, lesions brightest
FLAIR = {"csf": 0.15, "gm": 1.3, "wm": 1.0, "lesion": 1.9}
#: a too-short inversion time: CSF no longer nulled, brighter than white matter
SHORT_TI = {**FLAIR, "csf": 1.6}


def _ellipsoid(centre, radii) -> np.ndarray:
    grid = np.indices(SHAPE).astype(float)
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1.0


def _anatomy() -> dict[str, np.ndarray]:
    """Tissue masks of a 2 mm phantom brain: outer CSF rim, cortex, white matter, two
    lateral ventricles beside the midline (x = 19.5), thalamus-like deep grey matter below
    and beside them, and three lesions in the white matter."""
    brain = _ellipsoid((19.5, 19.5, 19.5), (17, 18, 15))
    inner = ndimage.binary_erosion(brain, iterations=1)
    wm = ndimage.binary_erosion(inner, iterations=2)
    ventricles = _ellipsoid((16.5, 20, 22), (1.6, 6, 3)) | _ellipsoid((22.5, 20, 22), (1.6, 6, 3))
    deep_gm = _ellipsoid((15.5, 18, 16), (2.5, 4, 2.5)) | _ellipsoid((23.5, 18, 16), (2.5, 4, 2.5))
    lesion = (
        _ellipsoid((10, 24, 24), (2, 2, 2))
        | _ellipsoid((29, 14, 22), (1.5, 2, 2))
        | _ellipsoid((14, 28, 14), (2, 1.5, 2))
    ) & wm
    return {
        "brain": brain,
        "csf": (brain & ~inner) | ventricles,
        "gm": (inner & ~wm) | deep_gm,
        "wm": wm & ~ventricles & ~deep_gm & ~lesion,
        "lesion": lesion & ~ventricles,
    }


def _phantom(contrast: dict[str, float], seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(image, tissue masks): tissue means, partial volume (a light blur), noise."""
    masks = _anatomy()
    image = np.full(SHAPE, 0.05)  # skull and air around the brain: dark in every contrast
    for name in ("wm", "gm", "csf", "lesion"):
        image[masks[name]] = contrast[name]
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(image, 0.6) + rng.normal(0.0, 0.04, SHAPE)
    return np.abs(image), masks


def test_auc_counts_pairs_and_ties():
    image = np.zeros((2, 2, 2))
    image[0] = [[3.0, 4.0], [5.0, 6.0]]
    image[1] = [[1.0, 2.0], [3.0, 0.0]]
    lesion, reference = image >= 3.0, image < 3.0
    lesion[1, 1, 0] = False
    assert lesion_auc(image, lesion, reference) == pytest.approx(1.0)
    tied = np.zeros((2, 2, 2), bool)
    tied[1, 1, 0] = True  # value 3.0: ties with one lesion voxel
    got = lesion_auc(image, lesion, reference | tied)
    assert got == pytest.approx((4 * 3 + 3 * 1 + 0.5) / (4 * 4))
    assert np.isnan(lesion_auc(image, np.zeros_like(lesion), reference))
    with pytest.raises(ValueError, match="reference_mask has shape"):
        lesion_auc(image, lesion, reference[:1])


def test_auc_is_invariant_under_a_strictly_monotone_map_and_not_under_another(rng):
    image, masks = _phantom(FLAIR)
    lesion, nawm = masks["lesion"], masks["wm"]
    before = lesion_auc(image, lesion, nawm)
    assert 0.95 < before <= 1.0
    for monotone in (np.log1p(image), 3.0 * image - 7.0, image**2.5, np.tanh(image - 1.0)):
        assert lesion_auc(monotone, lesion, nawm) == pytest.approx(before, abs=1e-12)
    # the federation's intensity map: the monotone 1-D OT map onto another histogram
    brain = masks["brain"]
    z = (image - image[brain].mean()) / image[brain].std()
    target = histogram(rng.normal(0.3, 1.4, 50_000), INTENSITY_EDGES)
    mapping = quantile_map(histogram(z[brain], INTENSITY_EDGES), target, INTENSITY_EDGES)
    mapped = apply(mapping, z, brain)
    assert not np.allclose(mapped[brain], z[brain])
    assert lesion_auc(mapped, lesion, nawm) == pytest.approx(lesion_auc(z, lesion, nawm))
    # folding intensities about the lesion level is not monotone: separation is lost
    folded = np.abs(image - FLAIR["lesion"])
    assert lesion_auc(folded, lesion, nawm) < 0.1


def test_separability_before_and_after_a_map():
    image, masks = _phantom(FLAIR)
    brain, lesion = masks["brain"], masks["lesion"]
    same = separability(image, brain, lesion, ZOOMS, mapped=np.sqrt(image))
    assert same["lesion_auc_nawm"] > 0.95 and same["lesion_auc_gm"] > 0.8
    assert same["lesion_auc_nawm_mapped"] == same["lesion_auc_nawm"]
    assert same["lesion_auc_gm_mapped"] == same["lesion_auc_gm"]
    bent = separability(image, brain, lesion, ZOOMS, mapped=np.abs(image - 1.6))
    assert bent["lesion_auc_nawm_mapped"] < bent["lesion_auc_nawm"] - 0.3
    identity = separability(image, brain, lesion, ZOOMS)
    assert identity["lesion_auc_gm_mapped"] == same["lesion_auc_gm"]


@pytest.mark.parametrize("contrast", [FLAIR, SHORT_TI], ids=["flair", "short-ti"])
def test_reference_tissues_find_white_and_grey_matter_whatever_the_order(contrast):
    image, masks = _phantom(contrast)
    tissues = reference_tissues(image, masks["brain"], masks["lesion"], ZOOMS)
    assert tissues["nawm"].sum() > 50 and tissues["gm"].sum() > 20
    assert masks["wm"][tissues["nawm"]].mean() > 0.8
    assert not (tissues["nawm"] & masks["lesion"]).any()
    if contrast is FLAIR:  # bright CSF can take grey matter's bins with it (docs/diagnosis.md)
        assert masks["gm"][tissues["gm"]].mean() > 0.5


def test_tissue_order_names_bright_csf_and_not_flair():
    flair = tissue_order(*_flair_brain(), ZOOMS)
    assert flair["csf_rank"] < 0.1 < CSF_BRIGHT_RANK and flair["csf_enrichment"] > 1.5
    assert flair["csf_intensity"] < flair["deep_median"]
    image, masks = _phantom(SHORT_TI)
    short = tissue_order(image, masks["brain"], ZOOMS)
    assert short["csf_rank"] > CSF_BRIGHT_RANK and short["csf_intensity"] > short["deep_median"]


def _flair_brain(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    image, masks = _phantom(FLAIR, seed)
    return image, masks["brain"]


def test_tissue_order_is_a_rank_a_monotone_map_cannot_move():
    image, brain = _flair_brain()
    got = tissue_order(image, brain, ZOOMS)["csf_rank"]
    for monotone in (image**1.8, 500.0 * image + 40.0, np.log(image + 0.01)):
        assert tissue_order(monotone, brain, ZOOMS)["csf_rank"] == got


def test_tissue_order_refuses_what_it_cannot_read():
    image, brain = _flair_brain()
    small = np.zeros(SHAPE, bool)
    small[18:21, 18:21, 18:21] = True
    with pytest.raises(ValueError, match="too few"):
        tissue_order(image, small, ZOOMS)
    with pytest.raises(ValueError, match="3-D"):
        tissue_order(image[0], brain[0], ZOOMS)
    with pytest.raises(ValueError, match="brain_mask has shape"):
        tissue_order(image, brain[:-1], ZOOMS)


def test_mid_ranks_share_ties():
    assert mid_ranks(np.array([2.0, 1.0, 2.0, 5.0])).tolist() == [0.5, 0.125, 0.5, 0.875]


def _site(ranks: list[float]) -> SiteStatistics:
    zero = SiteStatistics.zeros(StatsLayout(feat_dim=2))
    rows = [{"csf_rank": r} for r in ranks]
    return SiteStatistics(
        **{**zero.__dict__, "cases": float(len(rows)),
           "descriptors": {"tissue": KernelSummary.of("tissue", rows)}}
    )  # fmt: skip


def test_a_target_whose_csf_turned_bright_is_named_acquisition():
    """Four FLAIR sites and a target with a short inversion time, as the phantoms measure
    them: only the target is named, and in words a monotone map cannot undo."""
    flair = [tissue_order(*_flair_brain(seed), ZOOMS)["csf_rank"] for seed in range(3)]
    image, masks = _phantom(SHORT_TI, seed=5)
    short = [tissue_order(image, masks["brain"], ZOOMS)["csf_rank"]] * 3
    sites = [_site(flair) for _ in range(4)] + [_site(short)]
    reference = build_reference(sum(sites[1:], sites[0]))
    names = ["site0", "site1", "site2", "site3", "target"]
    verdicts = diagnose([measure(n, s, reference) for n, s in zip(names, sites, strict=True)])
    assert [d.shift for d in verdicts] == [[], [], [], [], ["acquisition"]]
    assert "csf_rank +" in verdicts[-1].evidence
    assert "CSF brighter than white matter" in verdicts[-1].evidence
    assert "a monotone intensity map cannot undo this" in verdicts[-1].evidence
    assert "CSF" not in verdicts[0].evidence


def test_a_synthetic_site_with_a_short_inversion_time_is_named_acquisition():
    """The MR-physics generator (issue 21, part 1): three sites whose FLAIR nulls CSF (3 T
    standard, 3 T with another TR/TE/TI at CSF's null, 1.5 T standard) and one whose TI is
    far below CSF's null (1.5 T, 8000/100/1400 ms: CSF 2.7x WM). Through the site's
    preprocessing, only the short-TI site is named, and in words."""
    from fedshift.data.synth.config import SiteSpec, SynthConfig
    from fedshift.data.synth.federation import synth_case
    from fedshift.model.config import PreprocessConfig
    from fedshift.model.preprocess import preprocess_array

    specs = {
        "a": SiteSpec(field_t=3.0),
        "b": SiteSpec(field_t=3.0, tr_ms=4800.0, te_ms=125.0, ti_ms=1750.0),
        "c": SiteSpec(field_t=1.5),
        "short": SiteSpec(field_t=1.5, tr_ms=8000.0, te_ms=100.0, ti_ms=1400.0),
    }
    cfg = SynthConfig(name="tiny", seed=3, voxel_mm=4.0, sites=specs)
    zooms = (cfg.voxel_mm,) * 3
    sites = []
    for name in specs:
        ranks = []
        for index in range(2):
            stored = synth_case(cfg, name, "train", index, None)[0].astype(np.float32)
            image, brain = preprocess_array(stored, zooms, PreprocessConfig(n4=False))
            ranks.append(tissue_order(image, brain, zooms)["csf_rank"])
        sites.append(_site(ranks))
    reference = build_reference(sum(sites[1:], sites[0]))
    verdicts = diagnose([measure(n, s, reference) for n, s in zip(specs, sites, strict=True)])
    assert [d.shift for d in verdicts] == [[], [], [], ["acquisition"]]
    assert "CSF brighter than white matter" in verdicts[-1].evidence
