"""Run a federated training simulation on synthetic sites or on your own site folders.

With no argument: generates (or reuses) the default synthetic federation and runs it in
Flower's simulation engine with FedAvg. The run folder (out=...) receives config.yaml,
metrics.json, checkpoints/ and report.html.

Examples:
  fedshift simulate
  fedshift simulate fed.strategy=fedprox fed.rounds=8 out=runs/fedprox
  fedshift simulate data.sites=[/data/hospA,/data/hospB,/data/hospC] data.target=[/data/hospD]
  fedshift simulate fed.strategy=centralized     # pooled-data upper bound (not federated)
  fedshift simulate fed.strategy=centralized_jdot  # pooled data + DeepJDOT to the target
  fedshift simulate resume=true                  # continue after the last checkpoint
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fedshift.config import CONFIG_DIR, load_config
from fedshift.runconfig import BASELINES, RunConfig

HELP = "run a federated simulation (Flower simulation engine) and write a report"
log = logging.getLogger("fedshift.simulate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=CONFIG_DIR / "default.yaml",
        help="run config YAML (default: configs/default.yaml)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="settings to override, e.g. fed.rounds=3 fed.strategy=fedprox",
    )


def run(args: argparse.Namespace) -> int:
    from fedshift.report.run_report import write_run_report
    from fedshift.site.folders import resolve_sites

    cfg = resolve_sites(load_config(RunConfig, [args.config], args.overrides))
    log.info(
        "run %s: strategy %s, %d rounds, %d labelled sites, %d target(s) -> %s",
        cfg.name,
        cfg.fed.strategy,
        cfg.fed.rounds,
        len(cfg.data.sites),
        len(cfg.data.target),
        cfg.out,
    )
    if cfg.fed.strategy in BASELINES:
        from fedshift.baselines import run_baseline

        state = run_baseline(cfg)
    else:
        from fedshift.fl.simulation import run_flower_simulation

        state, seconds = run_flower_simulation(cfg)
        log.info("simulation finished in %.1f s", seconds)
    report = write_run_report(cfg, state)
    if (Path(cfg.out) / "diagnosis.json").is_file():
        from fedshift.report.diagnosis_report import write_diagnosis_report

        log.info("shift diagnosis: %s", write_diagnosis_report(cfg.out))
    for name, m in sorted(state.final.get("sites", {}).items()):
        log.info(
            "final %-8s dice %.3f  lesion F1 %.3f",
            name,
            m.get("dice", float("nan")),
            m.get("lesion_f1", float("nan")),
        )
    for name, m in sorted(state.final.get("target", {}).items()):
        log.info(
            "target %-7s dice %.3f  lesion F1 %.3f",
            name,
            m.get("dice", float("nan")),
            m.get("lesion_f1", float("nan")),
        )
    log.info("report: %s", report)
    return 0
