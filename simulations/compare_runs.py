"""Final test metrics of two run folders side by side, and their largest difference.

Used to check that a refactor reproduces a run (docs/results/refactor-reproduction.md):

    python simulations/compare_runs.py BEFORE_RUN AFTER_RUN
"""

from __future__ import annotations

import sys
from pathlib import Path

from fedshift.record import RunRecord


def main(before: str, after: str) -> float:
    runs = [RunRecord.read(Path(folder) / "metrics.json").final for folder in (before, after)]
    if any(final is None for final in runs):
        raise SystemExit("both runs need their final metrics")
    a, b = runs
    worst = 0.0
    print("| role | site | metric | before | after |\n|---|---|---|---|---|")
    for role, x_sites, y_sites in (("labelled", a.sites, b.sites), ("target", a.target, b.target)):
        for site in sorted(x_sites):
            for key in ("dice", "lesion_f1"):
                x, y = x_sites[site][key], y_sites[site][key]
                worst = max(worst, abs(x - y))
                print(f"| {role} | {site} | {key} | {x:.3f} | {y:.3f} |")
    print(f"\nlargest difference: {worst:.2e}")
    return worst


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
