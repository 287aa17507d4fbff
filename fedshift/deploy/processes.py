"""Start, watch and stop Flower's SuperLink and SuperNode executables.

FedShift does not import Flower here: it runs Flower's executables (``flower-superlink``,
``flower-supernode``, ``flwr``) as subprocesses, each in its own session (process group)
with its output in a log file, so that Ctrl-C on ``fedshift site`` / ``fedshift
coordinator`` reaches Flower as one clean SIGINT per process group. Every wait has a
timeout. Verified behaviour of Flower 1.42 is written down in ``server/DEPLOY_NOTES.md``.

Also here: the readiness gate a site passes before it joins (:func:`readiness_gate`), and
enrollment of site public keys at the SuperLink (:func:`register_site`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedshift.deploy.config import LEVELS, CoordinatorConfig, SiteConfig
from fedshift.errors import UsageError

#: SIGINT, then SIGTERM, then SIGKILL: seconds allowed after each
STOP_TIMEOUTS_S: tuple[float, float] = (20.0, 5.0)
#: the SuperNode prints this once the SuperLink has accepted it
_NODE_ID = re.compile(r"SuperNode ID: (\d+)")
#: the SuperLink's answer to a key that was not registered (exit status is 1, not 305)
REFUSED_MARKER = "Failed to activate SuperNode"


class LaunchError(UsageError):
    """A Flower process could not be started, was refused, or stopped early."""


# --------------------------------------------------------------------------- processes


def find_executable(name: str) -> str:
    """Path of a Flower executable: next to this Python first, then on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise LaunchError(
            f"executable {name!r} not found next to {sys.executable} or on PATH "
            "(is flwr installed in this environment?)"
        )
    return found


def flower_env(flwr_home: str | Path | None = None) -> dict[str, str]:
    """Environment for Flower's executables.

    This Python's ``bin`` goes first on PATH (the SuperLink and SuperNode start
    ``flower-superexec`` by name), telemetry is off (nothing leaves the hospital that
    FedShift did not decide to send), and ``FLWR_HOME`` is set when given.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    if flwr_home is not None:
        env["FLWR_HOME"] = str(flwr_home)
    return env


@dataclass
class Managed:
    """A started executable: its process (leader of its own group) and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        """The whole log so far ("" if it cannot be read)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def start_process(
    name: str,
    argv: Sequence[str],
    log_path: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> Managed:
    """Start ``argv`` in a new session with stdout and stderr appended to ``log_path``."""
    log = Path(log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        fh.write(f"\n=== fedshift: {' '.join(argv)}\n".encode())
        fh.flush()
        popen = subprocess.Popen(  # noqa: S603 (argv built by FedShift, no shell)
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    return Managed(name=name, popen=popen, log_path=log)


def stop_process(proc: Managed, timeouts_s: tuple[float, float] = STOP_TIMEOUTS_S) -> int | None:
    """Stop ``proc`` and everything it started: SIGINT, then SIGTERM, then SIGKILL.

    Signals go to the process group (the SuperNode's ``flower-superexec`` and
    ``flwr-clientapp`` live there) and to descendants that moved to their own session
    (the SuperLink's ``flower-superexec``), all found before the first signal.
    Ctrl-C and SIGTERM are ignored meanwhile (every wait is bounded). A second call does
    nothing (the group id may belong to someone else by then).
    Returns the exit status (None if it could not be reaped).
    """
    if proc.stopped:
        return proc.popen.poll()
    with _shielded():
        status = _stop(proc, timeouts_s)
    proc.stopped = True
    return status


def _stop(proc: Managed, timeouts_s: tuple[float, float]) -> int | None:
    family = _descendants(proc.pid)
    for sig, wait_s in ((signal.SIGINT, timeouts_s[0]), (signal.SIGTERM, timeouts_s[1])):
        if proc.alive():
            _signal_group(proc.pid, sig)
            _wait(proc, wait_s)
    if proc.alive():
        _signal_group(proc.pid, signal.SIGKILL)
        _wait(proc, 5.0)
    # leftovers: children that outlived the leader (e.g. after a refused start)
    _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeouts_s[1]
    while time.monotonic() < deadline and any(_pid_alive(p) for p in family):
        time.sleep(0.1)  # Flower's children exit by themselves once their parent is gone
    for pid in family:
        if _pid_alive(pid):
            _signal_pid(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_pid_alive(p) for p in family):
        time.sleep(0.05)
    return proc.popen.poll()


def wait_while_running(procs: Sequence[Managed], poll_s: float = 1.0) -> Managed:
    """Block until one of ``procs`` exits and return it (use inside :func:`interruptible`)."""
    while True:
        for proc in procs:
            if not proc.alive():
                return proc
        time.sleep(poll_s)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM both raise KeyboardInterrupt.

    SIGTERM (``systemctl stop``, ``kill``) then stops everything the way Ctrl-C does, and
    Ctrl-C works even when the shell started FedShift with SIGINT ignored (``cmd &``).
    Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM in the block: a stop in progress is not cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_for_port(host: str, port: int, timeout_s: float, proc: Managed | None = None) -> None:
    """Wait until ``host:port`` accepts TCP connections.

    Raises :class:`LaunchError` after ``timeout_s`` seconds, or as soon as ``proc``
    exits (quoting the end of its log).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise LaunchError(
                f"{proc.name} exited with status {proc.popen.returncode} before "
                f"listening on {host}:{port}; log {proc.log_path}:\n"
                f"{proc.log_tail()}"
            )
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.25)
    raise LaunchError(f"nothing listens on {host}:{port} after {timeout_s:g} s")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (for tests and loopback runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- SuperLink


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


# --------------------------------------------------------------------------- SuperNode


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


# --------------------------------------------------------------------------- readiness


@dataclass(frozen=True)
class GateResult:
    """The readiness gate's verdict: the site's level against the required one."""

    level: str
    required: str
    ok: bool
    reason: str
    report: dict[str, Any]


def level_at_least(level: str, required: str) -> bool:
    """True when MIDaR ``level`` is ``required`` or better (D < C < B < A)."""
    for value, key in ((level, "level"), (required, "required level")):
        if value not in LEVELS:
            raise UsageError(f"{key} {value!r} is not one of {', '.join(LEVELS)}")
    return LEVELS.index(level) >= LEVELS.index(required)


def readiness_gate(
    data_path: str | Path,
    out_dir: str | Path,
    required: str,
    site_config: str | Path | None = None,
) -> GateResult:
    """Run readiness on the site's data and compare its level with ``required``.

    ``site_config`` is the site YAML, whose ``attestations`` and ``readiness`` sections
    readiness reads. Only the level and the verdict are meant to leave the site; the
    report stays in ``out_dir`` (``readiness.json``, ``readiness.html``).
    """
    from fedshift.readiness.runner import run_readiness  # heavy: import when gating

    report = run_readiness(Path(data_path), Path(out_dir), config=site_config)
    level = str(report.get("level", "D"))
    ok = level_at_least(level, required)
    if ok:
        reason = f"readiness level {level} meets the required level {required}"
    else:
        reason = (
            f"readiness level {level} is below the level {required} this federation "
            f"requires; see {Path(out_dir) / 'readiness.html'} for what to fix"
        )
    return GateResult(level=level, required=required, ok=ok, reason=reason, report=report)


# --------------------------------------------------------------------------- helpers


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


def _wait(proc: Managed, timeout_s: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=timeout_s)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _descendants(pid: int) -> list[int]:
    """PIDs of every descendant of ``pid`` (Linux /proc; [] elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out
