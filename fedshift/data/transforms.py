"""MONAI dict transforms that read site files through FedShift's safe NIfTI reader."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from fedshift.data.nifti import read_volume


def _nifti_pixdim(zooms: Sequence[float]) -> np.ndarray:
    """Voxel sizes in NIfTI's 8-value ``pixdim`` form, which MONAI's spatial transforms
    update in place (a tuple would make them fail)."""
    values = [float(z) for z in zooms][:7]
    return np.asarray([1.0, *values] + [1.0] * (7 - len(values)))


class LoadVolumed(MapTransform):
    """Load NIfTI paths under ``keys`` into channel-first ``MetaTensor`` (1, X, Y, Z) in RAS+.

    Labels (keys listed in ``label_keys``) are rounded to integers; images are float32.
    A missing optional key is skipped when ``allow_missing_keys`` is true.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_keys: Sequence[str] = ("label",),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_keys = set(label_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = dict(data)
        for key in self.key_iterator(out):
            vol = read_volume(out[key])
            array = vol.as_float32()
            if key in self.label_keys:
                array = np.rint(array).astype(np.float32)
            out[key] = MetaTensor(
                torch.from_numpy(np.ascontiguousarray(array[None])),
                affine=torch.as_tensor(vol.affine, dtype=torch.float64),
                meta={"filename_or_obj": str(vol.path), "pixdim": _nifti_pixdim(vol.zooms)},
            )
        return out
