"""Secure aggregation cost: wall time of a whole round and bytes each site sends.

Runs :func:`fedshift.secagg.secure.simulate_round` (every site and the coordinator in this
one process, every message through its record-dict form) on random float64 vectors:
key advertisement, encrypted Shamir shares, masking, unmasking and decoding, all timed
together. Nothing is cached between the two sides: each pairwise mask is generated once
by each of its two sites, as on separate machines. Goals for 20 sites x 100,000 values:
< 1 s per round and bytes sent <= 1.1x the plaintext.

Bytes sent are the payload of every message a site sends over the round (values as
Flower's ``ConfigRecord.count_bytes`` counts them: bytes/str lengths, 8 per int, array
``nbytes``; no keys or transport framing). The plaintext is the site's vector as raw
float64 (8 bytes a value); the masked vector holds one uint64 ring element per value plus
one for the clipped-value count. The float32 ratio is printed too, for reference.

    python simulations/bench_secure.py [--sites 20] [--dim 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from fedshift.secagg.secure import simulate_round


def time_rounds(
    vectors: list[np.ndarray], repeats: int, dropped: set[int]
) -> tuple[list[float], dict[int, int], float]:
    """Wall times of ``repeats`` rounds, the last round's bytes sent and max error."""
    times, sent, err = [], {}, 0.0
    expected = np.sum([v for k, v in enumerate(vectors) if k not in dropped], axis=0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        run = simulate_round(vectors, dropped_after_keys=dropped)
        times.append(time.perf_counter() - t0)
        sent = run.bytes_sent
        err = float(np.max(np.abs(run.result.total - expected)))
    return times, sent, err


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--dim", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    vectors = [rng.normal(scale=100.0, size=args.dim) for _ in range(args.sites)]
    simulate_round(vectors[:3])  # warm-up (imports, OpenSSL)
    print(f"secure aggregation, {args.sites} sites x {args.dim:,} float64 values, one process")
    sent: dict[int, int] = {}
    for label, dropped in (("no drop", set()), ("1 site dropped after keys", {1})):
        times, sent_here, err = time_rounds(vectors, args.repeats, dropped)
        sent = sent or sent_here  # bytes of the round without drops
        print(
            f"  {label:<26} round: median {statistics.median(times):.3f} s, "
            f"best {min(times):.3f} s over {args.repeats} (goal < 1 s); max |error| {err:.2e}"
        )
    most = max(sent.values())
    plain64, plain32 = 8 * args.dim, 4 * args.dim
    print(f"  bytes sent per site, whole round without drops: at most {most:,}")
    print(f"  vs plaintext float64 ({plain64:,} bytes): ratio {most / plain64:.4f} (goal <= 1.1)")
    print(f"  vs plaintext float32 ({plain32:,} bytes): ratio {most / plain32:.4f}")


if __name__ == "__main__":
    main()
