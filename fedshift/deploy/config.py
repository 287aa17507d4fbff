"""Settings of a deployed federation: ``site.yaml`` (a hospital) and ``coordinator.yaml``.

Built like every FedShift config (:func:`fedshift.config.load_config`): the dataclass
gives the defaults, YAML files and ``key=value`` overrides are merged on top, then
:meth:`validate` checks the values. Relative paths in a YAML file are relative to the
folder of that file (:func:`resolve_paths`), so a site folder can be moved as a whole.

Example ``site.yaml``::

    name: site0
    data_path: /data/ms-flair          # nnU-Net raw layout; never leaves the hospital
    superlink: fedshift.example.org:9091
    ca_cert: certs/ca.crt              # from the coordinator
    private_key: keys/site0.key        # made here by `fedshift certs site site0`
    required_level: B
    attestations:                      # read by fedshift.readiness
      ethics_reference: "IRB-2024-117"

Example ``coordinator.yaml``::

    host: 0.0.0.0
    port: 9091
    public_host: fedshift.example.org
    sites:
      - {name: site0, public_key: keys/site0.pub}
      - {name: site1, public_key: keys/site1.pub}
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING

from fedshift.errors import ConfigError

#: MIDaR data readiness levels, worst first (see fedshift.readiness)
LEVELS: tuple[str, ...] = ("D", "C", "B", "A")

T = TypeVar("T")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_NODE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _check(ok: bool, key: str, value: object, expect: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: expected {expect}")


def _check_port(key: str, value: int) -> None:
    _check(0 < value < 65536, key, value, "a TCP port in 1..65535")


def _check_address(key: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    _check(bool(sep and host and port.isdigit()), key, value, "HOST:PORT (no https://)")
    _check_port(key, int(port))


@dataclass(frozen=True)
class SiteConfig:
    """One hospital's SuperNode (``fedshift site --config site.yaml``).

    Attributes
    ----------
    name : str
        Site name, as enrolled at the coordinator (``site0``).
    data_path : str
        The site's data folder (nnU-Net v2 raw layout). Passed to the ClientApp as the
        node config ``data-path``; the images never leave the hospital.
    superlink : str
        ``HOST:PORT`` of the coordinator's SuperLink; HOST must be one of the names in
        the server certificate.
    ca_cert : str
        The federation's CA certificate (``ca.crt``), to verify the SuperLink.
    private_key : str
        The site's node-authentication key (OpenSSH ECDSA P-384, mode 0600).
    required_level : str
        Lowest readiness level (A, B, C or D) the federation accepts; below it the site
        refuses to join and says why.
    work_dir : str
        The site's private working folder (preprocessing cache, readiness report, prediction
        overlays), passed to the ClientApp as node config ``work-dir``; it stays at the site.
    readiness_dir : str
        Where ``readiness.json`` / ``readiness.html`` are written ("" = LOG_DIR/readiness).
    port : int
        Local port of the SuperNode's runtime API (127.0.0.1 only). Two SuperNodes on one
        machine need two ports.
    log_dir : str
        Where ``supernode.log`` is written.
    flwr_home : str
        Flower's home for this SuperNode (FLWR_HOME): the apps the coordinator sends are
        unpacked there, instead of in ``~/.flwr``.
    node_config : dict
        Further ``key: value`` pairs for the ClientApp's node config.
    approved_app : str
        SHA-256 of the FedShift code this hospital approved (``fedshift app-hash``); when
        set, the ClientApp refuses every message while it runs other code ("" = no check).
    start_timeout_s : float
        How long to wait for the SuperLink to accept (or refuse) this site at start.
    reconnect_timeout_s : float
        The SuperNode gives up after this long without reaching the SuperLink
        (Flower's ``--max-wait-time``); 0 = retry forever.
    attestations, readiness : dict
        Sections of the same ``site.yaml`` read and checked by :mod:`fedshift.readiness`
        (human attestations, check settings); carried here unchecked.
    """

    name: str = MISSING
    data_path: str = MISSING
    superlink: str = "127.0.0.1:9091"
    ca_cert: str = "certs/ca.crt"
    private_key: str = MISSING
    required_level: str = "B"
    work_dir: str = "work"
    readiness_dir: str = ""
    port: int = 9094
    log_dir: str = "logs"
    flwr_home: str = "flwr-home"
    node_config: dict[str, str] = field(default_factory=dict)
    approved_app: str = ""
    start_timeout_s: float = 60.0
    reconnect_timeout_s: float = 3600.0
    attestations: dict[str, Any] = field(default_factory=dict)
    readiness: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        _check(bool(_NAME.match(self.name)), "name", self.name, "1-63 letters, digits, _ . -")
        _check(bool(self.data_path), "data_path", self.data_path, "a folder")
        _check_address("superlink", self.superlink)
        _check(
            self.required_level in LEVELS,
            "required_level",
            self.required_level,
            f"one of {', '.join(LEVELS)}",
        )
        _check_port("port", self.port)
        for key, value in self.node_config.items():
            _check(
                bool(_NODE_KEY.match(key)) and key != "data-path",
                f"node_config.{key}",
                value,
                "a key of letters, digits, '-', '_' (not data-path)",
            )
            _check(
                "'" not in str(value) and "\n" not in str(value),
                f"node_config.{key}",
                value,
                "a value without quotes (') or newlines",
            )
        _check(self.start_timeout_s > 0, "start_timeout_s", self.start_timeout_s, "> 0")
        _check(
            self.reconnect_timeout_s >= 0,
            "reconnect_timeout_s",
            self.reconnect_timeout_s,
            ">= 0 (0 = retry forever)",
        )


@dataclass(frozen=True)
class EnrolledSite:
    """A site the coordinator enrolls: its name and its public key file (``site0.pub``)."""

    name: str = MISSING
    public_key: str = MISSING


@dataclass(frozen=True)
class CoordinatorConfig:
    """The coordinator's SuperLink (``fedshift coordinator --config coordinator.yaml``).

    Attributes
    ----------
    host : str
        Address the SuperLink listens on (``0.0.0.0`` for all interfaces). One port serves
        the Fleet API (sites), the Control API (``flwr`` CLI) and the runtime API.
    port : int
        The SuperLink's port.
    public_host : str
        The name the ``flwr`` CLI dials ("" = 127.0.0.1); must be in the server
        certificate's SANs.
    ca_cert, server_cert, server_key : str
        TLS files made by ``fedshift certs``.
    database : str
        SQLite file keeping runs and enrolled sites across restarts.
    sites : list of EnrolledSite
        Sites to enroll (``flwr supernode register``); only these can connect.
    state_dir : str
        FedShift's own state: ``enrolled.json`` and the ``flwr`` CLI home (FLWR_HOME).
    connection : str
        Name of the SuperLink connection written to ``STATE_DIR/flwr-home/config.toml``.
    log_dir : str
        Where ``superlink.log`` is written.
    runtime_dependency_installation : bool
        Let the SuperLink ``uv sync`` each app's dependencies (off: use this environment).
    start_timeout_s : float
        How long to wait for the SuperLink to listen, and for each enrollment call.
    """

    host: str = "127.0.0.1"
    port: int = 9091
    public_host: str = ""
    ca_cert: str = "certs/ca.crt"
    server_cert: str = "certs/server.pem"
    server_key: str = "certs/server.key"
    database: str = "state/superlink.db"
    sites: list[EnrolledSite] = field(default_factory=list)
    state_dir: str = "state"
    connection: str = "fedshift"
    log_dir: str = "logs"
    runtime_dependency_installation: bool = False
    start_timeout_s: float = 60.0

    @property
    def address(self) -> str:
        """``HOST:PORT`` the ``flwr`` CLI uses to reach the SuperLink."""
        host = self.public_host or ("127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def validate(self) -> None:
        _check(bool(self.host), "host", self.host, "an address to listen on")
        _check_port("port", self.port)
        _check(
            bool(_NAME.match(self.connection)),
            "connection",
            self.connection,
            "letters, digits, _ . -",
        )
        names = [s.name for s in self.sites]
        for i, site in enumerate(self.sites):
            _check(
                bool(_NAME.match(site.name)),
                f"sites[{i}].name",
                site.name,
                "1-63 letters, digits, _ . -",
            )
        dupes = sorted({n for n in names if names.count(n) > 1})
        _check(not dupes, "sites", dupes, "each site name once")
        _check(self.start_timeout_s > 0, "start_timeout_s", self.start_timeout_s, "> 0")


#: fields holding file or folder paths, per config class
PATH_FIELDS: dict[type, tuple[str, ...]] = {
    SiteConfig: (
        "data_path",
        "work_dir",
        "ca_cert",
        "private_key",
        "readiness_dir",
        "log_dir",
        "flwr_home",
    ),
    CoordinatorConfig: (
        "ca_cert",
        "server_cert",
        "server_key",
        "database",
        "state_dir",
        "log_dir",
    ),
    EnrolledSite: ("public_key",),
}


def resolve_paths(cfg: T, base_dir: str | Path) -> T:
    """A copy of ``cfg`` whose relative paths are made absolute against ``base_dir``.

    ``base_dir`` is the folder of the YAML file the paths came from. Empty strings
    (meaning "the default") are left empty; ``~`` is expanded.
    """
    base = Path(base_dir).expanduser().resolve()
    changes: dict[str, object] = {}
    for name in PATH_FIELDS.get(type(cfg), ()):
        value = getattr(cfg, name)
        if value:
            path = Path(value).expanduser()
            changes[name] = os.path.normpath(path if path.is_absolute() else base / path)
    if isinstance(cfg, CoordinatorConfig):
        changes["sites"] = [resolve_paths(s, base) for s in cfg.sites]
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var,return-value]
