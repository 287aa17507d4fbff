"""Fixed-point encoding of float vectors into the ring of integers modulo 2**64.

A float ``x`` is clipped to ``[-clip, clip]``, scaled by ``2**frac_bits``, rounded to the
nearest integer and stored in two's complement as ``uint64``; numpy's ``uint64``
arithmetic then wraps modulo 2**64 for free. :meth:`SecAggConfig.check_sites` makes sure
that a sum over the round's sites stays inside the signed range, so decoding the sum is
exact up to the rounding of each input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedshift.errors import SecureAggregationError
from fedshift.secagg.config import SecAggConfig


@dataclass(frozen=True)
class Encoded:
    """A site's encoded vector (stays at the site until masked).

    Attributes
    ----------
    values
        ``(L,)`` ``uint64`` ring elements.
    n_clipped
        How many inputs were outside ``[-clip, clip]`` and clipped.
    """

    values: np.ndarray
    n_clipped: int


def check_vector(x: np.ndarray, name: str = "vector") -> np.ndarray:
    """``x`` as a 1-D float64 array; raise on another shape or non-finite values."""
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.size == 0:
        raise SecureAggregationError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise SecureAggregationError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    n_bad = int(np.count_nonzero(~np.isfinite(arr)))
    if n_bad:
        raise SecureAggregationError(f"{name} holds {n_bad} NaN or infinite values")
    return arr


def encode(x: np.ndarray, config: SecAggConfig) -> Encoded:
    """Clip, scale and round ``x`` into ``uint64`` ring elements.

    Parameters
    ----------
    x
        ``(L,)`` finite floats: one site's statistics (never leaves the site unmasked).
    config
        Round settings (``clip``, ``frac_bits``).
    """
    arr = check_vector(x)
    clipped = np.clip(arr, -config.clip, config.clip)
    n_clipped = int(np.count_nonzero(clipped != arr))
    scaled = np.rint(clipped * 2.0**config.frac_bits).astype(np.int64)
    return Encoded(values=scaled.view(np.uint64), n_clipped=n_clipped)


def decode(ring_sum: np.ndarray, config: SecAggConfig) -> np.ndarray:
    """Float64 values of a sum of encoded vectors (``uint64`` ring elements).

    The ``uint64`` words are read as two's-complement ``int64`` and divided by
    ``2**frac_bits``; exact as long as the true sum stayed inside ``(-2**63, 2**63)``.
    """
    ring = np.asarray(ring_sum)
    if ring.dtype != np.uint64:
        raise SecureAggregationError(f"ring values must be uint64, got dtype {ring.dtype}")
    return ring.view(np.int64).astype(np.float64) / 2.0**config.frac_bits
