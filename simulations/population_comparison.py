"""How often each way of comparing a site's lesion load with the rest's names an unshifted
site (issue 24, part 1), on an idealised model with no segmentation model in the loop:
per case a log lesion load drawn from N(0, sigma) at unshifted sites and N(delta * sigma,
sigma) at the outlier sites; a site is named when |effect| >= the threshold.

    python simulations/population_comparison.py --out docs/results/population-comparison.md

The three comparisons, each of one site against the other sites' cases:

- ``cohen``: the rule before issue 24 (:func:`fedshift.shift.descriptors.mean_difference`): mean
  difference over the pooled within-group standard deviation;
- ``pooled median``: the site's median case minus the other sites' pooled median case,
  over 1.4826 x their pooled MAD (floored): what secure sums of per-case histograms give;
- ``median of site medians``: the same against the median of the other sites' medians
  (robust to a whole outlier site; it needs each site's median, which a secure sum of
  per-case histograms does not give: a sum of one-hot "my median is in bin k" vectors
  would, and would tell the coordinator every site's median, unlinked to its site).

Prints and writes a table: per federation (sites, cases per site, outliers and their
shift) the false-alarm rate per unshifted site and the outlier detection rate, for each
rule at the threshold (default 1.0, the diagnosis's ``population_effect``). Seeded; the
seeds are not those of any scenario.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SEED = 240_2026


def cohen(own: np.ndarray, rest: np.ndarray, floor: float) -> float:
    spread = np.sqrt((own.var(ddof=1) + rest.var(ddof=1)) / 2)
    return float((own.mean() - rest.mean()) / max(spread, floor))


def pooled_median(own: np.ndarray, others: list[np.ndarray], floor: float) -> float:
    rest = np.concatenate(others)
    centre = np.median(rest)
    mad = 1.4826 * np.median(np.abs(rest - centre))
    return float((np.median(own) - centre) / max(mad, floor))


def median_of_medians(own: np.ndarray, others: list[np.ndarray], floor: float) -> float:
    rest = np.concatenate(others)
    mad = 1.4826 * np.median(np.abs(rest - np.median(rest)))
    centre = np.median([np.median(o) for o in others])
    return float((np.median(own) - centre) / max(mad, floor))


RULES = {
    "cohen": lambda own, others, floor: cohen(own, np.concatenate(others), floor),
    "pooled median": pooled_median,
    "median of site medians": median_of_medians,
}


def rates(
    rng: np.random.Generator,
    sites: int,
    cases: int,
    outliers: int,
    delta: float,
    threshold: float,
    trials: int,
    floor: float,
) -> dict[str, tuple[float, float]]:
    """rule -> (false alarms per unshifted site, detections per outlier site)."""
    alarms = dict.fromkeys(RULES, 0)
    found = dict.fromkeys(RULES, 0)
    for _ in range(trials):
        draws = [rng.normal(delta if i < outliers else 0.0, 1.0, cases) for i in range(sites)]
        for i, own in enumerate(draws):
            others = draws[:i] + draws[i + 1 :]
            for name, rule in RULES.items():
                named = abs(rule(own, others, floor)) >= threshold
                if i < outliers:
                    found[name] += named
                else:
                    alarms[name] += named
    unshifted = trials * (sites - outliers)
    shifted = trials * outliers
    return {
        name: (alarms[name] / unshifted, found[name] / shifted if shifted else float("nan"))
        for name in RULES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument("--threshold", type=float, default=1.0)
    parser.add_argument("--trials", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    floor = 0.2  # in units of sigma: the family scale over a typical spread
    lines = [
        "| sites | cases/site | outliers (shift in sd) | rule | false alarms per unshifted site "
        "| outliers named |",
        "|---|---|---|---|---|---|",
    ]
    for sites, cases, outliers, delta in (
        (5, 8, 0, 0.0),
        (5, 8, 1, 1.8),
        (5, 8, 1, 3.0),
        (5, 20, 1, 1.8),
        (8, 8, 2, 1.8),
        (16, 8, 4, 1.8),
        (5, 8, 1, 1.0),
    ):
        result = rates(rng, sites, cases, outliers, delta, args.threshold, args.trials, floor)
        for name, (alarm, hit) in result.items():
            lines.append(
                f"| {sites} | {cases} | {outliers} ({delta:g}) | {name} | {alarm:.3f} | "
                f"{'-' if np.isnan(hit) else f'{hit:.3f}'} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
