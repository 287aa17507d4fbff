"""Faults in a real deployment on loopback (TLS, node authentication, secure model
updates): four enrolled sites; one site is killed (SIGKILL, every process it runs) in the
middle of a training round, after it shared its keys, and the round still completes: the
secure sum unmasks over the other three through the dropout path. Then the coordinator is
killed (SuperLink and ServerApp) right after round 1's checkpoint; it is restarted, the
killed site too, and ``resume=true`` continues with round 2, in which the restarted site
trains again. No round is lost or repeated, and every wait is bounded."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
from deployment import kill_tree, prepare, start, stop_all, wait_for, write_configs

from fedshift.deploy.processes import flower_env, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SITES = ("site0", "site1", "site2", "site3")
VICTIM = "site3"
RUN_CONFIG = (
    "fed.rounds=2 fed.min_sites=4 fed.node_wait_s=300 fed.timeout_s=300 "
    "fed.min_train_sites=2 fed.secure_updates=true fed.secure_stats=false "
    "fed.align_intensity=false seg.train.local_steps=2 "
    "seg.train.batch_size=1 seg.eval.sw_batch_size=1 seg.train.patch_size='json:[16, 16, 16]' "
)
STEP_TIMEOUT_S = 1500


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout} s")
        time.sleep(0.2)


def entries(path: Path, message_type: str) -> int:
    """How many replies of ``message_type`` a site's audit log holds."""
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    return sum(json.loads(line)["message_type"] == message_type for line in lines if line)


def flwr_run(tmp: Path, out: Path, extra: str, log: Path) -> subprocess.Popen:
    env = flower_env(tmp / "state" / "flwr-home")
    enrolled = tmp / "state" / "enrolled.json"
    config = RUN_CONFIG + f"out='{out}' fed.enrolled_sites='{enrolled}' {extra}"
    cmd = ["flwr", "run", str(ROOT), "fedshift", "--stream", "--run-config", config]
    return subprocess.Popen(
        cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def test_a_site_and_the_coordinator_killed_mid_run(tmp_path: Path) -> None:
    prepare(tmp_path, "faults", SITES)
    write_configs(tmp_path, free_port(), SITES, ())
    out = tmp_path / "run"
    audit = tmp_path / "work" / VICTIM / "audit" / "outgoing.jsonl"
    procs: dict[str, subprocess.Popen] = {}

    def start_coordinator(log: str) -> None:
        procs["coordinator"] = start(
            ["coordinator", "--config", "coordinator.yaml"], tmp_path / log, tmp_path
        )
        wait_for(tmp_path / log, "Ctrl-C", procs["coordinator"], 120)

    def start_site(name: str, log: str) -> None:
        procs[name] = start(["site", "--config", f"{name}.yaml"], tmp_path / log, tmp_path)
        wait_for(tmp_path / log, "joined", procs[name], 180)

    try:
        start_coordinator("coordinator.out")
        for name in SITES:
            start_site(name, f"{name}.out")

        # run 1: the victim dies after sharing its keys in round 1's secure sum
        run1 = procs["run1"] = flwr_run(tmp_path, out, "", tmp_path / "run1.out")
        wait_until(
            lambda: entries(audit, "query.secagg_shares") >= 1 or run1.poll() is not None,
            STEP_TIMEOUT_S,
            f"{VICTIM} sharing its keys in round 1",
        )
        assert run1.poll() is None, (tmp_path / "run1.out").read_text()[-3000:]
        kill_tree(procs[VICTIM])
        checkpoint = out / "checkpoints" / "round_001.npz"
        wait_until(
            lambda: checkpoint.is_file() or run1.poll() is not None,
            STEP_TIMEOUT_S,
            "round 1 completing without the killed site",
        )
        assert checkpoint.is_file(), (tmp_path / "run1.out").read_text()[-3000:]

        # the coordinator dies right after round 1's checkpoint
        kill_tree(procs["coordinator"])
        kill_tree(run1)
        first = json.loads((out / "metrics.json").read_text())
        round1 = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        assert [r["round"] for r in first["rounds"]] == [1]
        # it trained and reported, then dropped out of the secure sum: the mean is the others'
        assert first["rounds"][0]["sites"][VICTIM]["train_dropped"] == 1
        assert not first["final"]
        streamed = (tmp_path / "run1.out").read_text()
        assert "dropped after sharing keys" in streamed or "3 of 4 sites" in streamed, streamed[
            -3000:
        ]

        # restart: the coordinator, then the killed site; the others reconnect themselves
        start_coordinator("coordinator2.out")
        start_site(VICTIM, f"{VICTIM}-2.out")
        run2 = procs["run2"] = flwr_run(tmp_path, out, "resume=true", tmp_path / "run2.out")
        run2.wait(timeout=STEP_TIMEOUT_S)
        resumed = (tmp_path / "run2.out").read_text()
        assert run2.returncode == 0, resumed[-3000:]
        metrics = json.loads((out / "metrics.json").read_text())
        assert [r["round"] for r in metrics["rounds"]] == [1, 2]  # none lost or repeated
        assert metrics["rounds"][0] == first["rounds"][0]  # round 1 as run 1 left it
        assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == round1
        round2 = metrics["rounds"][1]["sites"]
        assert all(round2[s]["train_num-examples"] > 0 for s in SITES)  # the victim trains
        assert set(metrics["final"]["sites"]) == set(SITES)
        assert (tmp_path / "work" / VICTIM / "model").is_dir()  # it keeps the final model
    finally:
        stop_all(procs)
