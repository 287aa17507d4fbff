"""Secure aggregation of site statistics: the public API and a one-process driver.

The protocol is SecAgg (Bonawitz et al., CCS 2017) for an honest-but-curious
coordinator, built from ``cryptography`` primitives (see :mod:`fedshift.secagg`):

0. each site makes two fresh X25519 key pairs; the coordinator broadcasts the public keys;
1. each site Shamir-shares its mask private key and a self-mask seed (threshold
   ``t > n/2``) and sends each peer its shares encrypted with ChaCha20-Poly1305 under a
   key from X25519 + HKDF-SHA256; the coordinator relays ciphertexts it cannot read;
2. each site sends its vector clipped, fixed-point encoded in the ring of integers modulo
   2**64, plus a self mask and pairwise masks (ChaCha20 keystreams) that cancel in the sum;
3. the survivors return shares of each survivor's seed and of each dropped site's mask
   key; the coordinator removes the remaining masks and decodes the sum.

The coordinator learns the sum over at least three sites and the total count of clipped
values, nothing per site. Sites and coordinator are plain objects
(:class:`SiteSession`, :class:`AggregatorSession`) whose messages convert to Flower
records; :func:`secure_sum` runs a whole round in one process (tests, benchmarks).

Keys, seeds and Shamir coefficients come from the operating system's CSPRNG, never from
a seeded generator: they are the one exception to the project's seeded-randomness rule.

Not covered: a coordinator that actively lies (substitutes public keys; Bonawitz's
signatures and consistency round are left out; TLS and node authentication sit below)
and sites that send corrupt shares or out-of-range inputs on purpose.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedshift.errors import SecureAggregationError
from fedshift.secagg.aggregator import AggregatorSession, SecureSumResult
from fedshift.secagg.config import MIN_SITES, SecAggConfig, threshold_for
from fedshift.secagg.fixedpoint import decode, encode
from fedshift.secagg.messages import (
    AdvertiseKeys,
    KeyDirectory,
    M,
    MaskedInput,
    Message,
    ShareInbox,
    SharePackets,
    UnmaskRequest,
    UnmaskResponse,
)
from fedshift.secagg.site import SiteSession

__all__ = [
    "MIN_SITES",
    "AdvertiseKeys",
    "AggregatorSession",
    "KeyDirectory",
    "MaskedInput",
    "Message",
    "SecAggConfig",
    "SecureSumResult",
    "ShareInbox",
    "SharePackets",
    "SimulatedRound",
    "SiteSession",
    "UnmaskRequest",
    "UnmaskResponse",
    "decode",
    "encode",
    "secure_sum",
    "simulate_round",
    "threshold_for",
]


@dataclass(frozen=True)
class SimulatedRound:
    """A round run in one process.

    Attributes
    ----------
    result
        What the coordinator learned.
    bytes_sent
        Payload bytes each site sent over the whole round (:meth:`Message.nbytes`).
    """

    result: SecureSumResult
    bytes_sent: dict[int, int]


def secure_sum(
    vectors: Sequence[np.ndarray] | Mapping[int, np.ndarray],
    *,
    config: SecAggConfig | None = None,
    round_id: str = "local",
    dropped_before_shares: Collection[int] = (),
    dropped_after_keys: Collection[int] = (),
    dropped_after_input: Collection[int] = (),
) -> SecureSumResult:
    """The secure sum of ``vectors``, running every site and the coordinator here.

    See :func:`simulate_round` for the parameters.
    """
    return simulate_round(
        vectors,
        config=config,
        round_id=round_id,
        dropped_before_shares=dropped_before_shares,
        dropped_after_keys=dropped_after_keys,
        dropped_after_input=dropped_after_input,
    ).result


def simulate_round(
    vectors: Sequence[np.ndarray] | Mapping[int, np.ndarray],
    *,
    config: SecAggConfig | None = None,
    round_id: str = "local",
    dropped_before_shares: Collection[int] = (),
    dropped_after_keys: Collection[int] = (),
    dropped_after_input: Collection[int] = (),
) -> SimulatedRound:
    """Run one round in this process; every message goes through its dict form.

    Parameters
    ----------
    vectors
        ``(L,)`` float vectors, one per site: a sequence (site ids 0, 1, ...) or
        ``{site id: vector}``.
    config
        Shared settings (default :class:`SecAggConfig`).
    round_id
        Names the round.
    dropped_before_shares
        Sites that advertise keys, then vanish (they are left out of every mask).
    dropped_after_keys
        Sites that advertise and share their keys, then send no vector (their pairwise
        masks are removed with their Shamir-shared mask keys).
    dropped_after_input
        Sites that send their vector, then do not answer the unmask request.
    """
    cfg = config or SecAggConfig()
    inputs = dict(vectors) if isinstance(vectors, Mapping) else dict(enumerate(vectors))
    drops = [set(dropped_before_shares), set(dropped_after_keys), set(dropped_after_input)]
    _check_drops(set(inputs), drops)
    sites = {s: SiteSession(s, round_id, cfg) for s in inputs}
    agg = AggregatorSession(round_id, cfg)
    sent = dict.fromkeys(inputs, 0)

    def deliver(site: int, msg: M) -> M:
        sent[site] += msg.nbytes()
        return _wire(msg)

    for s, session in sites.items():
        agg.receive_keys(deliver(s, session.advertise()))
    directory = _wire(agg.directory())
    active = [s for s in sites if s not in drops[0]]
    for s in active:
        agg.receive_shares(deliver(s, sites[s].share_keys(directory)))
    inboxes = agg.inboxes()
    active = [s for s in active if s not in drops[1]]
    for s in active:
        agg.receive_masked(deliver(s, sites[s].masked_input(_wire(inboxes[s]), inputs[s])))
    request = _wire(agg.unmask_request())
    for s in active:
        if s not in drops[2]:
            agg.receive_unmask(deliver(s, sites[s].unmask(request)))
    return SimulatedRound(result=agg.result(), bytes_sent=sent)


def _wire(msg: M) -> M:
    """``msg`` after a round trip through its dict (record) form."""
    return type(msg).from_dict(msg.to_dict())


def _check_drops(ids: set[int], drops: list[set[int]]) -> None:
    for d in drops:
        if not d <= ids:
            raise SecureAggregationError(
                f"dropped sites {sorted(d - ids)} are not among {sorted(ids)}"
            )
    if sum(len(d) for d in drops) != len(set().union(*drops)):
        raise SecureAggregationError("a site can drop at one step only")
