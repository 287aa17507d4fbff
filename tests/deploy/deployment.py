"""What the deployment tests share: synthetic site folders with certificates and keys,
the coordinator's and the sites' configs, starting `fedshift` commands and waiting for
what they print."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

from fedshift.cli import main
from fedshift.data.synth.config import SiteSpec, SynthConfig
from fedshift.data.synth.federation import write_federation
from fedshift.deploy.processes import _descendants, free_port


def prepare(tmp: Path, name: str, sites: tuple[str, ...]) -> None:
    """Tiny synthetic folders for ``sites`` in ``tmp/data``, the federation's CA, server
    certificate and one key pair per site in ``tmp/deploy``."""
    cfg = SynthConfig(
        name=name,
        seed=3,
        voxel_mm=6.0,
        n_train=5,
        n_test=1,
        sites={s: SiteSpec() for s in sites},
    )
    write_federation(cfg, tmp / "data")
    argv = ["certs", "init", "--out", str(tmp / "deploy"), "--host", "localhost"]
    assert main([*argv, "--host", "127.0.0.1", "--sites", *sites]) == 0


def wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> str:
    """The text of ``path`` once it holds ``text``; fails when ``proc`` ends first or after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = path.read_text() if path.exists() else ""
        if text in out:
            return out
        if proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before {text!r}:\n{out}")
        time.sleep(0.3)
    raise AssertionError(f"no {text!r} after {timeout} s:\n{path.read_text()}")


def start(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    """``fedshift ARGS`` in its own session, its output in ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "fedshift.cli", *args],
        cwd=cwd,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def write_configs(tmp: Path, port: int, enrolled: tuple[str, ...], others: tuple[str, ...]) -> None:
    """coordinator.yaml enrolling ``enrolled``; a site.yaml for each of them and ``others``."""
    sites = [{"name": s, "public_key": f"deploy/keys/{s}.pub"} for s in enrolled]
    coordinator = {
        "host": "127.0.0.1",
        "port": port,
        "public_host": "localhost",
        "sites": sites,
        "ca_cert": "deploy/certs/ca.crt",
        "server_cert": "deploy/certs/server.pem",
        "server_key": "deploy/certs/server.key",
    }
    OmegaConf.save(OmegaConf.create(coordinator), tmp / "coordinator.yaml")
    for name in (*enrolled, *others):
        site = {
            "name": name,
            "data_path": f"data/{name}",
            "superlink": f"localhost:{port}",
            "ca_cert": "deploy/certs/ca.crt",
            "private_key": f"deploy/keys/{name}.key",
            "required_level": "B",
            "port": free_port(),
            "work_dir": f"work/{name}",
            "log_dir": f"logs/{name}",
            "flwr_home": f"flwr/{name}",
            "start_timeout_s": 60,
            "attestations": {
                "ethics_reference": "synthetic data",
                "annotation_protocol": "synthetic",
            },
        }
        OmegaConf.save(OmegaConf.create(site), tmp / f"{name}.yaml")


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and every process it started (also those in their own session):
    a crash, no clean shutdown."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)


def stop_all(procs: Mapping[str, subprocess.Popen]) -> None:
    """Ctrl-C each process still running (its group), last started first; one that has not
    stopped after 60 s is killed with everything it started."""
    for proc in reversed(list(procs.values())):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                kill_tree(proc)
