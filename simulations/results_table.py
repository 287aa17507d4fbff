"""Markdown table of final test metrics from several run folders (metrics.json).

python simulations/results_table.py runs/default runs/default-local runs/default-centralized

Each row is named after its run folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fedshift.record import RunRecord


def main(folders: list[str]) -> None:
    runs = {}
    for folder in folders:
        final = RunRecord.read(Path(folder) / "metrics.json").final
        if final is None:
            raise SystemExit(f"{folder}: the run has no final metrics yet")
        runs[Path(folder).name] = final.to_json()
    sites = sorted({s for final in runs.values() for s in final["sites"]})
    targets = sorted({s for final in runs.values() for s in final["target"]})
    head = ["method"] + sites + ["mean (labelled)"] + [f"{t} (unlabelled)" for t in targets]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, final in runs.items():
        cells = []
        for s in sites:
            m = final["sites"].get(s, {})
            cells.append(
                f"{m.get('dice', float('nan')):.3f} / {m.get('lesion_f1', float('nan')):.3f}"
            )
        dice = [final["sites"][s]["dice"] for s in sites if s in final["sites"]]
        f1 = [final["sites"][s]["lesion_f1"] for s in sites if s in final["sites"]]
        cells.append(f"{sum(dice) / len(dice):.3f} / {sum(f1) / len(f1):.3f}")
        for t in targets:
            m = final["target"].get(t, {})
            cells.append(
                f"{m.get('dice', float('nan')):.3f} / {m.get('lesion_f1', float('nan')):.3f}"
            )
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
