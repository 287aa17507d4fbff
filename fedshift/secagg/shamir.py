"""Shamir secret sharing of 32-byte secrets over the prime field GF(2**521 - 1).

Textbook Shamir (Shamir 1979): the secret is the constant term of a random polynomial of
degree ``t - 1``; share ``k`` is the polynomial's value at ``x = k`` (``k >= 1``). Any ``t``
shares give the secret back by Lagrange interpolation at 0; fewer reveal nothing about it.
The field is the Mersenne prime ``2**521 - 1``, larger than any 32-byte secret, so a
secret is one field element. Coefficients come from :mod:`secrets` (the operating
system's CSPRNG): cryptographic draws are never seeded from configuration.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

from fedshift.errors import SecureAggregationError

#: the field's prime modulus, the Mersenne prime 2**521 - 1
PRIME = 2**521 - 1
#: bytes of one share value (big-endian)
SHARE_BYTES = (PRIME.bit_length() + 7) // 8
#: bytes of a secret
SECRET_BYTES = 32


def split(secret: bytes, xs: Sequence[int], threshold: int) -> dict[int, bytes]:
    """Shares of ``secret`` at the points ``xs``, any ``threshold`` of which recover it.

    Parameters
    ----------
    secret
        32 bytes (an X25519 private key or a seed).
    xs
        Distinct share points, integers in ``[1, 2**32)``.
    threshold
        ``t``, with ``2 <= t <= len(xs)``.

    Returns
    -------
    dict
        ``{x: share}`` with each share ``SHARE_BYTES`` bytes (big-endian field element).
    """
    if len(secret) != SECRET_BYTES:
        raise SecureAggregationError(
            f"a shared secret must be {SECRET_BYTES} bytes, got {len(secret)}"
        )
    _check_points(xs)
    if not 2 <= threshold <= len(xs):
        raise SecureAggregationError(
            f"threshold must be in [2, {len(xs)}] for {len(xs)} shares, got {threshold}"
        )
    coeffs = [int.from_bytes(secret, "big")] + [
        secrets.randbelow(PRIME) for _ in range(threshold - 1)
    ]
    return {x: _eval(coeffs, x).to_bytes(SHARE_BYTES, "big") for x in xs}


def combine(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """The 32-byte secret from at least ``threshold`` shares ``{x: share}``.

    Uses the first ``threshold`` shares by ascending ``x``. Raises
    :class:`SecureAggregationError` when fewer are given, a share is malformed or the
    result is not a 32-byte secret (a sign of corrupt shares).
    """
    if len(shares) < threshold:
        raise SecureAggregationError(
            f"need {threshold} shares to recover a secret, got {len(shares)}"
        )
    xs = sorted(shares)[:threshold]
    _check_points(xs)
    ys = []
    for x in xs:
        if len(shares[x]) != SHARE_BYTES:
            raise SecureAggregationError(
                f"share at x={x} must be {SHARE_BYTES} bytes, got {len(shares[x])}"
            )
        ys.append(int.from_bytes(shares[x], "big"))
    secret = _interpolate_at_zero(xs, ys)
    if secret >= 2 ** (8 * SECRET_BYTES):
        raise SecureAggregationError("recovered value is not a 32-byte secret: a share is corrupt")
    return secret.to_bytes(SECRET_BYTES, "big")


def _check_points(xs: Sequence[int]) -> None:
    if len(set(xs)) != len(xs) or any(not 1 <= x < 2**32 for x in xs):
        raise SecureAggregationError(
            f"share points must be distinct ints in [1, 2**32), got {list(xs)}"
        )


def _eval(coeffs: Sequence[int], x: int) -> int:
    """Horner evaluation of ``sum(c_k x**k)`` modulo :data:`PRIME`."""
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % PRIME
    return acc


def _interpolate_at_zero(xs: Sequence[int], ys: Sequence[int]) -> int:
    """Lagrange interpolation at 0 of the points ``(xs[k], ys[k])`` modulo :data:`PRIME`."""
    total = 0
    for k, (xk, yk) in enumerate(zip(xs, ys, strict=True)):
        num, den = 1, 1
        for m, xm in enumerate(xs):
            if m != k:
                num = num * xm % PRIME
                den = den * (xm - xk) % PRIME
        total = (total + yk * num * pow(den, -1, PRIME)) % PRIME
    return total
