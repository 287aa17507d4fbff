"""A site's side of the statistics rounds, without Flower: statistics kept in its private
shift folder, the reference measured against, the intensity map fitted and applied, and
the diagnosis report drawn from those files."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from mri_fixtures import make_site

from fedshift.model.config import ModelConfig, PreprocessConfig, SegConfig, TrainConfig
from fedshift.model.network import build_network, get_weights
from fedshift.report.diagnosis_report import write_diagnosis_report
from fedshift.shift.diagnosis import diagnose
from fedshift.shift.distances import wasserstein_1d_hist
from fedshift.shift.reference import build_reference
from fedshift.shift.stats import intensity_histogram
from fedshift.site.files import ShiftFolder
from fedshift.site.worker import SiteWorker

CFG = SegConfig(
    model=ModelConfig(channels=(4, 8, 16), strides=(2, 2), num_res_units=1, feat_dim=4),
    preprocess=PreprocessConfig(n4_shrink=2, n4_iterations=(10,)),
    train=TrainConfig(patch_size=(16, 16, 16), device="cpu"),
)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory):
    """Three labelled sites and an unlabelled one; 't' is brighter and noisier."""
    tmp = tmp_path_factory.mktemp("fed")
    run = tmp / "run"
    workers = {}
    for k, (name, labelled) in enumerate([("a", True), ("b", True), ("c", True), ("t", False)]):
        data = make_site(tmp, n_cases=3, shape=(24, 24, 24), labelled=labelled, seed=k, name=name)
        if name == "t":  # a different scanner: a contrast curve on every image
            import nibabel as nib

            for path in (data / "imagesTr").glob("*.nii.gz"):
                img = nib.load(path)
                x = np.asarray(img.dataobj, dtype=np.float32)
                nib.save(nib.Nifti1Image(x**1.6 / x.max() ** 0.6, img.affine), path)
        workers[name] = SiteWorker(data, run / "sites" / name, CFG, seed=0, align_intensity=True)
    weights = get_weights(build_network(CFG.model, seed=0))
    local = {
        n: w.statistics(weights, 0, samples_per_class=16, round_id="r1") for n, w in workers.items()
    }
    total = local["a"].stats + local["b"].stats + local["c"].stats + local["t"].stats
    reference = build_reference(total)
    indicators = {n: w.receive_reference(reference, "r1") for n, w in workers.items()}
    return run, workers, local, reference, indicators


def test_statistics_and_reference_stay_in_the_shift_folder(federation) -> None:
    run, workers, local, reference, indicators = federation
    for name, w in workers.items():
        files = {p.name for p in (run / "sites" / name / "shift").iterdir()}
        assert {"local.npz", "reference.npz", "indicators.json", "intensity_map.npz"} <= files
        back = w.shift.load_local("r1")
        np.testing.assert_allclose(back.stats.to_vector(), local[name].stats.to_vector())
        assert back.dice == local[name].dice
        assert len(back.rows["acquisition"]) == 3
        assert back.samples.shape[1] == 4 and len(back.samples) == len(back.sample_labels)
    assert local["t"].dice is None and workers["t"].shift.load_local().dice is None
    with pytest.raises(ValueError, match="round"):
        workers["a"].shift.load_local("another round")


def test_a_reference_in_another_layout_is_refused_with_its_path(federation, tmp_path) -> None:
    run, workers, local, reference, indicators = federation
    path = workers["a"].shift.root / "reference.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["descriptors.acquisition"] = arrays["descriptors.acquisition"][:266]
    folder = ShiftFolder(tmp_path)
    folder.root.mkdir()
    np.savez(folder.root / "reference.npz", **arrays)
    with pytest.raises(ValueError, match=r"reference\.npz: .*acquisition.*another layout"):
        folder.load_reference()


def test_appearance_descriptors_are_kept_and_reused(federation) -> None:
    """Measured once per image beside the preprocessing cache: a second statistics round
    reads them back (same values) instead of measuring again."""
    from fedshift.site import descriptors as site_descriptors

    _, workers, local, _, _ = federation
    w = workers["a"]
    kept = sorted((w.cache_dir / "descriptors").glob("*.json"))
    assert len(kept) == 3
    first = [json.loads(p.read_text()) for p in kept]
    assert first[0].keys() == {"noise", "contrast", "nonuniformity", "sharpness"}
    calls = []
    original = site_descriptors.appearance_of
    site_descriptors.appearance_of = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again = w.statistics(get_weights(build_network(CFG.model, seed=0)), 0, 16, "r2")
    finally:
        site_descriptors.appearance_of = original
    assert calls == []
    assert again.rows["acquisition"] == local["a"].rows["acquisition"]


def test_indicators_are_scalars_of_every_family(federation) -> None:
    _, _, _, _, indicators = federation
    a, t = indicators["a"], indicators["t"]
    assert a.acquisition_similarity is not None and a.annotation_similarity is not None
    assert t.annotation_similarity is None and t.dice is None
    assert t.acquisition_similarity < a.acquisition_similarity
    assert all(isinstance(v, float | None) for k, v in asdict(a).items() if k != "site")


def test_intensity_map_brings_the_site_onto_the_reference(federation) -> None:
    _, workers, _, reference, _ = federation
    worker = workers["t"]
    item = worker.unlabelled_items()[0]
    cache = worker.cache()
    assert cache.intensity_map is not None
    edges = reference.intensity_edges

    def w1(image, mask) -> float:
        hist = intensity_histogram(image, mask, edges)
        return wasserstein_1d_hist(hist, reference.intensity_pmf, edges)

    standard, mapped = cache.get(item["image"], aligned=False), cache.get(item["image"])
    assert np.array_equal(standard.mask, mapped.mask)
    assert w1(mapped.image, mapped.mask) < 0.5 * w1(standard.image, standard.mask)
    off = SiteWorker(worker.layout.root, worker.work_dir, CFG, seed=0, align_intensity=False)
    assert off.cache().intensity_map is None  # the switch is honoured


def test_diagnosis_report_draws_every_site(federation, tmp_path: Path) -> None:
    run, workers, _, _, indicators = federation
    verdicts = {d.site: d for d in diagnose(list(indicators.values()))}
    body = {
        "after_round": 0,
        "sites": {
            n: {**verdicts[n].to_dict(), "indicators": asdict(ind)} for n, ind in indicators.items()
        },
    }
    body["sites"]["x"] = {"shift": [], "indicators": {}}  # a site whose files are elsewhere
    (run / "diagnosis.json").write_text(json.dumps(body))
    out = write_diagnosis_report(run)
    text = out.read_text()
    for name in ("a", "b", "c", "t"):
        assert f"<h2>{name}</h2>" in text
    assert "private files are not here" in text  # site x
    svgs = re.findall(r"<svg.*?</svg>", text, flags=re.S)
    assert len(svgs) == 4 * 3
    for svg in svgs:
        ET.fromstring(svg)
    # a hospital's own view: the coordinator's folder plus its work folder
    coordinator = tmp_path / "coordinator"
    coordinator.mkdir()
    (coordinator / "diagnosis.json").write_text(json.dumps(body))
    own = write_diagnosis_report(coordinator, [workers["a"].work_dir], tmp_path / "mine.html")
    assert own.read_text().count("<svg") == 3
    with pytest.raises(FileNotFoundError, match="secure_stats"):
        write_diagnosis_report(tmp_path)


def test_diagnose_command(federation, tmp_path: Path) -> None:
    from fedshift.cli import main

    run, workers, _, _, indicators = federation
    body = {"after_round": 0, "sites": {n: {"shift": [], "indicators": {}} for n in indicators}}
    (run / "diagnosis.json").write_text(json.dumps(body))
    out = tmp_path / "d.html"
    assert main(["diagnose", str(run), "--out", str(out)]) == 0 and out.is_file()
    assert main(["diagnose", str(tmp_path / "nowhere")]) == 2
    assert main(["diagnose", str(run), "--site-work", str(tmp_path)]) == 2  # no shift/ there


def test_per_case_evaluation_matches_the_reported_means_and_writes_nothing(federation) -> None:
    run, workers, *_ = federation
    worker = workers["a"]
    weights = get_weights(build_network(CFG.model, seed=0))
    split = "test" if any("label" in i for i in worker.splits()[2]) else "val"
    overlays = worker.work_dir / "overlays"
    before = sorted(overlays.rglob("*")) if overlays.exists() else []
    result, first = worker.evaluate_cases(weights, split)
    assert first is not None and first[1].ndim == 3
    assert (sorted(overlays.rglob("*")) if overlays.exists() else []) == before
    reported = worker.evaluate(weights, split)
    dice = [case["dice"] for case in result.per_case.values()]
    assert reported["n_cases"] == len(dice) > 0
    assert reported["dice"] == pytest.approx(np.nanmean(dice))
    assert reported["threshold"] == result.threshold
