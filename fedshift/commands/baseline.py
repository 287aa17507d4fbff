"""Train a baseline outside Flower, for comparison with the federation.

  local              each labelled site trains alone (the steps of one site in the
                     federation); the target is scored by every local model, mean reported
  centralized        every labelled site's training data pooled (an upper bound no hospital
                     could run), with the federation's total optimiser steps
  centralized_jdot   the same plus DeepJDOT towards the unlabelled target's images

Same run config, preprocessing, threshold rule and run folder (metrics.json, report.html)
as `fedshift simulate`, so the numbers compare. centralized and centralized_jdot end with
their model package in RUN/model (for `fedshift predict` / `evaluate`); local trains one
model per site and keeps none.

Examples:
  fedshift baseline centralized out=runs/centralized
  fedshift baseline local fed.rounds=5 data.sites=[/data/a,/data/b] data.target=[/data/t]
"""

from __future__ import annotations

import argparse
import logging

from fedshift.commands.simulate import add_arguments as add_run_arguments
from fedshift.commands.simulate import report_run, resolved_config

HELP = "train a baseline outside Flower (local, centralized, centralized_jdot)"
log = logging.getLogger("fedshift.baseline")
KINDS = ("local", "centralized", "centralized_jdot")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="which baseline")
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from fedshift.baselines import run_baseline

    cfg = resolved_config(args, simulation=False)  # trains here: no Ray GPU shares
    log.info("baseline %s: %d rounds -> %s", args.kind, cfg.fed.rounds, cfg.out)
    state = run_baseline(cfg, args.kind)
    report_run(cfg, state)
    return 0
