"""Draw one case per site of a federation (or of the named site folders) as one PNG.

Each row is a site (in the order listed on the terminal): three orthogonal slices through
the case's largest lesion, with the label overlaid (red). Used for the README figure:
  fedshift mosaic runs/data/default-seed0 --out docs/mosaic.png
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from fedshift.data.layout import discover_site
from fedshift.data.nifti import read_volume
from fedshift.errors import UsageError
from fedshift.render.mosaic import label_center, render_mosaic
from fedshift.render.png import write_png

HELP = "draw one case per site as a PNG mosaic (label overlaid)"
log = logging.getLogger("fedshift.mosaic")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folders",
        nargs="+",
        type=Path,
        help="a federation folder (holding site folders) or site folders",
    )
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument(
        "--case", type=int, default=0, help="index of the case per site (default 0)"
    )
    parser.add_argument("--height", type=int, default=160, help="panel height in pixels")


def _site_dirs(folders: list[Path]) -> list[Path]:
    sites = []
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"{str(folder)!r} is not a folder")
        if (folder / "imagesTr").is_dir() or (folder / "imagesTs").is_dir():
            sites.append(folder)
        else:
            sites += sorted(p for p in folder.iterdir() if (p / "imagesTr").is_dir())
    if not sites:
        raise UsageError("no site folder (with imagesTr/) found in " + ", ".join(map(str, folders)))
    return sites


def site_row(site_dir: Path, index: int, height: int) -> np.ndarray:
    layout = discover_site(site_dir)
    cases = sorted(layout.cases, key=lambda c: (c.label is None, c.split != "train", c.case_id))
    if not cases:
        raise UsageError(f"site {site_dir} has no case")
    case = cases[min(index, len(cases) - 1)]
    image = read_volume(case.image)
    label = read_volume(case.label).as_float32() > 0.5 if case.label else None
    center = label_center(label) if label is not None else None
    log.info("%s: %s%s", layout.name, case.case_id, "" if label is not None else " (no label)")
    return render_mosaic(
        image.as_float32(), label, image.zooms, center=center, height=height, affine=image.affine
    )


def run(args: argparse.Namespace) -> int:
    rows = [site_row(s, args.case, args.height) for s in _site_dirs(args.folders)]
    width = max(r.shape[1] for r in rows)
    canvas = np.concatenate(
        [np.pad(r, ((2, 2), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0
    )
    write_png(args.out, canvas)
    log.info("wrote %s (%d sites)", args.out, len(rows))
    return 0
