"""Secure aggregation, end to end: masks cancel, sums survive drops, bad rounds are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedshift.errors import SecureAggregationError
from fedshift.secagg.secure import (
    AdvertiseKeys,
    AggregatorSession,
    KeyDirectory,
    MaskedInput,
    SecAggConfig,
    ShareInbox,
    SiteSession,
    UnmaskRequest,
    UnmaskResponse,
    decode,
    encode,
    secure_sum,
    simulate_round,
)


def vectors(n: int, length: int, seed: int = 0, scale: float = 100.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=scale, size=length) for _ in range(n)]


def through_inboxes(
    n: int, config: SecAggConfig | None = None, round_id: str = "r1"
) -> tuple[dict[int, SiteSession], AggregatorSession, dict[int, ShareInbox]]:
    """Sites 10, 20, ... that advertised and shared keys; the inboxes to deliver."""
    sites = {10 * (k + 1): SiteSession(10 * (k + 1), round_id, config) for k in range(n)}
    agg = AggregatorSession(round_id, config)
    for s in sites.values():
        agg.receive_keys(s.advertise())
    directory = agg.directory()
    for s in sites.values():
        agg.receive_shares(s.share_keys(directory))
    return sites, agg, agg.inboxes()


def finish(sites: dict[int, SiteSession], agg: AggregatorSession) -> np.ndarray:
    request = agg.unmask_request()
    for s in request.survivors:
        agg.receive_unmask(sites[s].unmask(request))
    return agg.result().total


# ------------------------------------------------------------------ correctness


def test_unmasked_sum_equals_plain_sum() -> None:
    xs = vectors(5, 2000)
    result = secure_sum(xs)
    np.testing.assert_allclose(result.total, np.sum(xs, axis=0), rtol=0, atol=1e-6)
    assert result.sites == (0, 1, 2, 3, 4) and result.dropped == () and result.n_clipped == 0
    # exactly the sum of the fixed-point encodings: every mask cancelled
    cfg = SecAggConfig()
    ring = np.sum([encode(x, cfg).values for x in xs], axis=0, dtype=np.uint64)
    np.testing.assert_array_equal(result.total, decode(ring, cfg))


def test_masks_cancel_exactly_on_zero_inputs() -> None:
    sites, agg, inboxes = through_inboxes(4)
    masked = []
    for s, session in sites.items():
        msg = session.masked_input(inboxes[s], np.zeros(3000))
        masked.append(msg.values)
        agg.receive_masked(msg)
    assert all(np.count_nonzero(y[:-1]) > 2990 for y in masked)  # masked: random words
    np.testing.assert_array_equal(finish(sites, agg), np.zeros(3000))


def test_masked_vector_is_uncorrelated_with_its_plaintext() -> None:
    sites, _, inboxes = through_inboxes(3)
    n = 50_000
    x = np.linspace(-1000.0, 1000.0, n) + np.random.default_rng(1).normal(size=n)
    y = sites[10].masked_input(inboxes[10], x).values[:-1]
    for view in (y.view(np.int64).astype(np.float64), (y >> np.uint64(32)).astype(np.float64)):
        assert abs(np.corrcoef(x, view)[0, 1]) < 0.02  # 6 sigma for 50,000 pairs
    top = np.bincount((y >> np.uint64(56)).astype(np.int64), minlength=256)
    chi2 = np.sum((top - n / 256) ** 2 / (n / 256))
    assert chi2 < 400  # 255 degrees of freedom: uniform high bytes


def test_site_ids_need_not_be_contiguous_and_messages_round_trip() -> None:
    xs = vectors(3, 100)
    result = simulate_round({7: xs[0], 2**63 + 5: xs[1], 123: xs[2]}).result
    assert result.sites == (7, 123, 2**63 + 5)
    np.testing.assert_allclose(result.total, np.sum(xs, axis=0), atol=1e-6)


def test_clipped_values_are_counted_and_clipped() -> None:
    cfg = SecAggConfig(clip=1.0)
    xs = [np.array([0.5, 2.0, -3.0]), np.array([0.25, 0.0, 1.5]), np.array([-0.5, 0.0, 0.0])]
    result = secure_sum(xs, config=cfg)
    assert result.n_clipped == 3
    np.testing.assert_allclose(result.total, [0.25, 1.0, 0.0], atol=1e-6)


# ------------------------------------------------------------------ dropped sites


@pytest.mark.parametrize(("n", "dropped"), [(4, {2}), (6, {0, 4}), (5, {4})])
def test_sum_survives_sites_dropping_after_key_exchange(n: int, dropped: set[int]) -> None:
    xs = vectors(n, 1000)
    result = secure_sum(xs, dropped_after_keys=dropped)
    survivors = tuple(k for k in range(n) if k not in dropped)
    assert result.sites == survivors and result.dropped == tuple(sorted(dropped))
    np.testing.assert_allclose(result.total, np.sum([xs[k] for k in survivors], axis=0), atol=1e-6)


def test_sum_survives_drops_at_every_step() -> None:
    xs = vectors(7, 500)  # threshold 4
    result = secure_sum(
        xs, dropped_before_shares={0}, dropped_after_keys={3}, dropped_after_input={6}
    )
    assert result.sites == (1, 2, 4, 5, 6) and result.dropped == (3,)
    np.testing.assert_allclose(result.total, xs[1] + xs[2] + xs[4] + xs[5] + xs[6], atol=1e-6)


def test_fewer_than_three_sites_is_refused() -> None:
    with pytest.raises(SecureAggregationError, match="at least 3 sites advertising keys, got 2"):
        secure_sum(vectors(2, 10))
    with pytest.raises(SecureAggregationError, match="at least 3 sites that sent masked"):
        secure_sum(vectors(4, 10), dropped_after_keys={0, 1})
    with pytest.raises(SecureAggregationError, match="at least 3 sites that shared keys"):
        secure_sum(vectors(4, 10), dropped_before_shares={0, 1})
    with pytest.raises(SecureAggregationError, match="min_sites must be an int >= 3"):
        SecAggConfig(min_sites=2)


def directory_for(round_id: str, ads: list[AdvertiseKeys], frac_bits: int = 24) -> KeyDirectory:
    """A key directory listing ``ads`` (as a coordinator would, minus its checks)."""
    ads = sorted(ads, key=lambda a: a.site)
    return KeyDirectory(
        round_id=round_id,
        threshold=len(ads) // 2 + 1,
        frac_bits=frac_bits,
        clip=2.0**30,
        min_sites=3,
        sites=tuple(a.site for a in ads),
        channel_keys=tuple(a.channel_key for a in ads),
        mask_keys=tuple(a.mask_key for a in ads),
    )


def test_site_refuses_a_directory_of_two_sites() -> None:
    a, b = SiteSession(1, "r"), SiteSession(2, "r")
    directory = directory_for("r", [a.advertise(), b.advertise()])
    with pytest.raises(SecureAggregationError, match="at least 3 sites in the key directory"):
        a.share_keys(directory)


def test_site_refuses_a_directory_with_other_settings_or_without_its_keys() -> None:
    sessions = [SiteSession(k, "r") for k in range(4)]
    ads = [s.advertise() for s in sessions]
    with pytest.raises(SecureAggregationError, match="differ from this site"):
        sessions[0].share_keys(directory_for("r", ads[:3], frac_bits=20))
    with pytest.raises(SecureAggregationError, match="does not hold this site's own keys"):
        sessions[3].share_keys(directory_for("r", ads[:3]))


def test_fewer_shares_than_the_threshold_is_refused() -> None:
    # 6 sites: threshold 4; only 3 survivors answer the unmask request
    with pytest.raises(SecureAggregationError, match="fewer than the threshold 4"):
        secure_sum(vectors(6, 10), dropped_after_input={0, 1, 2})


def test_headroom_overflow_is_refused() -> None:
    cfg = SecAggConfig(clip=2.0**36, frac_bits=24)  # 2**60 per site: at most 7 sites
    assert cfg.max_sites() == 7
    with pytest.raises(SecureAggregationError, match="overflow the 64-bit ring"):
        secure_sum(vectors(8, 10), config=cfg)


# ------------------------------------------------------------------ tampering and misuse


def test_tampered_ciphertext_is_refused() -> None:
    sites, _, inboxes = through_inboxes(3)
    inbox = inboxes[20]
    bad = bytearray(inbox.ciphertexts[0])
    bad[40] ^= 0x01
    tampered = dataclasses.replace(inbox, ciphertexts=(bytes(bad), *inbox.ciphertexts[1:]))
    with pytest.raises(SecureAggregationError, match="from site 10 to site 20 failed auth"):
        sites[20].masked_input(tampered, np.zeros(5))


def test_misaddressed_ciphertext_is_refused() -> None:
    sites, _, inboxes = through_inboxes(3)
    a, b = inboxes[30].ciphertexts  # from 10 and from 20
    swapped = dataclasses.replace(inboxes[30], ciphertexts=(b, a))
    with pytest.raises(SecureAggregationError, match="from site 10 to site 30"):
        sites[30].masked_input(swapped, np.zeros(5))


def test_ciphertext_from_another_round_is_refused() -> None:
    _, _, old = through_inboxes(3, round_id="r1")
    sites, _, new = through_inboxes(3, round_id="r2")
    replay = dataclasses.replace(old[10], round_id="r2")
    with pytest.raises(SecureAggregationError, match="failed authentication"):
        sites[10].masked_input(replay, np.zeros(5))
    with pytest.raises(SecureAggregationError, match="round 'r1', not 'r2'"):
        sites[20].masked_input(old[20], np.zeros(5))
    del new


def test_corrupt_key_share_is_detected() -> None:
    sites, agg, inboxes = through_inboxes(4)
    for s in (10, 20, 30):
        agg.receive_masked(sites[s].masked_input(inboxes[s], np.ones(5)))
    request = agg.unmask_request()
    assert request.dropped == (40,)
    for s in request.survivors:
        msg = sites[s].unmask(request)
        if s == 10:
            msg = dataclasses.replace(msg, key_shares=(bytes(66),))
        agg.receive_unmask(msg)
    with pytest.raises(SecureAggregationError, match="site 40.*corrupt"):
        agg.result()


def test_site_answers_one_consistent_unmask_request_only() -> None:
    sites, agg, inboxes = through_inboxes(4)
    for s, session in sites.items():
        agg.receive_masked(session.masked_input(inboxes[s], np.ones(5)))
    request = agg.unmask_request()
    sites[10].unmask(request)
    with pytest.raises(SecureAggregationError, match="out of order"):
        sites[10].unmask(request)
    # asking for both the seed and the mask-key share of site 40 is refused
    both = UnmaskRequest("r1", survivors=(10, 20, 30, 40), dropped=(40,))
    with pytest.raises(SecureAggregationError, match="does not split"):
        sites[20].unmask(both)


def test_steps_out_of_order_and_wrong_messages_are_refused() -> None:
    site = SiteSession(1, "r")
    with pytest.raises(SecureAggregationError, match="out of order"):
        site.unmask(UnmaskRequest("r", (1, 2, 3), ()))
    agg = AggregatorSession("r")
    with pytest.raises(
        SecureAggregationError, match="cannot close step .inputs. during step .keys."
    ):
        agg.unmask_request()
    with pytest.raises(SecureAggregationError, match="uint64"):
        MaskedInput("r", 1, np.zeros(3))
    with pytest.raises(SecureAggregationError, match=r"site id -1 is not in \[0, 2\*\*64\)"):
        UnmaskResponse("r", -1, (), (), (), ())
    with pytest.raises(SecureAggregationError, match="lacks keys"):
        KeyDirectory.from_dict({"round-id": "r"})


def test_site_sessions_survive_being_saved_between_steps() -> None:
    """A ClientApp may keep a site only as record values (Flower ``Context.state``)."""
    xs = vectors(3, 50)
    states = {s: SiteSession(s, "r").to_state() for s in (1, 2, 3)}
    agg = AggregatorSession("r")

    def step(s: int, call: str, *args: object) -> object:
        session = SiteSession.from_state(states[s])
        out = getattr(session, call)(*args)
        states[s] = session.to_state()
        return out

    for s in states:
        agg.receive_keys(step(s, "advertise"))
    directory = agg.directory()
    for s in states:
        agg.receive_shares(step(s, "share_keys", directory))
    inboxes = agg.inboxes()
    for s in states:
        agg.receive_masked(step(s, "masked_input", inboxes[s], xs[s - 1]))
    request = agg.unmask_request()
    for s in states:
        agg.receive_unmask(step(s, "unmask", request))
    np.testing.assert_allclose(agg.result().total, np.sum(xs, axis=0), atol=1e-6)
    assert states[1]["stage"] == "done"
