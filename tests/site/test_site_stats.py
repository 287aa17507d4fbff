"""A site's statistics under a (tiny) global model: layout, sampling, no clipping, and
that the secure sum over sites is the sum of their vectors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from mri_fixtures import make_site

from fedshift.data.layout import discover_site, site_items
from fedshift.model.config import ModelConfig, PreprocessConfig, SegConfig, TrainConfig
from fedshift.model.network import build_network
from fedshift.model.preprocess import PreprocessCache
from fedshift.secagg.secure import SecAggConfig, secure_sum
from fedshift.shift.stats import SiteStatistics, StatsLayout
from fedshift.site.stats import (
    REPORT_SAMPLES,
    case_features,
    case_rng,
    clip_headroom,
    combine_cases,
    label_agreement,
    report_samples,
    site_statistics,
)

SAMPLES = 20
CFG = SegConfig(
    model=ModelConfig(channels=(4, 8, 16), strides=(2, 2), num_res_units=1, feat_dim=4),
    preprocess=PreprocessConfig(n4_shrink=2, n4_iterations=(10,)),
    train=TrainConfig(patch_size=(16, 16, 16), device="cpu"),
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("sites")
    return {
        name: make_site(tmp, n_cases=2, shape=(20, 20, 20), labelled=labelled, seed=k, name=name)
        for k, (name, labelled) in enumerate([("a", True), ("b", True), ("c", True), ("t", False)])
    }


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_network(CFG.model, seed=3)


def _stats(site: Path, model: torch.nn.Module, cache_dir: Path, seed: int = 7):
    items = site_items(discover_site(site), "train")
    cache = PreprocessCache(cache_dir / site.name, CFG.preprocess)
    return site_statistics(
        model, items, cache, CFG, torch.device("cpu"), samples_per_class=SAMPLES, seed=seed
    )


@pytest.fixture(scope="module")
def local(sites: dict[str, Path], model, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("cache")
    return {name: _stats(path, model, cache) for name, path in sites.items()}


def test_features_keep_the_volume_shape(model) -> None:
    image = np.random.default_rng(0).normal(size=(20, 19, 13)).astype(np.float32)
    feats, prob = case_features(model, image, CFG, torch.device("cpu"))
    assert feats.shape == (4, 20, 19, 13) and prob.shape == (20, 19, 13)
    assert np.all((prob >= 0) & (prob <= 1)) and np.isfinite(feats).all()


def test_labelled_site_statistics(local: dict) -> None:
    st = local["a"].stats
    assert st.to_vector().shape == (StatsLayout(4).size,)
    assert st.cases == 2 and st.labelled_cases == 2
    assert st.embeddings["background"].n == 2 * SAMPLES
    assert 0 < st.embeddings["lesion"].n <= 2 * SAMPLES
    assert st.embeddings["all"].n == 0
    assert st.lesion_count.sum() == 2 and st.lesion_volume.sum() == 2
    assert st.intensity.sum() > 0
    assert local["a"].dice is not None and 0.0 <= local["a"].dice <= 1.0


def test_unlabelled_site_statistics(local: dict) -> None:
    t = local["t"]
    assert t.stats.labelled_cases == 0 and t.dice is None and t.volume_bias is None
    assert t.stats.embeddings["all"].n == 2 * SAMPLES
    assert t.stats.embeddings["background"].n == 0 and t.stats.lesion_count.sum() == 0


def test_predictions_are_read_at_the_given_threshold(
    sites: dict[str, Path], model, tmp_path: Path
) -> None:
    items = site_items(discover_site(sites["a"]), "train")
    cache = PreprocessCache(tmp_path / "a", CFG.preprocess)

    def at(threshold: float | None):
        return site_statistics(
            model, items, cache, CFG, torch.device("cpu"), samples_per_class=SAMPLES, seed=7,
            threshold=threshold,
        )  # fmt: skip

    nothing, everything = at(1.01), at(0.0)  # no voxel predicted / every brain voxel
    assert nothing.dice == 0.0 and np.isnan(nothing.volume_bias)  # nothing to compare with
    assert -1 < everything.volume_bias < 0 < everything.dice  # far more predicted than labelled
    assert at(None).dice == at(CFG.eval.threshold).dice


def test_seeded(sites: dict[str, Path], model, local: dict, tmp_path: Path) -> None:
    again = _stats(sites["b"], model, tmp_path)
    np.testing.assert_array_equal(again.stats.to_vector(), local["b"].stats.to_vector())
    other = _stats(sites["b"], model, tmp_path, seed=8)
    assert not np.array_equal(other.stats.to_vector(), local["b"].stats.to_vector())


def test_secure_sum_is_sum_of_site_vectors_without_clipping(local: dict) -> None:
    vectors = [v.stats.to_vector() for v in local.values()]
    config = SecAggConfig()
    assert max(clip_headroom(v, config) for v in vectors) < 1e-3
    result = secure_sum(vectors, config=config)
    assert result.n_clipped == 0
    np.testing.assert_allclose(result.total, np.sum(vectors, axis=0), rtol=1e-6, atol=1e-6)
    total = sum((v.stats for v in local.values()), start=SiteStatistics.zeros(StatsLayout(4)))
    np.testing.assert_allclose(total.to_vector(), np.sum(vectors, axis=0), rtol=1e-12)


def test_a_site_without_cases_has_empty_statistics() -> None:
    empty = combine_cases([], StatsLayout(4))
    assert empty.stats.cases == 0 and empty.dice is None and empty.volume_bias is None
    assert empty.samples.shape == (0, 4) and empty.sample_labels.shape == (0,)
    assert all(rows == [] for rows in empty.rows.values())


def test_report_samples_of_a_site_are_few_and_labelled(local: dict) -> None:
    a = local["a"]
    assert a.samples.shape[0] == a.sample_labels.shape[0] <= 2 * 2 * REPORT_SAMPLES
    assert set(np.unique(a.sample_labels)) <= {0, 1}
    assert set(np.unique(local["t"].sample_labels)) == {-1}


def test_report_samples_label_an_unlabelled_case_minus_one(rng) -> None:
    x = rng.normal(size=(100, 3))
    kept, labels = report_samples((x, None))
    assert kept.shape == (2 * REPORT_SAMPLES, 3) and np.all(labels == -1)
    y = np.r_[np.zeros(80, int), np.ones(20, int)]
    kept, labels = report_samples((x, y))
    assert (labels == 0).sum() == REPORT_SAMPLES and (labels == 1).sum() == 20


def test_label_agreement_in_millilitres() -> None:
    label = np.zeros((10, 10, 10), bool)
    label[2:4, 2:4, 2:4] = True
    pred = label.copy()
    pred[5, 5, 5] = True
    score, label_ml, pred_ml = label_agreement(pred, label, (2.0, 2.0, 2.0))
    assert (label_ml, pred_ml) == (pytest.approx(0.064), pytest.approx(0.072))
    assert score == pytest.approx(2 * 8 / 17)


def test_a_case_samples_the_same_whatever_its_position() -> None:
    first = case_rng(7, "case_001").integers(1 << 30, size=4)
    assert np.array_equal(first, case_rng(7, "case_001").integers(1 << 30, size=4))
    assert not np.array_equal(first, case_rng(7, "case_002").integers(1 << 30, size=4))


def test_every_case_has_its_tissue_order_and_labelled_ones_their_separability(local) -> None:
    """The tissue order is label-free (every case); the lesion AUCs need a label, and
    without an intensity map they are the same before and after it."""
    for name in ("a", "t"):
        rows = local[name].rows
        assert len(rows["tissue"]) == 2
        assert all(0.0 < r["csf_rank"] <= 1.0 for r in rows["tissue"])
        assert local[name].stats.descriptors["tissue"].n == 2
    assert local["t"].rows["separability"] == []
    labelled = local["a"].rows["separability"]
    assert labelled and all(0.0 <= r["lesion_auc_nawm"] <= 1.0 for r in labelled)
    assert all(r["lesion_auc_nawm_mapped"] == r["lesion_auc_nawm"] for r in labelled)


def test_the_intensity_map_leaves_the_lesion_auc_unchanged(
    sites: dict[str, Path], model, local: dict, tmp_path: Path
) -> None:
    """Statistics of a site that trains through a (monotone, non-trivial) intensity map:
    the AUCs read after the map equal those before it."""
    from fedshift.shift.intensity import IntensityMap

    stretch = IntensityMap(x=np.array([-5.0, 0.0, 1.0, 5.0]), y=np.array([-2.0, 0.5, 3.0, 4.0]))
    items = site_items(discover_site(sites["a"]), "train")
    cache = PreprocessCache(tmp_path / "a", CFG.preprocess, intensity_map=stretch)
    mapped = site_statistics(
        model, items, cache, CFG, torch.device("cpu"), samples_per_class=SAMPLES, seed=7
    )
    rows = mapped.rows["separability"]
    assert rows == local["a"].rows["separability"]
    assert all(r["lesion_auc_gm_mapped"] == r["lesion_auc_gm"] for r in rows)
