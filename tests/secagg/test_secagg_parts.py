"""The parts of secure aggregation: Shamir sharing, fixed point, channel, messages."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from fedshift.errors import SecureAggregationError
from fedshift.secagg import channel, shamir
from fedshift.secagg.config import SecAggConfig, threshold_for
from fedshift.secagg.fixedpoint import decode, encode
from fedshift.secagg.messages import MaskedInput, SharePackets, UnmaskRequest

# ------------------------------------------------------------------ Shamir


def test_any_threshold_shares_recover_the_secret() -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, [1, 2, 3, 4, 5], threshold=3)
    assert all(len(s) == shamir.SHARE_BYTES for s in shares.values())
    for subset in itertools.combinations(shares, 3):
        assert shamir.combine({x: shares[x] for x in subset}, 3) == secret
    assert shamir.combine(shares, 3) == secret


def test_fewer_shares_than_the_threshold_are_refused_or_wrong() -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, [1, 2, 3, 4], threshold=3)
    with pytest.raises(SecureAggregationError, match="need 3 shares"):
        shamir.combine({1: shares[1], 2: shares[2]}, 3)
    with pytest.raises(SecureAggregationError, match="corrupt"):  # t - 1 shares say nothing
        shamir.combine({1: shares[1], 2: shares[2]}, 2)


def test_shares_are_fresh_and_arguments_checked() -> None:
    secret = bytes(32)
    assert shamir.split(secret, [1, 2, 3], 2)[1] != shamir.split(secret, [1, 2, 3], 2)[1]
    with pytest.raises(SecureAggregationError, match="must be 32 bytes, got 31"):
        shamir.split(bytes(31), [1, 2, 3], 2)
    with pytest.raises(SecureAggregationError, match="distinct ints"):
        shamir.split(secret, [0, 1, 2], 2)
    with pytest.raises(SecureAggregationError, match=r"threshold must be in \[2, 3\]"):
        shamir.split(secret, [1, 2, 3], 4)


# ------------------------------------------------------------------ fixed point


def test_fixed_point_round_trip_and_sums() -> None:
    cfg = SecAggConfig(frac_bits=24, clip=1e6)
    rng = np.random.default_rng(0)
    xs = [rng.normal(scale=1e3, size=1000) for _ in range(20)]
    for x in xs:
        np.testing.assert_allclose(decode(encode(x, cfg).values, cfg), x, rtol=0, atol=2.0**-25)
    ring = np.sum([encode(x, cfg).values for x in xs], axis=0, dtype=np.uint64)
    np.testing.assert_allclose(decode(ring, cfg), np.sum(xs, axis=0), rtol=0, atol=20 * 2.0**-25)


def test_encoding_clips_counts_and_refuses_non_finite_values() -> None:
    cfg = SecAggConfig(clip=2.0)
    enc = encode(np.array([1.0, 3.0, -5.0, -2.0]), cfg)
    assert enc.n_clipped == 2
    np.testing.assert_array_equal(decode(enc.values, cfg), [1.0, 2.0, -2.0, -2.0])
    with pytest.raises(SecureAggregationError, match="2 NaN or infinite"):
        encode(np.array([np.nan, 1.0, np.inf]), cfg)
    with pytest.raises(SecureAggregationError, match=r"1-D array, got shape \(2, 2\)"):
        encode(np.zeros((2, 2)), cfg)


def test_config_and_threshold_checks() -> None:
    assert threshold_for(3, SecAggConfig()) == 2
    assert threshold_for(20, SecAggConfig()) == 11
    with pytest.raises(SecureAggregationError, match=r"threshold must be in \(5, 10\]"):
        threshold_for(10, SecAggConfig(threshold=5))
    with pytest.raises(SecureAggregationError, match="clip must be a finite number > 0, got -1"):
        SecAggConfig(clip=-1)
    assert SecAggConfig().max_sites() >= 100


# ------------------------------------------------------------------ channel


def test_seal_round_trip_and_every_tampered_byte_is_refused() -> None:
    key = os.urandom(32)
    ad = channel.associated_data("share", "r", 1, 2)
    sealed = channel.seal(key, b"shares", ad)
    assert channel.open_sealed(key, sealed, ad, 1, 2) == b"shares"
    for k in range(len(sealed)):
        bad = bytearray(sealed)
        bad[k] ^= 0x80
        with pytest.raises(SecureAggregationError, match="from site 1 to site 2"):
            channel.open_sealed(key, bytes(bad), ad, 1, 2)
    for other in (
        channel.associated_data("share", "r", 2, 1),
        channel.associated_data("share", "s", 1, 2),
    ):
        with pytest.raises(SecureAggregationError, match="failed authentication"):
            channel.open_sealed(key, sealed, other, 1, 2)


def test_key_agreement_and_derivation_are_symmetric_and_separated() -> None:
    a, b = channel.new_private_key(), channel.new_private_key()
    shared = channel.agree(a, channel.public_bytes(b), 2)
    assert shared == channel.agree(b, channel.public_bytes(a), 1)
    keys = {
        channel.derive_key(shared, "pair-mask", "r", 1, 2),
        channel.derive_key(shared, "pair-mask", "r", 1, 3),
        channel.derive_key(shared, "pair-mask", "r2", 1, 2),
        channel.derive_key(shared, "channel", "r", 1, 2),
    }
    assert len(keys) == 4
    with pytest.raises(SecureAggregationError, match="unusable X25519 public key from site 7"):
        channel.agree(a, bytes(32), 7)  # low-order point


def test_mask_streams_are_deterministic_uniform_and_cancel() -> None:
    key = os.urandom(32)
    s = channel.mask_stream(key, 10_000)
    assert s.dtype == np.uint64 and s.shape == (10_000,)
    np.testing.assert_array_equal(s, channel.mask_stream(key, 10_000))
    assert not np.array_equal(s, channel.mask_stream(os.urandom(32), 10_000))
    assert abs(float(np.mean(s / 2.0**64)) - 0.5) < 0.02
    acc = np.arange(10_000, dtype=np.uint64)
    streams = channel.MaskStreams(10_000)
    streams.add(acc, key)
    assert np.count_nonzero(acc == np.arange(10_000, dtype=np.uint64)) < 5
    streams.add(acc, key, -1)
    np.testing.assert_array_equal(acc, np.arange(10_000, dtype=np.uint64))


# ------------------------------------------------------------------ messages


def test_messages_round_trip_through_record_dicts() -> None:
    packets = SharePackets("r", 1, (2, 3), (b"x" * 60, b"y" * 60))
    record = packets.to_dict()
    assert record == {
        "round-id": "r",
        "sender": 1,
        "recipients": [2, 3],
        "ciphertexts": [b"x" * 60, b"y" * 60],
    }
    assert SharePackets.from_dict(record) == packets
    assert packets.nbytes() == 1 + 8 + 16 + 120
    masked = MaskedInput("r", np.uint64(4), np.arange(3, dtype=np.uint64))
    assert masked.site == 4 and type(masked.site) is int
    assert MaskedInput.from_dict(masked.to_dict()).values is masked.values
    assert (
        UnmaskRequest.from_dict({"round-id": "r", "survivors": [1, 2, 3], "dropped": []}).dropped
        == ()
    )
    with pytest.raises(SecureAggregationError, match="recipients must hold int values, got str"):
        SharePackets("r", 1, ("2",), (b"x",))
    with pytest.raises(SecureAggregationError, match="sender must hold int values, got bool"):
        SharePackets("r", True, (), ())
