"""Start, watch and stop Flower's SuperLink and SuperNode executables.

FedShift does not import Flower here: it runs Flower's executables (``flower-superlink``,
``flower-supernode``, ``flwr``) as subprocesses, each in its own session (process group)
with its output in a log file, so that Ctrl-C on ``fedshift site`` / ``fedshift
coordinator`` reaches Flower as one clean SIGINT per process group. Every wait has a
timeout. Verified behaviour of Flower 1.42 is written down in ``server/DEPLOY_NOTES.md``.

Their command lines, enrollment of site keys and what their logs say are in
:mod:`fedshift.deploy.flower`; the readiness gate a site passes before it joins is
:func:`fedshift.deploy.gate.readiness_gate`.
"""

from __future__ import annotations

import contextlib
import os
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

from fedshift.errors import UsageError

#: SIGINT, then SIGTERM, then SIGKILL: seconds allowed after each
STOP_TIMEOUTS_S: tuple[float, float] = (20.0, 5.0)


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


# --------------------------------------------------------------------------- helpers


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
