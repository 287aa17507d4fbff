"""The segmentation network, split as per-voxel features ``g`` and a 1x1x1 head ``f``.

Alignment (``fedshift.shift``) acts on the embeddings ``g(x)``; the lesion logits are
``f(g(x))``. Weights travel as an ordered list of float32 arrays (the model's
``state_dict`` order, buffers included): these arrays leave the hospital.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.networks.layers.factories import Act, Norm
from monai.networks.nets import UNet
from torch import nn

from fedshift.errors import ConfigError
from fedshift.model.config import NORMS, ModelConfig
from fedshift.model.device import seeded_torch


class SegNet(nn.Module):
    """A MONAI 3D UNet whose last decoder layer gives ``feat_dim`` embedding channels.

    Attributes
    ----------
    g : UNet (out_channels = feat_dim) followed by normalisation and activation:
        (B, C_in, D, H, W) -> embeddings (B, F, D, H, W).
    f : ``Conv3d(F, 2, 1)``: embeddings (B, F, D, H, W) -> logits (B, 2, D, H, W),
        channel 0 background, channel 1 lesion.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        norm_name, norm_args = NORMS[cfg.norm]
        unet = UNet(
            spatial_dims=3,
            in_channels=cfg.in_channels,
            out_channels=cfg.feat_dim,
            channels=tuple(cfg.channels),
            strides=tuple(cfg.strides),
            num_res_units=cfg.num_res_units,
            norm=(norm_name, dict(norm_args)),
            act=cfg.act,
            dropout=cfg.dropout,
        )
        norm = Norm[norm_name, 3](cfg.feat_dim, **norm_args)
        self.g = nn.Sequential(unet, norm, Act[cfg.act]())
        self.f = nn.Conv3d(cfg.feat_dim, cfg.num_classes, kernel_size=1)
        self.cfg = cfg

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-voxel embeddings ``g(x)``: (B, C_in, D, H, W) -> (B, F, D, H, W)."""
        return self.g(x)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``f(z)``: (B, F, D, H, W) -> (B, 2, D, H, W)."""
        return self.f(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2, D, H, W) of an image batch (B, C_in, D, H, W); D, H, W multiples
        of ``cfg.divisor``."""
        return self.f(self.g(x))


def build_network(cfg: ModelConfig, seed: int = 0) -> SegNet:
    """A :class:`SegNet` with weights initialised from ``seed`` (global RNG untouched)."""
    cfg.validate()
    with seeded_torch(seed, torch.device("cpu")):
        return SegNet(cfg)


def get_state(model: nn.Module) -> OrderedDict[str, np.ndarray]:
    """The model's ``state_dict`` (parameters and buffers) as named float32 numpy arrays."""
    return OrderedDict(
        (name, tensor.detach().to("cpu", torch.float32).numpy().copy())
        for name, tensor in model.state_dict().items()
    )


def set_state(model: nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Load named arrays (from :func:`get_state`) into ``model``, each cast to its dtype.

    Raises
    ------
    ConfigError
        names or shapes differ from the model's (server and site built different models).
    """
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(arrays)), sorted(set(arrays) - set(own))
    if missing or extra:
        raise ConfigError(
            f"model weights do not match this model: missing {missing[:3]}, "
            f"unexpected {extra[:3]}; do the server and the site use the same model config?"
        )
    new = OrderedDict()
    for name, ref in own.items():
        value = np.asarray(arrays[name])
        if tuple(value.shape) != tuple(ref.shape):
            raise ConfigError(
                f"model weight {name!r} has shape {tuple(value.shape)}, expected "
                f"{tuple(ref.shape)}; do the server and the site use the same model config?"
            )
        new[name] = torch.as_tensor(value).to(device=ref.device, dtype=ref.dtype)
    model.load_state_dict(new)


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """The ``state_dict`` values (buffers included) in order, as float32 numpy arrays."""
    return list(get_state(model).values())


def set_weights(model: nn.Module, arrays: Sequence[np.ndarray]) -> None:
    """Load arrays from :func:`get_weights` (same order) into ``model``.

    Raises
    ------
    ConfigError
        the number of arrays or a shape differs from the model's.
    """
    names = list(model.state_dict())
    if len(arrays) != len(names):
        raise ConfigError(
            f"got {len(arrays)} weight arrays but this model has {len(names)}; "
            "do the server and the site use the same model config?"
        )
    set_state(model, OrderedDict(zip(names, arrays, strict=True)))


@torch.no_grad()
def fold_affine_into_head(model: SegNet, A: np.ndarray, b: np.ndarray) -> None:
    """Let the head see ``A g + b`` instead of ``g``, in place: ``W <- W A``,
    ``c <- W b + c`` (the head is 1x1x1, so a per-voxel affine map of the embeddings folds
    into it exactly). Used for the Bures-Wasserstein map at inference."""
    f = model.f
    w = f.weight.reshape(f.out_channels, -1).double()
    A_t = torch.as_tensor(np.asarray(A), dtype=torch.float64, device=w.device)
    b_t = torch.as_tensor(np.asarray(b), dtype=torch.float64, device=w.device)
    if A_t.shape != (w.shape[1], w.shape[1]) or b_t.shape != (w.shape[1],):
        raise ValueError(
            f"map A {tuple(A_t.shape)}, b {tuple(b_t.shape)} do not fit {w.shape[1]} features"
        )
    f.bias.copy_((w @ b_t + f.bias.double()).to(f.bias.dtype))
    f.weight.copy_((w @ A_t).reshape(f.weight.shape).to(f.weight.dtype))
