"""A site's side of one secure-aggregation round (SecAgg, Bonawitz et al. 2017).

A :class:`SiteSession` lives for one round: it makes fresh X25519 key pairs and a fresh
self-mask seed, answers the coordinator's four requests in order, and refuses a request
out of order, from another round, or inconsistent with what it saw before. Its vector
leaves it only masked::

    y_i = encode(x_i) + PRG(b_i) + sum_{j > i} PRG(s_ij) - sum_{j < i} PRG(s_ij)  mod 2**64

where ``b_i`` is the self-mask seed, ``s_ij`` the key both sites derive from X25519 of
their mask keys, ``PRG`` a ChaCha20 keystream and ``j`` runs over the sites that shared
their keys. The last word of ``y_i`` carries the site's count of clipped values, so the
coordinator only learns the total.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedshift.errors import SecureAggregationError
from fedshift.secagg import channel, shamir
from fedshift.secagg.config import SecAggConfig, threshold_for
from fedshift.secagg.fixedpoint import encode
from fedshift.secagg.messages import (
    AdvertiseKeys,
    KeyDirectory,
    MaskedInput,
    ShareInbox,
    SharePackets,
    UnmaskRequest,
    UnmaskResponse,
)

_STAGES = ("new", "advertised", "shared", "masked", "done")


def pair_mask_key(
    private: channel.X25519PrivateKey, peer_public: bytes, me: int, peer: int, round_id: str
) -> bytes:
    """The ChaCha20 key of the pairwise mask of sites ``me`` and ``peer`` in a round."""
    secret = channel.agree(private, peer_public, peer)
    return channel.derive_key(secret, "pair-mask", round_id, min(me, peer), max(me, peer))


def self_mask_key(seed: bytes, site: int, round_id: str) -> bytes:
    """The ChaCha20 key of site ``site``'s self mask, from its 32-byte seed."""
    return channel.derive_key(seed, "self-mask", round_id, site)


