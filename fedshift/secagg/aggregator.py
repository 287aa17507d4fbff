"""The coordinator's side of one secure-aggregation round.

The coordinator relays public keys and ciphertexts it cannot read, adds up the masked
inputs, and removes the masks with the shares the surviving sites return: the self masks
of every survivor, and the pairwise masks between survivors and the sites that dropped
after sharing their keys. It learns the sum over the survivors (at least ``min_sites``
of them) and the total count of clipped values, nothing per site.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from fedshift.errors import SecureAggregationError
from fedshift.secagg import channel, shamir
from fedshift.secagg.config import SecAggConfig, threshold_for
from fedshift.secagg.fixedpoint import decode
from fedshift.secagg.messages import (
    AdvertiseKeys,
    KeyDirectory,
    MaskedInput,
    ShareInbox,
    SharePackets,
    UnmaskRequest,
    UnmaskResponse,
)
from fedshift.secagg.site import pair_mask_key, self_mask_key


@dataclass(frozen=True)
class SecureSumResult:
    """What the coordinator learns from a round.

    Attributes
    ----------
    total
        ``(L,)`` float64, the sum of the surviving sites' vectors (fixed-point rounded).
    sites
        Ids of the sites whose vectors are in ``total``, ascending.
    dropped
        Ids of the sites that shared keys but sent no vector.
    n_clipped
        Total number of values the sites clipped to ``[-clip, clip]`` (0 if none).
    """

    total: np.ndarray
    sites: tuple[int, ...]
    dropped: tuple[int, ...]
    n_clipped: int


class AggregatorSession:
    """The coordinator in one secure-aggregation round.

    Call, in order: :meth:`receive_keys` per site, :meth:`directory`;
    :meth:`receive_shares` per site, :meth:`inboxes`; :meth:`receive_masked` per site,
    :meth:`unmask_request`; :meth:`receive_unmask` per site, :meth:`result`. Messages from
    sites that miss a step are simply never received: they count as dropped.
    """

    def __init__(self, round_id: str, config: SecAggConfig | None = None) -> None:
        self.round_id = round_id
        self.config = config or SecAggConfig()
        self._stage = "keys"
        self._keys: dict[int, AdvertiseKeys] = {}
        self._directory: KeyDirectory | None = None
        self._packets: dict[int, SharePackets] = {}
        self._inputs: set[int] = set()
        self._total: np.ndarray | None = None
        self._request: UnmaskRequest | None = None
        self._responses: dict[int, UnmaskResponse] = {}

    # ------------------------------------------------------------------ step 0

    def receive_keys(self, msg: AdvertiseKeys) -> None:
        """Record a site's public keys."""
        self._expect("keys", msg.round_id, msg.site, self._keys)
        if len(msg.channel_key) != channel.KEY_BYTES or len(msg.mask_key) != channel.KEY_BYTES:
            raise SecureAggregationError(f"site {msg.site}: public keys must be 32 bytes each")
        self._keys[msg.site] = msg

    def directory(self) -> KeyDirectory:
        """Close step 0: the key directory to broadcast to every advertising site."""
        self._close("keys", "shares")
        sites = tuple(sorted(self._keys))
        self.config.check_sites(len(sites), "sites advertising keys")
        cfg = self.config
        self._directory = KeyDirectory(
            round_id=self.round_id,
            threshold=threshold_for(len(sites), cfg),
            frac_bits=cfg.frac_bits,
            clip=float(cfg.clip),
            min_sites=cfg.min_sites,
            sites=sites,
            channel_keys=tuple(self._keys[s].channel_key for s in sites),
            mask_keys=tuple(self._keys[s].mask_key for s in sites),
        )
        return self._directory

    # ------------------------------------------------------------------ step 1

    def receive_shares(self, msg: SharePackets) -> None:
        """Record a site's encrypted shares (to relay, never to read)."""
        self._expect("shares", msg.round_id, msg.sender, self._packets)
        others = [s for s in self._dir().sites if s != msg.sender]
        if list(msg.recipients) != others or len(msg.ciphertexts) != len(others):
            raise SecureAggregationError(
                f"site {msg.sender}: share packets must address every other site once, in "
                f"directory order {others}; got {list(msg.recipients)}"
            )
        self._packets[msg.sender] = msg

    def inboxes(self) -> dict[int, ShareInbox]:
        """Close step 1: for each site that shared, the ciphertexts addressed to it."""
        self._close("shares", "inputs")
        members = sorted(self._packets)
        self.config.check_sites(len(members), "sites that shared keys")
        out = {}
        for r in members:
            senders = [s for s in members if s != r]
            cts = [
                self._packets[s].ciphertexts[self._packets[s].recipients.index(r)] for s in senders
            ]
            out[r] = ShareInbox(self.round_id, r, tuple(senders), tuple(cts))
        return out

    # ------------------------------------------------------------------ step 2

    def receive_masked(self, msg: MaskedInput) -> None:
        """Add a site's masked vector to the running sum (modulo 2**64)."""
        self._expect("inputs", msg.round_id, msg.site, self._inputs)
        if msg.site not in self._packets:
            raise SecureAggregationError(f"site {msg.site} sent a vector without sharing keys")
        if self._total is None:
            self._total = msg.values.copy()
        elif msg.values.shape != self._total.shape:
            raise SecureAggregationError(
                f"site {msg.site} sent {msg.values.size} values, earlier sites {self._total.size}"
            )
        else:
            self._total += msg.values
        self._inputs.add(msg.site)

    def unmask_request(self) -> UnmaskRequest:
        """Close step 2: tell the survivors who survived and who dropped."""
        self._close("inputs", "unmask")
        t = self._dir().threshold
        survivors = tuple(sorted(self._inputs))
        self.config.check_sites(len(survivors), "sites that sent masked vectors")
        if len(survivors) < t:
            raise SecureAggregationError(
                f"{len(survivors)} sites sent masked vectors, fewer than the threshold {t}"
            )
        dropped = tuple(s for s in sorted(self._packets) if s not in self._inputs)
        self._request = UnmaskRequest(self.round_id, survivors, dropped)
        return self._request

    # ------------------------------------------------------------------ step 3

    def receive_unmask(self, msg: UnmaskResponse) -> None:
        """Record a survivor's shares."""
        self._expect("unmask", msg.round_id, msg.site, self._responses)
        r = self._request
        if r is None or msg.site not in r.survivors:
            raise SecureAggregationError(f"site {msg.site} is not a survivor of this round")
        sizes = {len(s) for s in msg.seed_shares + msg.key_shares}
        if (
            msg.seed_owners != r.survivors
            or msg.key_owners != r.dropped
            or len(msg.seed_shares) != len(r.survivors)
            or len(msg.key_shares) != len(r.dropped)
            or not sizes <= {shamir.SHARE_BYTES}
        ):
            raise SecureAggregationError(f"site {msg.site}: unmask response does not match request")
        self._responses[msg.site] = msg

    def result(self) -> SecureSumResult:
        """Close step 3: remove every mask and decode the sum."""
        self._close("unmask", "done")
        d, r = self._dir(), self._request
        if r is None or self._total is None:
            raise SecureAggregationError(f"round {self.round_id!r}: no unmask request yet")
        if len(self._responses) < d.threshold:
            raise SecureAggregationError(
                f"round {self.round_id!r}: {len(self._responses)} sites answered the unmask "
                f"request, fewer than the threshold {d.threshold}: the sum cannot be unmasked"
            )
        total = self._total.copy()
        streams = channel.MaskStreams(total.size)
        for k, site in enumerate(r.survivors):
            seed = self._recover(site, k, seed=True)
            streams.add(total, self_mask_key(seed, site, self.round_id), -1)
        for k, gone in enumerate(r.dropped):
            raw_key = self._recover(gone, k, seed=False)
            self._remove_pair_masks(total, streams, gone, raw_key, r.survivors)
        return SecureSumResult(
            total=decode(total[:-1], self.config),
            sites=r.survivors,
            dropped=r.dropped,
            n_clipped=int(total[-1]),
        )

    # ------------------------------------------------------------------ helpers

    def _remove_pair_masks(
        self,
        total: np.ndarray,
        streams: channel.MaskStreams,
        gone: int,
        raw_key: bytes,
        survivors: tuple[int, ...],
    ) -> None:
        """Undo, in place, the pairwise masks ``survivors`` applied with dropped ``gone``."""
        d = self._dir()
        private = channel.load_private_key(raw_key)
        if channel.public_bytes(private) != d.mask_keys[d.sites.index(gone)]:
            raise SecureAggregationError(
                f"recovered mask key of dropped site {gone} does not match its public key: "
                "a share is corrupt"
            )
        for site in survivors:
            key = pair_mask_key(
                private, d.mask_keys[d.sites.index(site)], gone, site, self.round_id
            )
            streams.add(total, key, -1 if site < gone else 1)  # survivor added it if site < gone

    def _recover(self, owner: int, k: int, seed: bool) -> bytes:
        """Combine the responders' shares of ``owner``'s seed (or mask key)."""
        d = self._dir()
        shares = {
            d.sites.index(site) + 1: (m.seed_shares if seed else m.key_shares)[k]
            for site, m in self._responses.items()
        }
        try:
            return shamir.combine(shares, d.threshold)
        except SecureAggregationError as err:
            what = "self-mask seed" if seed else "mask key"
            raise SecureAggregationError(
                f"cannot recover the {what} of site {owner}: {err}"
            ) from err

    def _close(self, stage: str, following: str) -> None:
        """Move from ``stage`` to ``following``; a failed round stays failed."""
        if self._stage != stage:
            raise SecureAggregationError(
                f"round {self.round_id!r}: cannot close step {stage!r} during step {self._stage!r}"
            )
        self._stage = following

    def _expect(self, stage: str, round_id: str, site: int, seen: Collection[int]) -> None:
        if self._stage != stage:
            raise SecureAggregationError(
                f"round {self.round_id!r}: message from site {site} for step {stage!r} arrived "
                f"during step {self._stage!r}"
            )
        if round_id != self.round_id:
            raise SecureAggregationError(
                f"site {site}: message for round {round_id!r}, expected {self.round_id!r}"
            )
        if site in seen:
            raise SecureAggregationError(f"site {site} sent step {stage!r} twice")
        if stage != "keys" and site not in self._dir().sites:
            raise SecureAggregationError(f"site {site} is not in this round's key directory")

    def _dir(self) -> KeyDirectory:
        if self._directory is None:
            raise SecureAggregationError(f"round {self.round_id!r}: no key directory yet")
        return self._directory
