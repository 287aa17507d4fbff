"""SegNet: the g/f split, shapes, seeded init and the weight arrays that leave the site."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedshift.errors import ConfigError
from fedshift.model.config import ModelConfig
from fedshift.model.network import build_network, get_state, get_weights, set_state, set_weights

SMALL = ModelConfig(channels=(4, 8, 16), strides=(2, 2), num_res_units=1, feat_dim=6)


def test_features_have_feat_dim_channels_and_head_gives_two_logits() -> None:
    model = build_network(SMALL, seed=0)
    x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    feats = model.features(x)
    logits = model(x)
    assert feats.shape == (2, 6, 16, 16, 16)
    assert logits.shape == (2, 2, 16, 16, 16)
    assert torch.allclose(model.head(feats), logits, atol=1e-6)
    assert isinstance(model.f, torch.nn.Conv3d) and model.f.kernel_size == (1, 1, 1)


def test_build_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b, c = (
        build_network(SMALL, seed=1),
        build_network(SMALL, seed=1),
        build_network(SMALL, seed=2),
    )
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(np.array_equal(x, y) for x, y in zip(get_weights(a), get_weights(b), strict=True))
    assert not all(
        np.array_equal(x, y) for x, y in zip(get_weights(a), get_weights(c), strict=True)
    )


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_weights_round_trip_including_buffers(norm: str) -> None:
    cfg = ModelConfig(channels=(4, 8), strides=(2,), num_res_units=0, feat_dim=4, norm=norm)
    src, dst = build_network(cfg, seed=0), build_network(cfg, seed=5)
    if norm == "batch":  # give the running statistics non-default values
        src.train()
        src(torch.randn(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(1)))
    arrays = get_weights(src)
    assert len(arrays) == len(src.state_dict())
    assert all(a.dtype == np.float32 for a in arrays)
    set_weights(dst, arrays)
    for (name, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
        assert a.dtype == b.dtype, name
    src.eval(), dst.eval()
    x = torch.randn(1, 1, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(src(x), dst(x))


def test_named_state_round_trip() -> None:
    src, dst = build_network(SMALL, seed=0), build_network(SMALL, seed=3)
    set_state(dst, get_state(src))
    assert all(
        np.array_equal(x, y) for x, y in zip(get_weights(src), get_weights(dst), strict=True)
    )


def test_mismatched_weights_name_the_problem() -> None:
    model = build_network(SMALL, seed=0)
    arrays = get_weights(model)
    with pytest.raises(ConfigError, match="weight arrays"):
        set_weights(model, arrays[:-1])
    arrays[0] = np.zeros((1, 2, 3), np.float32)
    with pytest.raises(ConfigError, match="has shape"):
        set_weights(model, arrays)


def test_bad_model_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match="model.strides"):
        build_network(ModelConfig(channels=(4, 8, 16), strides=(2,)))
