"""Flower's SuperLink and SuperNode executables: their command lines, enrollment of site
keys at the SuperLink (:func:`register_site`), and what their logs say.

FedShift does not import Flower here: it runs Flower's executables
(``flower-superlink``, ``flower-supernode``, ``flwr``) as subprocesses
(:mod:`fedshift.deploy.processes`). Verified behaviour of Flower 1.42 is written down in
``server/DEPLOY_NOTES.md``.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedshift.deploy.config import CoordinatorConfig, SiteConfig
from fedshift.deploy.processes import LaunchError, Managed, find_executable
from fedshift.errors import UsageError

#: the SuperNode prints this once the SuperLink has accepted it
_NODE_ID = re.compile(r"SuperNode ID: (\d+)")
#: the SuperLink's answer to a key that was not registered (exit status is 1, not 305)
REFUSED_MARKER = "Failed to activate SuperNode"


def superlink_argv(cfg: CoordinatorConfig) -> list[str]:
    """``flower-superlink`` with TLS, node authentication and a database."""
    argv = [
        find_executable("flower-superlink"),
        "--host", cfg.host,
        "--port", str(cfg.port),
        "--ssl-ca-certfile", cfg.ca_cert,
        "--ssl-certfile", cfg.server_cert,
        "--ssl-keyfile", cfg.server_key,
        "--enable-supernode-auth",
        "--database", cfg.database,
    ]  # fmt: skip
    if not cfg.runtime_dependency_installation:
        argv.append("--disable-runtime-dependency-installation")
    return argv


def write_connection(flwr_home: str | Path, name: str, address: str, ca_cert: str | Path) -> Path:
    """Write ``FLWR_HOME/config.toml`` with one TLS connection ``name`` (the default).

    ``flwr_home`` is a folder FedShift owns: the file is replaced as a whole.
    """
    home = Path(flwr_home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(
        f'[superlink]\ndefault = "{name}"\n\n'
        f'[superlink.{name}]\naddress = "{address}"\n'
        f"root-certificates = {json.dumps(str(Path(ca_cert).resolve()))}\n"
    )
    return path


@dataclass(frozen=True)
class Registration:
    """Outcome of enrolling one site key: its node id (None if it was enrolled before)."""

    name: str
    node_id: int | None
    already: bool


def register_site(
    public_key: str | Path,
    name: str,
    connection: str,
    env: Mapping[str, str],
    timeout_s: float = 60.0,
) -> Registration:
    """Enroll a site's public key: ``flwr supernode register KEY CONN --name NAME``.

    A key registered before (kept in the SuperLink's database) is not an error.
    Raises :class:`LaunchError` with Flower's message otherwise.
    """
    argv = [
        find_executable("flwr"),
        "supernode",
        "register",
        str(public_key),
        connection,
        "--name",
        name,
        "--format",
        "json",
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=dict(env), timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LaunchError(f"enrolling site {name!r} timed out after {timeout_s:g} s") from exc
    reply = _last_json(done.stdout)
    if reply.get("success"):
        return Registration(name=name, node_id=int(reply["node-id"]), already=False)
    message = str(reply.get("error-message", "")) or (done.stderr + done.stdout).strip()
    if "already in use" in message:
        return Registration(name=name, node_id=None, already=True)
    raise LaunchError(
        f"enrolling site {name!r} ({public_key}) failed: "
        f"{message.splitlines()[-1] if message else f'exit {done.returncode}'}"
    )


def list_nodes(connection: str, env: Mapping[str, str], timeout_s: float = 60.0) -> dict[int, str]:
    """``{node_id: status}`` from ``flwr supernode ls`` (registered, online, offline,
    unregistered). Raises :class:`LaunchError` if the SuperLink does not answer."""
    argv = [find_executable("flwr"), "supernode", "ls", connection, "--format", "json"]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=dict(env), timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LaunchError(f"listing SuperNodes timed out after {timeout_s:g} s") from exc
    reply = _last_json(done.stdout)
    if not reply.get("success"):
        raise LaunchError(f"listing SuperNodes failed: {reply.get('error-message', done.stderr)}")
    return {int(n["node-id"]): str(n["status"]) for n in reply.get("nodes", [])}


def node_config_arg(values: Mapping[str, object]) -> str:
    """Flower's ``--node-config`` string: ``key='value' ...`` (TOML literal strings)."""
    parts = []
    for key, value in values.items():
        text = str(value)
        if "'" in text or "\n" in text or not re.fullmatch(r"[A-Za-z0-9_-]+", key):
            raise UsageError(
                f"node config {key}={text!r} cannot be passed to Flower "
                "(keys: letters, digits, '-', '_'; values: no quote or newline)"
            )
        parts.append(f"{key}='{text}'")
    return " ".join(parts)


def supernode_argv(cfg: SiteConfig) -> list[str]:
    """``flower-supernode`` with TLS, the site's key and its data path as node config."""
    node_config = {
        "data-path": cfg.data_path,
        "work-dir": cfg.work_dir,
        "site-name": cfg.name,
        **({"approved-app": cfg.approved_app} if cfg.approved_app else {}),
        **cfg.node_config,
    }
    argv = [
        find_executable("flower-supernode"),
        "--superlink", cfg.superlink,
        "--root-certificates", cfg.ca_cert,
        "--auth-supernode-private-key", cfg.private_key,
        "--node-config", node_config_arg(node_config),
        "--host", "127.0.0.1",
        "--port", str(cfg.port),
    ]  # fmt: skip
    if cfg.reconnect_timeout_s > 0:
        argv += ["--max-wait-time", f"{cfg.reconnect_timeout_s:g}"]
    return argv


def wait_for_activation(proc: Managed, timeout_s: float) -> int | None:
    """Wait until the SuperLink accepts the SuperNode; return its node id.

    Returns None if neither acceptance nor refusal came within ``timeout_s`` (the
    SuperNode keeps retrying, e.g. while the SuperLink is down). Raises
    :class:`LaunchError` saying why when the SuperNode exits: key not enrolled,
    certificate not trusted, or the end of its log.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = _NODE_ID.search(proc.log_text())
        if match:
            return int(match.group(1))
        if not proc.alive():
            raise LaunchError(explain_exit(proc))
        time.sleep(0.25)
    return None


def explain_exit(proc: Managed) -> str:
    """One paragraph on why a SuperNode or SuperLink stopped, from its log."""
    text = proc.log_text()
    if REFUSED_MARKER in text:
        why = (
            "the SuperLink refused this site's key: it is not enrolled. Send the public "
            "key (.pub) to the coordinator to be enrolled"
        )
    elif "CERTIFICATE_VERIFY_FAILED" in text:
        why = (
            "the SuperLink's TLS certificate is not signed by this ca_cert, or does not "
            "name the host in the superlink address"
        )
    elif "Unable to parse the private key file" in text:
        why = "the private key is not an OpenSSH ECDSA key (make one with `fedshift certs site`)"
    elif proc.popen.returncode == 0:
        why = (
            "it ended by itself (status 0): the coordinator unregistered this site "
            "or the SuperLink went away"
        )
    else:
        why = f"it exited with status {proc.popen.returncode}"
    return f"{proc.name} stopped: {why}. Log {proc.log_path}:\n{_key_lines(text)}"


def _key_lines(text: str, n: int = 6) -> str:
    """The lines of a Flower log that say what went wrong (else its last lines)."""
    marks = ("Exit Code", "[code:", "SSL", "ERROR", "Error", "error:")
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    picked = [ln for ln in lines if any(m in ln for m in marks)]
    return "\n".join((picked or lines)[-n:])


def _last_json(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        return {}
    try:
        value = json.loads(text[start:])
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _last_json(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        return {}
    try:
        value = json.loads(text[start:])
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
