"""Check a site's data and assign its MIDaR readiness level (A best .. D worst).

Writes readiness.json (the machine contract) and readiness.html (findings, image
quality plots, mosaics) to --out, by default ./readiness/<site name>/ in the current
folder: input files are only read, never modified or moved, and --out may not lie inside
the site folder. A bad case never stops the run; the exit status is 0 whenever the report
was written, whatever the level. Only the level and the counts are meant to leave the site.

Examples:
  fedshift readiness data/hospital1
  fedshift readiness data/hospital1 --out reports/h1 --config sites/site.yaml --workers 2
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fedshift.readiness.runner import HTML_NAME, JSON_NAME, default_out_dir, run_readiness

HELP = "check a site's data (nnU-Net layout) and write its readiness report (level A-D)"
log = logging.getLogger("fedshift.readiness")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "site_dir", type=Path, metavar="SITE_DIR", help="site folder in nnU-Net v2 raw layout"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: ./readiness/<site name>/)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="site YAML with 'attestations' (ethics_reference, annotation_protocol, "
        "deidentified_by) and 'readiness' settings",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: the config's, else min(2, CPU count))",
    )


def run(args: argparse.Namespace) -> int:
    out = args.out if args.out is not None else default_out_dir(args.site_dir)
    report = run_readiness(args.site_dir, out, config=args.config, workers=args.workers)
    errors = report["counts"]["findings"]["error"]
    print(
        f"{report['site']}: level {report['level']} - {report['n_usable']} of "
        f"{report['n_cases']} cases usable, {errors} errors "
        f"({'; '.join(report['level_reasons'])})"
    )
    print(f"report: {out / JSON_NAME}, {out / HTML_NAME}")
    return 0
