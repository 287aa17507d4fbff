"""Synthetic federation: determinism, layout, and that each knob plants what it says."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fedshift.cli import main
from fedshift.config import find_preset, load_config
from fedshift.data.layout import discover_site
from fedshift.data.synth.config import SiteSpec, SynthConfig
from fedshift.data.synth.federation import synth_case, write_federation
from fedshift.errors import ConfigError, UsageError

# 6 mm voxels: ~30^3 volumes, fast enough for unit tests
FAST = {"voxel_mm": 6.0, "n_train": 2, "n_test": 1}


def tiny(**sites: SiteSpec) -> SynthConfig:
    return SynthConfig(name="tiny", seed=7, sites=dict(sites), **FAST)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fed") / "fed"
    cfg = tiny(a=SiteSpec(n_raters=2), target=SiteSpec(labelled=False, gamma=1.5))
    write_federation(cfg, out)
    return out


def _bytes_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes(federation: Path, tmp_path: Path) -> None:
    cfg = tiny(a=SiteSpec(n_raters=2), target=SiteSpec(labelled=False, gamma=1.5))
    write_federation(cfg, tmp_path / "again")
    assert _bytes_of(federation) == _bytes_of(tmp_path / "again")


def test_other_seed_other_images() -> None:
    cfg = tiny(a=SiteSpec())
    image_a = synth_case(cfg, "a", "train", 0, None)[0]
    cfg.seed = 8
    image_b = synth_case(cfg, "a", "train", 0, None)[0]
    assert not np.array_equal(image_a, image_b)


def test_layout_labelled_and_target_site(federation: Path) -> None:
    site = discover_site(federation / "a")
    assert site.has_train_labels and site.structured
    assert [c.case_id for c in site.split("train")] == ["a_train000", "a_train001"]
    assert all(c.label is not None for c in site.cases)
    assert set(site.split("train")[0].raters) == {"rater1"}
    target = discover_site(federation / "target")
    assert not target.has_train_labels
    assert not (federation / "target" / "labelsTr").exists()
    assert all(c.label is None for c in target.split("train"))
    assert all(c.label is not None for c in target.split("test"))


def test_truth_json_records_planted_parameters(federation: Path) -> None:
    truth = json.loads((federation / "truth.json").read_text())
    assert truth["seed"] == 7 and truth["voxel_mm"] == 6.0
    assert truth["sites"]["target"]["spec"]["gamma"] == 1.5
    case = truth["sites"]["a"]["cases"][0]
    assert {"scale", "ventricle_factor", "n_lesions", "lesions", "lesion_volume_mm3"} <= set(case)


def test_image_is_flair_like_int16_ras(federation: Path) -> None:
    img = nib.load(federation / "a" / "imagesTr" / "a_train000_0000.nii.gz")
    assert img.get_data_dtype() == np.int16
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    assert np.allclose(img.header.get_zooms(), 6.0)
    data = np.asarray(img.dataobj, dtype=float)
    label = np.asarray(nib.load(federation / "a" / "labelsTr" / "a_train000.nii.gz").dataobj)
    assert set(np.unique(label)) <= {0, 1}
    if label.any():  # lesions are brighter than the median brain voxel
        assert np.median(data[label > 0]) > np.median(data[data > 0.5 * data.max() * 0.3])


def test_population_knob_increases_lesion_load() -> None:
    cfg = tiny(low=SiteSpec(lesion_load=0.3), high=SiteSpec(lesion_load=3.0))
    counts = {
        s: sum(synth_case(cfg, s, "train", i, None)[3]["n_lesions"] for i in range(4))
        for s in cfg.sites
    }
    assert counts["high"] > counts["low"] + 10


def test_annotation_knobs_change_labels_not_images() -> None:
    cfg = tiny(ref=SiteSpec(lesion_load=3.0), wide=SiteSpec(lesion_load=3.0, rater_dilation=1))
    from fedshift.data.synth.annotation import rater_style

    _, truth, _, _ = synth_case(cfg, "ref", "train", 0, None)
    assert truth.any()
    dilated = rater_style(truth, cfg.sites["wide"], 216.0)
    assert dilated.sum() > truth.sum()
    missed = rater_style(truth, SiteSpec(missed_below_mm3=1e9), 216.0)
    assert missed.sum() == 0


def test_acquisition_knobs_change_intensities() -> None:
    cfg = tiny(ref=SiteSpec(), gamma=SiteSpec(gamma=2.0), scaled=SiteSpec(scale=2.0))
    ref = synth_case(cfg, "ref", "train", 0, None)[0].astype(float)
    # the subject is drawn from the site's own stream: compare intensity statistics only
    scaled = synth_case(cfg, "scaled", "train", 0, None)[0].astype(float)
    assert np.percentile(scaled, 99) > 1.6 * np.percentile(ref, 99)
    gamma = synth_case(cfg, "gamma", "train", 0, None)[0].astype(float)
    fg = lambda a: a[a > 0.3 * np.percentile(a, 99)]  # noqa: E731
    assert np.std(fg(gamma)) / np.mean(fg(gamma)) > np.std(fg(ref)) / np.mean(fg(ref))


def test_quality_fraction_plants_artifacts(tmp_path: Path) -> None:
    cfg = tiny(q=SiteSpec(ghosting_fraction=0.5, spike_fraction=0.5))
    truth = write_federation(cfg, tmp_path / "q")
    kinds = sorted(
        c.get("artifact", "") for c in truth["sites"]["q"]["cases"] if c["split"] == "train"
    )
    assert kinds == ["ghosting", "spike"]


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="nosuchkey"):
        load_config(SynthConfig, [], ["nosuchkey=1"])
    with pytest.raises(ConfigError, match="ghosting_fraction"):
        load_config(SynthConfig, [], ["sites.a.ghosting_fraction=2"])
    with pytest.raises(ConfigError, match="known: .*default"):
        from fedshift.config import find_preset

        find_preset("nope", "scenarios")


def test_refuses_non_empty_output(federation: Path) -> None:
    with pytest.raises(UsageError, match="not empty"):
        write_federation(tiny(a=SiteSpec()), federation)


def test_cli_usage_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", "--scenario", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "scenario=nope is invalid: expected a preset" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("control", {"site0": [], "site1": [], "site2": [], "site3": [], "target": []}),
        (
            "acquisition",
            {
                "site0": [],
                "site1": ["acquisition"],
                "site2": ["acquisition"],
                "site3": ["acquisition"],
                "target": ["acquisition"],
            },
        ),
        (
            "population",
            {
                "site0": [],
                "site1": ["population"],
                "site2": ["population"],
                "site3": ["population"],
                "target": ["population"],
            },
        ),
        (
            "annotation",  # site0's extra raters leave its own labels unchanged
            {
                "site0": [],
                "site1": ["annotation"],
                "site2": ["annotation"],
                "site3": ["annotation"],
                "target": [],
            },
        ),
        (
            "hard",  # every site has a scanner-chain difference; the target also its physics
            {site: ["acquisition"] for site in ("site0", "site1", "site2", "site3", "target")},
        ),
    ],
)
def test_planted_shifts_of_the_scenarios(scenario: str, expected: dict[str, list[str]]) -> None:
    cfg = load_config(SynthConfig, [find_preset(scenario, "scenarios")])
    assert {name: spec.planted_shifts() for name, spec in cfg.sites.items()} == expected
    assert SiteSpec(gamma=1.2, lesion_load=2.0, n_raters=3).planted_shifts() == [
        "acquisition",
        "population",
    ]


def test_calibration_cases_are_shared_and_annotated_by_each_sites_rater(tmp_path: Path) -> None:
    from fedshift.site.calibration import measure_calibration

    cfg = tiny(
        a=SiteSpec(),
        b=SiteSpec(rater_dilation=1, gamma=1.5),
        target=SiteSpec(labelled=False),
    )
    cfg.calibration_cases = 2
    write_federation(cfg, tmp_path / "fed")
    a, b = (tmp_path / "fed" / s / "calibration" for s in ("a", "b"))
    assert not (tmp_path / "fed" / "target" / "calibration").exists()
    for sub in ("images", "reference"):  # the same public cases everywhere
        assert _bytes_of(a / sub) == _bytes_of(b / sub) and len(_bytes_of(a / sub)) == 2
    assert _bytes_of(a / "labels") == _bytes_of(a / "reference")
    ref = np.asarray(nib.load(b / "reference" / "calibration000.nii.gz").dataobj)
    lab = np.asarray(nib.load(b / "labels" / "calibration000.nii.gz").dataobj)
    assert ref.sum() > 0 and lab.sum() > ref.sum() and np.all(lab[ref > 0] == 1)
    assert measure_calibration(tmp_path / "fed" / "a").volume == 0.0
    assert measure_calibration(tmp_path / "fed" / "b").volume > 0.2