class SiteSession:
    """One site in one secure-aggregation round.

    Parameters
    ----------
    site
        This site's id (its Flower node id), an int in ``[0, 2**64)``.
    round_id
        Names the round (e.g. ``"<run>/<server round>/stats"``); bound into every key
        derivation and ciphertext, so nothing carries over between rounds.
    config
        Must equal the coordinator's settings; the key directory is checked against it.

    Attributes
    ----------
    n_clipped
        How many of this site's values were clipped (local only; ``None`` before
        :meth:`masked_input`).
    """

    def __init__(self, site: int, round_id: str, config: SecAggConfig | None = None) -> None:
        self.site = int(site)
        self.round_id = round_id
        self.config = config or SecAggConfig()
        self.n_clipped: int | None = None
        self._channel_key = channel.new_private_key()
        self._mask_key = channel.new_private_key()
        self._seed = os.urandom(shamir.SECRET_BYTES)
        self._stage = "new"
        self._directory: KeyDirectory | None = None
        self._channels: dict[int, bytes] = {}  # peer -> ChaCha20-Poly1305 key
        self._held: dict[int, tuple[bytes, bytes]] = {}  # owner -> (key share, seed share)
        self._members: frozenset[int] = frozenset()  # sites that shared keys

    # ------------------------------------------------------------------ steps

    def advertise(self) -> AdvertiseKeys:
        """Step 0: this site's two public keys."""
        self._advance("new")
        return AdvertiseKeys(
            round_id=self.round_id,
            site=self.site,
            channel_key=channel.public_bytes(self._channel_key),
            mask_key=channel.public_bytes(self._mask_key),
        )

    def share_keys(self, directory: KeyDirectory) -> SharePackets:
        """Step 1: Shamir-share the mask key and seed, one ciphertext per peer."""
        self._advance("advertised")
        self._check_directory(directory)
        self._directory = directory
        xs = [k + 1 for k in range(len(directory.sites))]
        t = directory.threshold
        key_shares = shamir.split(channel.private_bytes(self._mask_key), xs, t)
        seed_shares = shamir.split(self._seed, xs, t)
        recipients, ciphertexts = [], []
        for k, peer in enumerate(directory.sites):
            plaintext = key_shares[k + 1] + seed_shares[k + 1]
            if peer == self.site:
                self._held[peer] = (key_shares[k + 1], seed_shares[k + 1])
                continue
            ad = channel.associated_data("share", self.round_id, self.site, peer)
            recipients.append(peer)
            ciphertexts.append(channel.seal(self._channel_to(peer), plaintext, ad))
        return SharePackets(self.round_id, self.site, tuple(recipients), tuple(ciphertexts))

    def masked_input(self, inbox: ShareInbox, x: np.ndarray) -> MaskedInput:
        """Step 2: keep the peers' shares, send ``x`` encoded and masked.

        Parameters
        ----------
        inbox
            The shares addressed to this site; its senders are the round's other members.
        x
            ``(L,)`` floats, this site's statistics (leave the site only masked).
        """
        self._advance("shared")
        self._open_inbox(inbox)
        encoded = encode(x, self.config)
        self.n_clipped = encoded.n_clipped
        y = np.empty(encoded.values.size + 1, dtype=np.uint64)
        y[:-1] = encoded.values
        y[-1] = encoded.n_clipped
        streams = channel.MaskStreams(y.size)
        streams.add(y, self_mask_key(self._seed, self.site, self.round_id))
        directory = self._dir()
        for peer, peer_key in zip(directory.sites, directory.mask_keys, strict=True):
            if peer != self.site and peer in self._members:
                key = pair_mask_key(self._mask_key, peer_key, self.site, peer, self.round_id)
                streams.add(y, key, 1 if self.site < peer else -1)
        return MaskedInput(self.round_id, self.site, y)

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Step 3: shares of survivors' seeds and of dropped sites' mask keys (once)."""
        self._advance("masked")
        self._check_request(request)
        return UnmaskResponse(
            round_id=self.round_id,
            site=self.site,
            seed_owners=request.survivors,
            seed_shares=tuple(self._held[s][1] for s in request.survivors),
            key_owners=request.dropped,
            key_shares=tuple(self._held[d][0] for d in request.dropped),
        )

    # ------------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        """The session as a flat dict of ConfigRecord values, to keep between messages.

        Holds the site's private keys, seed and peers' shares: it must stay at the site
        (e.g. in Flower's node-local ``Context.state``), never be sent or logged.
        """
        cfg = self.config
        state: dict[str, Any] = {
            "site": self.site,
            "round-id": self.round_id,
            "stage": self._stage,
            "config": [cfg.frac_bits, cfg.min_sites, cfg.threshold or 0],
            "clip": float(cfg.clip),
            "n-clipped": -1 if self.n_clipped is None else self.n_clipped,
            "secrets": [
                channel.private_bytes(self._channel_key),
                channel.private_bytes(self._mask_key),
                self._seed,
            ],
            "held-owners": list(self._held),
            "held-key-shares": [v[0] for v in self._held.values()],
            "held-seed-shares": [v[1] for v in self._held.values()],
            "members": sorted(self._members),
        }
        if self._directory is not None:
            state.update({f"directory.{k}": v for k, v in self._directory.to_dict().items()})
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SiteSession:
        """The session :meth:`to_state` saved."""
        frac_bits, min_sites, threshold = state["config"]
        cfg = SecAggConfig(frac_bits, state["clip"], min_sites, threshold or None)
        session = cls(state["site"], state["round-id"], cfg)
        channel_key, mask_key, session._seed = state["secrets"]
        session._channel_key = channel.load_private_key(channel_key)
        session._mask_key = channel.load_private_key(mask_key)
        session._stage = state["stage"]
        session.n_clipped = None if state["n-clipped"] < 0 else state["n-clipped"]
        shares = zip(state["held-key-shares"], state["held-seed-shares"], strict=True)
        session._held = dict(zip(state["held-owners"], shares, strict=True))
        session._members = frozenset(state["members"])
        prefix = "directory."
        if any(k.startswith(prefix) for k in state):
            d = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            session._directory = KeyDirectory.from_dict(d)
        return session

    # ------------------------------------------------------------------ checks

    def _advance(self, expected: str) -> None:
        if self._stage != expected:
            raise SecureAggregationError(
                f"site {self.site}, round {self.round_id!r}: step out of order "
                f"(session is {self._stage!r}, the step needs {expected!r})"
            )
        self._stage = _STAGES[_STAGES.index(expected) + 1]

    def _check_round(self, round_id: str, what: str) -> None:
        if round_id != self.round_id:
            raise SecureAggregationError(
                f"site {self.site}: {what} is for round {round_id!r}, not {self.round_id!r}"
            )

    def _check_directory(self, d: KeyDirectory) -> None:
        self._check_round(d.round_id, "key directory")
        cfg = self.config
        if (d.frac_bits, d.clip, d.min_sites) != (cfg.frac_bits, cfg.clip, cfg.min_sites):
            raise SecureAggregationError(
                f"site {self.site}: key directory settings (frac_bits={d.frac_bits}, "
                f"clip={d.clip}, min_sites={d.min_sites}) differ from this site's {cfg}"
            )
        n = len(d.sites)
        if (
            list(d.sites) != sorted(set(d.sites))
            or len(d.channel_keys) != n
            or len(d.mask_keys) != n
        ):
            raise SecureAggregationError(
                f"site {self.site}: key directory must list unique sites in ascending order, "
                f"one key of each kind per site; got sites {list(d.sites)}"
            )
        cfg.check_sites(n, "sites in the key directory")
        if d.threshold != threshold_for(n, cfg):
            raise SecureAggregationError(
                f"site {self.site}: key directory threshold {d.threshold} is not "
                f"{threshold_for(n, cfg)} for {n} sites"
            )
        if len(set(d.channel_keys) | set(d.mask_keys)) != 2 * n:
            raise SecureAggregationError(f"site {self.site}: key directory repeats a public key")
        k = d.sites.index(self.site) if self.site in d.sites else None
        mine = None if k is None else (d.channel_keys[k], d.mask_keys[k])
        if mine != (channel.public_bytes(self._channel_key), channel.public_bytes(self._mask_key)):
            raise SecureAggregationError(
                f"site {self.site}: key directory does not hold this site's own keys"
            )

    def _dir(self) -> KeyDirectory:
        if self._directory is None:
            raise SecureAggregationError(f"site {self.site}: no key directory yet")
        return self._directory

    def _channel_to(self, peer: int) -> bytes:
        if peer not in self._channels:
            d = self._dir()
            secret = channel.agree(self._channel_key, d.channel_keys[d.sites.index(peer)], peer)
            lo, hi = min(self.site, peer), max(self.site, peer)
            self._channels[peer] = channel.derive_key(secret, "channel", self.round_id, lo, hi)
        return self._channels[peer]

    def _open_inbox(self, inbox: ShareInbox) -> None:
        self._check_round(inbox.round_id, "share inbox")
        d = self._dir()
        senders = set(inbox.senders)
        if (
            inbox.recipient != self.site
            or len(senders) != len(inbox.senders)
            or len(inbox.ciphertexts) != len(inbox.senders)
            or self.site in senders
            or not senders <= set(d.sites)
        ):
            raise SecureAggregationError(
                f"site {self.site}: malformed share inbox (recipient {inbox.recipient}, "
                f"senders {list(inbox.senders)}, {len(inbox.ciphertexts)} ciphertexts)"
            )
        members = senders | {self.site}
        self.config.check_sites(len(members), "sites that shared keys")
        for sender, sealed in zip(inbox.senders, inbox.ciphertexts, strict=True):
            ad = channel.associated_data("share", self.round_id, sender, self.site)
            plain = channel.open_sealed(self._channel_to(sender), sealed, ad, sender, self.site)
            if len(plain) != 2 * shamir.SHARE_BYTES:
                raise SecureAggregationError(
                    f"shares from site {sender} to site {self.site} have {len(plain)} bytes"
                )
            self._held[sender] = (plain[: shamir.SHARE_BYTES], plain[shamir.SHARE_BYTES :])
        self._members = frozenset(members)

    def _check_request(self, r: UnmaskRequest) -> None:
        self._check_round(r.round_id, "unmask request")
        survivors, dropped = set(r.survivors), set(r.dropped)
        if (
            len(survivors) != len(r.survivors)
            or len(dropped) != len(r.dropped)
            or survivors & dropped
            or survivors | dropped != self._members
            or self.site not in survivors
        ):
            raise SecureAggregationError(
                f"site {self.site}: unmask request (survivors {list(r.survivors)}, dropped "
                f"{list(r.dropped)}) does not split this round's members "
                f"{sorted(self._members)} with this site among the survivors"
            )
        self.config.check_sites(len(survivors), "surviving sites")
        if len(survivors) < self._dir().threshold:
            raise SecureAggregationError(
                f"site {self.site}: {len(survivors)} survivors are fewer than the threshold "
                f"{self._dir().threshold}"
            )
