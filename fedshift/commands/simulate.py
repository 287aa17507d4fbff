"""Run a federated training simulation on synthetic sites or on your own site folders.

With no argument: generates (or reuses) the default synthetic federation and runs it in
Flower's simulation engine: readiness at every site, secure statistics, FedAvg with each
site's intensity map, the shift diagnosis of the final model. The run folder (out=...)
receives config.yaml, metrics.json, diagnosis.json, checkpoints/ and report.html.

Examples:
  fedshift simulate
  fedshift simulate fed.aggregator=fedprox fed.rounds=8 out=runs/fedprox
  fedshift simulate data.sites=[/data/hospA,/data/hospB,/data/hospC] data.target=[/data/hospD]
  fedshift simulate seg.align.method=jdot          # + the JDOT term against the reference
  fedshift simulate resume=true                    # continue after the last checkpoint
  fedshift baseline centralized                    # pooled-data upper bound (not federated)
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fedshift.config import CONFIG_DIR, load_config
from fedshift.runconfig import RunConfig
from fedshift.runstate import RunState

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
        help="settings to override, e.g. fed.rounds=3 fed.aggregator=fedprox",
    )


def resolved_config(args: argparse.Namespace, simulation: bool = True) -> RunConfig:
    """The run config of ``--config`` and the overrides, its device settings checked
    against this machine, then its site folders found (the synthetic federation generated
    when none are named). ``simulation``: the sites run in Flower's simulation engine, so
    ``simulation.gpus_per_site`` applies too."""
    from fedshift.model.device import check_devices
    from fedshift.site.folders import resolve_sites

    cfg = load_config(RunConfig, [args.config], args.overrides)
    if simulation:
        sim = cfg.simulation
        check_devices(cfg.seg.train.device, sim.fixed_gpus, sim.cpus_per_site)
    else:
        check_devices(cfg.seg.train.device)
    return resolve_sites(cfg)


def run(args: argparse.Namespace) -> int:
    from fedshift.fl.simulation import run_flower_simulation

    cfg = resolved_config(args)
    log.info(
        "run %s: %s, alignment %s, intensity map %s, %d rounds, %d labelled sites, "
        "%d target(s) -> %s",
        cfg.name,
        cfg.fed.aggregator,
        cfg.seg.align.method,
        "on" if cfg.fed.align_intensity else "off",
        cfg.fed.rounds,
        len(cfg.data.sites),
        len(cfg.data.target),
        cfg.out,
    )
    state, seconds = run_flower_simulation(cfg)
    log.info("simulation finished in %.1f s", seconds)
    report_run(cfg, state)
    return 0


def report_run(cfg: RunConfig, state: RunState) -> None:
    """Write report.html (and diagnosis.html when the run diagnosed) and log the final
    test metrics."""
    from fedshift.report.run_report import write_run_report

    report = write_run_report(cfg, state)
    if (Path(cfg.out) / "diagnosis.json").is_file():
        from fedshift.report.diagnosis_report import write_diagnosis_report

        log.info("shift diagnosis: %s", write_diagnosis_report(cfg.out))
    final = state.record.final
    for role, metrics in (("final", final.sites), ("target", final.target)) if final else ():
        for name, m in sorted(metrics.items()):
            log.info(
                "%-6s %-8s dice %s  lesion F1 %s", role, name, _num(m, "dice"), _num(m, "lesion_f1")
            )
    log.info("report: %s", report)


def _num(metrics: dict[str, float | None], key: str) -> str:
    value = metrics.get(key)
    return "-" if value is None else f"{value:.3f}"
