"""Settings of one secure-aggregation round, shared by the sites and the coordinator."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedshift.errors import SecureAggregationError

#: the coordinator never learns a sum over fewer sites than this
MIN_SITES = 3
#: ring of the masked values: integers modulo 2**RING_BITS (numpy uint64 arithmetic)
RING_BITS = 64


@dataclass(frozen=True)
class SecAggConfig:
    """Settings of a secure-aggregation round.

    Parameters
    ----------
    frac_bits
        Fixed-point scale: a float ``x`` is sent as ``round(x * 2**frac_bits)``. The
        rounding error of a sum over ``n`` sites is at most ``n * 2**-(frac_bits + 1)``
        per element (``n * 3e-8`` for the default 24).
    clip
        Inputs are clipped to ``[-clip, clip]`` before encoding; how many values were
        clipped is itself summed securely and reported with the result. The default
        ``2**30`` (about 1e9) with ``frac_bits=24`` leaves room for 511 sites.
    min_sites
        The smallest number of sites whose inputs may be summed (at least 3).
    threshold
        Shamir threshold ``t``: the number of surviving sites whose shares suffice to
        unmask. ``None`` means ``n // 2 + 1`` for ``n`` sites that advertised keys. It must
        be more than ``n / 2`` (see :func:`threshold_for`).
    """

    frac_bits: int = 24
    clip: float = 2.0**30
    min_sites: int = MIN_SITES
    threshold: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits <= 52:
            raise SecureAggregationError(
                f"frac_bits must be an int in [0, 52], got {self.frac_bits!r}"
            )
        if not (isinstance(self.clip, (int, float)) and math.isfinite(self.clip) and self.clip > 0):
            raise SecureAggregationError(f"clip must be a finite number > 0, got {self.clip!r}")
        if not isinstance(self.min_sites, int) or self.min_sites < MIN_SITES:
            raise SecureAggregationError(
                f"min_sites must be an int >= {MIN_SITES}, got {self.min_sites!r}"
            )
        if self.threshold is not None and (
            not isinstance(self.threshold, int) or self.threshold < 2
        ):
            raise SecureAggregationError(
                f"threshold must be None or an int >= 2, got {self.threshold!r}"
            )

    def max_sites(self) -> int:
        """The most sites whose clipped inputs can be summed without wrapping the ring.

        Each encoded value lies in ``[-clip * 2**frac_bits, clip * 2**frac_bits]``; the sum
        of ``n`` of them must stay inside the signed range ``(-2**63, 2**63)``.
        """
        per_site = math.ceil(self.clip * 2.0**self.frac_bits)
        return (2 ** (RING_BITS - 1) - 1) // per_site

    def check_sites(self, n_sites: int, what: str = "sites") -> None:
        """Raise unless ``n_sites`` is enough for privacy and few enough for the ring."""
        if n_sites < self.min_sites:
            raise SecureAggregationError(
                f"secure aggregation needs at least {self.min_sites} {what}, got {n_sites}"
            )
        if n_sites > self.max_sites():
            raise SecureAggregationError(
                f"{n_sites} {what} could overflow the 64-bit ring with clip={self.clip!r} and "
                f"frac_bits={self.frac_bits}: at most {self.max_sites()} fit "
                "(lower clip or frac_bits)"
            )


def threshold_for(n_sites: int, config: SecAggConfig) -> int:
    """The Shamir threshold for a round whose key directory lists ``n_sites`` sites.

    The threshold must exceed ``n_sites / 2``: every site answers one unmask request per
    round with either its share of a peer's self-mask seed or of its mask key, never both,
    so a coordinator that tells two halves of the federation different stories about who
    dropped cannot collect ``t`` shares of both secrets of one site.
    """
    t = n_sites // 2 + 1 if config.threshold is None else config.threshold
    if not (n_sites // 2 < t <= n_sites and t >= 2):
        raise SecureAggregationError(
            f"threshold must be in ({n_sites / 2:g}, {n_sites}] and >= 2 "
            f"for {n_sites} sites, got {t}"
        )
    return t
