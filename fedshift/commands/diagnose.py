"""Write the shift diagnosis report of a federated run: diagnosis.html.

Needs a run made with fed.secure_stats=true (it holds diagnosis.json: the scalars each site
reported and the verdicts). In a simulation every site's private shift folder is under
RUN/sites/, so the report shows every site's panel (histograms, embedding projection). In
a deployment the coordinator's run folder has the verdicts only; a hospital adds its own
panel by naming its site work folder (the SuperNode's work_dir).

Examples:
  fedshift simulate data.scenario=acquisition fed.secure_stats=true out=runs/acq
  fedshift diagnose runs/acq
  fedshift diagnose runs/flwr --site-work /srv/fedshift/work --out my_site_diagnosis.html
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from fedshift.errors import UsageError

HELP = "write diagnosis.html: each site's kind of shift, histograms, embedding projection"
log = logging.getLogger("fedshift.diagnose")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, metavar="RUN", help="run folder with diagnosis.json")
    parser.add_argument(
        "--site-work",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a site's work folder (holds shift/); repeatable",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="HTML file to write (default RUN/diagnosis.html)"
    )


def run(args: argparse.Namespace) -> int:
    from fedshift.report.diagnosis_report import write_diagnosis_report

    if not args.run.is_dir():
        raise UsageError(f"run folder {str(args.run)!r} does not exist")
    for work in args.site_work:
        if not (work / "shift").is_dir():
            raise UsageError(f"{str(work)!r} holds no shift/ folder: not a site work folder")
    try:
        path = write_diagnosis_report(args.run, args.site_work, args.out)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    diagnosis = json.loads((args.run / "diagnosis.json").read_text())
    for site, entry in sorted(diagnosis.get("sites", {}).items()):
        log.info("%-8s %s", site, ", ".join(entry.get("shift", [])) or "no shift")
    log.info("wrote %s", path)
    return 0
