"""Run the coordinator: a Flower SuperLink with TLS and node authentication.

Checks that the server certificate is signed by the CA, starts ``flower-superlink`` with
TLS, ``--enable-supernode-auth`` and a database, waits until it listens, then enrolls
every site listed in the config (``flwr supernode register SITE.pub``): only enrolled
sites can connect. Node ids of enrolled sites go to ``STATE_DIR/enrolled.json``. The
``flwr`` CLI connection is written to ``STATE_DIR/flwr-home/config.toml``; start the
federated run from another terminal with the command printed at start. Runs until
Ctrl-C (or SIGTERM), then stops the SuperLink cleanly.

Exit status: 0 stopped by Ctrl-C, 1 the SuperLink failed or stopped, 2 bad configuration.

Examples:
  fedshift coordinator --config coordinator.yaml
  fedshift coordinator --config coordinator.yaml port=9191
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from fedshift.config import load_config
from fedshift.deploy import certs, flower
from fedshift.deploy import processes as proc
from fedshift.deploy.config import CoordinatorConfig, resolve_paths
from fedshift.errors import ConfigError

HELP = "run the SuperLink (TLS + node authentication) and enroll the listed sites"
log = logging.getLogger("fedshift.coordinator")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="coordinator.yaml")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="settings to override, e.g. port=9191 host=0.0.0.0",
    )


def build_config(config: Path, overrides: list[str]) -> CoordinatorConfig:
    """The coordinator config, with relative paths taken from the folder of ``config``.

    Checks the TLS files (server certificate signed by the CA and naming the address the
    ``flwr`` CLI dials) and every site public key (OpenSSH ECDSA P-384).
    """
    if not config.is_file():
        raise ConfigError(f"config file {str(config)!r} does not exist")
    cfg = resolve_paths(load_config(CoordinatorConfig, [config], overrides), config.parent)
    host = cfg.address.rpartition(":")[0].strip("[]")
    certs.verify_server_cert(cfg.server_cert, cfg.ca_cert, host=host)
    certs.load_private_key(cfg.server_key)
    for site in cfg.sites:
        certs.load_site_public_key(site.public_key)
    return cfg


def run(args: argparse.Namespace) -> int:
    cfg = build_config(args.config, args.overrides)
    state = Path(cfg.state_dir)
    Path(cfg.database).parent.mkdir(parents=True, exist_ok=True)
    flwr_home = state / "flwr-home"
    flower.write_connection(flwr_home, cfg.connection, cfg.address, cfg.ca_cert)
    env = proc.flower_env(flwr_home)

    with proc.interruptible():
        superlink = proc.start_process(
            "SuperLink", flower.superlink_argv(cfg), Path(cfg.log_dir) / "superlink.log", env=env
        )
        print(f"SuperLink started (pid {superlink.pid}); log: {superlink.log_path}")
        try:
            return _serve(cfg, superlink, env)
        except KeyboardInterrupt:
            print("stopping the SuperLink ...")
            return 0
        finally:
            status = proc.stop_process(superlink)
            print(f"SuperLink stopped (status {status}); log: {superlink.log_path}")


def _serve(cfg: CoordinatorConfig, superlink: proc.Managed, env: dict[str, str]) -> int:
    """Wait until the SuperLink listens, enroll the sites, then wait until it stops."""
    state = Path(cfg.state_dir)
    try:
        dial = cfg.address.rpartition(":")[0].strip("[]")
        proc.wait_for_port(dial, cfg.port, cfg.start_timeout_s, proc=superlink)
        enrolled = _enroll(cfg, env, state / "enrolled.json")
    except proc.LaunchError as exc:
        print(f"fedshift coordinator: {exc}")
        return 1
    names = ", ".join(enrolled) or "(none)"
    print(f"listening on {cfg.host}:{cfg.port}; {len(enrolled)} site(s) enrolled: {names}")
    print(f"node ids: {state / 'enrolled.json'}")
    flwr_home = state / "flwr-home"
    enrolled_json = (state / "enrolled.json").resolve()
    print(
        f"start a run:  FLWR_HOME={flwr_home} flwr run APP_DIR {cfg.connection} --stream "
        f"--run-config \"fed.enrolled_sites='{enrolled_json}'\""
    )
    print("Ctrl-C to stop the SuperLink")
    ended = proc.wait_while_running([superlink])
    print(f"fedshift coordinator: {flower.explain_exit(ended)}")
    return 1


def _enroll(cfg: CoordinatorConfig, env: dict[str, str], record: Path) -> dict[str, int | None]:
    """Register every listed site key; keep ``{name: node_id}`` in ``record`` (JSON).

    Keys enrolled by an earlier start are kept in the SuperLink's database: Flower then
    answers "already in use" and the node id comes from ``record``.
    """
    known: dict[str, int | None] = {}
    if record.is_file():
        known = json.loads(record.read_text())
    for site in cfg.sites:
        reg = flower.register_site(
            site.public_key, site.name, cfg.connection, env, timeout_s=cfg.start_timeout_s
        )
        if not reg.already:
            known[site.name] = reg.node_id
        else:
            known.setdefault(site.name, None)
        log.info(
            "site %s %s (node id %s)",
            site.name,
            "was already enrolled" if reg.already else "enrolled",
            known[site.name],
        )
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(known, indent=2) + "\n")
    status = flower.list_nodes(cfg.connection, env, timeout_s=cfg.start_timeout_s)
    for site in cfg.sites:
        node_id = known[site.name]
        if node_id is None:
            log.warning(
                "site %s: key enrolled before, node id unknown (not in %s)", site.name, record
            )
        elif status.get(node_id) == "unregistered":
            log.warning(
                "site %s: node %s was unregistered (revoked); its key cannot be "
                "enrolled again: the site needs a new key pair",
                site.name,
                node_id,
            )
    return {s.name: known[s.name] for s in cfg.sites}
