"""Join the federation as a hospital: readiness gate, then a Flower SuperNode.

In order: check the site's key and the CA certificate, run readiness on the site's data
and refuse to join (saying why) when its level is below ``required_level``, then start
``flower-supernode`` with TLS, the site's private key and its data path (node config
``data-path``), and wait until the coordinator accepts the site. Runs until Ctrl-C
(or SIGTERM), then stops the SuperNode cleanly. The data never leave the hospital.

Exit status: 0 stopped by Ctrl-C, 1 refused (readiness, enrollment, TLS) or the
SuperNode stopped, 2 bad configuration.

Examples:
  fedshift site --config site.yaml
  fedshift site --config site.yaml port=9095 required_level=A
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fedshift.config import load_config
from fedshift.deploy import certs, flower
from fedshift.deploy import processes as proc
from fedshift.deploy.config import SiteConfig, resolve_paths
from fedshift.deploy.gate import readiness_gate
from fedshift.errors import ConfigError

HELP = "run readiness, then join the federation as a SuperNode (TLS + site key)"
log = logging.getLogger("fedshift.site")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="site.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="settings to override, e.g. port=9095 required_level=A",
    )


def build_config(config: Path, overrides: list[str]) -> SiteConfig:
    """The site config, with relative paths taken from the folder of ``config``."""
    if not config.is_file():
        raise ConfigError(f"config file {str(config)!r} does not exist")
    cfg = load_config(SiteConfig, [config], overrides)
    cfg = resolve_paths(cfg, config.parent)
    if not Path(cfg.data_path).is_dir():
        raise ConfigError(f"data_path={cfg.data_path!r} is not a folder")
    certs.load_cert(cfg.ca_cert)
    certs.load_private_key(cfg.private_key)
    return cfg


def run(args: argparse.Namespace) -> int:
    from fedshift.model.device import describe_devices

    cfg = build_config(args.config, args.overrides)
    # the run config (seg.train.device) comes from the coordinator with the run's first
    # message and is checked where the site builds its model; here the site says what it
    # will train on (a CPU-only torch wheel shows up now, not at the first round)
    log.info("site %s: %s", cfg.name, describe_devices())
    log_dir = Path(cfg.log_dir)
    readiness_dir = Path(cfg.readiness_dir or log_dir / "readiness")

    log.info("site %s: readiness of %s (report in %s)", cfg.name, cfg.data_path, readiness_dir)
    gate = readiness_gate(cfg.data_path, readiness_dir, cfg.required_level, site_config=args.config)
    if not gate.ok:
        print(f"fedshift site: {cfg.name} does not join: {gate.reason}")
        return 1
    log.info("%s", gate.reason)

    with proc.interruptible():
        supernode = proc.start_process(
            "SuperNode",
            flower.supernode_argv(cfg),
            log_dir / "supernode.log",
            env=proc.flower_env(cfg.flwr_home),
        )
        print(f"SuperNode for {cfg.name} started (pid {supernode.pid}); log: {supernode.log_path}")
        try:
            return _serve(cfg, supernode)
        except KeyboardInterrupt:
            print("stopping the SuperNode ...")
            return 0
        finally:
            status = proc.stop_process(supernode)
            print(f"SuperNode stopped (status {status}); log: {supernode.log_path}")


def _serve(cfg: SiteConfig, supernode: proc.Managed) -> int:
    """Wait for the coordinator to accept the site, then until the SuperNode stops."""
    try:
        node_id = flower.wait_for_activation(supernode, cfg.start_timeout_s)
    except proc.LaunchError as exc:
        print(f"fedshift site: {cfg.name} does not join: {exc}")
        return 1
    if node_id is None:
        print(
            f"still trying to reach the SuperLink at {cfg.superlink}; the SuperNode "
            f"keeps retrying (see {supernode.log_path})"
        )
    else:
        print(f"joined the federation at {cfg.superlink} as node {node_id}; Ctrl-C to leave")
    ended = proc.wait_while_running([supernode])
    print(f"fedshift site: {flower.explain_exit(ended)}")
    return 1
