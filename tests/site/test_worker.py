"""A site asked for what it cannot do says so with the project's errors, naming the site."""

from __future__ import annotations

from pathlib import Path

import pytest
from mri_fixtures import make_site

from fedshift.errors import SiteError, UsageError
from fedshift.model.config import ModelConfig, PreprocessConfig, SegConfig, TrainConfig
from fedshift.model.network import build_network, get_weights
from fedshift.shift.reference import build_reference
from fedshift.shift.stats import SiteStatistics, StatsLayout
from fedshift.site.worker import SiteWorker

CFG = SegConfig(
    model=ModelConfig(channels=(4, 8, 16), strides=(2, 2), num_res_units=1, feat_dim=4),
    preprocess=PreprocessConfig(n4_shrink=2, n4_iterations=(10,)),
    train=TrainConfig(patch_size=(16, 16, 16), device="cpu"),
)


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory: pytest.TempPathFactory) -> SiteWorker:
    tmp = tmp_path_factory.mktemp("worker")
    data = make_site(tmp, n_cases=2, shape=(16, 16, 16), labelled=False, name="target")
    return SiteWorker(data, tmp / "work", CFG, seed=0)


def test_no_usable_training_case_is_a_site_error(unlabelled: SiteWorker) -> None:
    weights = get_weights(build_network(CFG.model, seed=0))
    with pytest.raises(
        SiteError, match=r"site target cannot train: .*labelled.*fedshift readiness"
    ):
        unlabelled.train(weights, server_round=1)


def test_bures_map_before_a_reference_is_a_site_error(unlabelled: SiteWorker) -> None:
    with pytest.raises(SiteError, match=r"site target: .*reference.*fed\.secure_stats=true"):
        unlabelled.bures_map()


def test_reference_before_statistics_is_a_site_error(unlabelled: SiteWorker) -> None:
    reference = build_reference(SiteStatistics.zeros(StatsLayout(CFG.model.feat_dim)))
    with pytest.raises(SiteError, match="site target has no statistics yet"):
        unlabelled.receive_reference(reference, "r1")
    assert not Path(unlabelled.work_dir, "shift", "reference.npz").exists()


def test_an_unknown_split_lists_the_valid_ones(unlabelled: SiteWorker) -> None:
    weights = get_weights(build_network(CFG.model, seed=0))
    with pytest.raises(UsageError, match=r"split must be one of \('val', 'test'\), got 'train'"):
        unlabelled.evaluate(weights, "train")
