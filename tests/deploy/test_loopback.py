"""A real deployment on loopback: `fedshift coordinator` (SuperLink, TLS, node auth), three
enrolled `fedshift site` SuperNodes and one unenrolled, then one federated round of the
real FedShift app through `flwr run`, with its secure statistics rounds (before round 1
and after the last) and the shift diagnosis. Every process started is stopped."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from deployment import prepare, start, stop_all, wait_for, write_configs
from leaks import holds_sequence

from fedshift.deploy.processes import flower_env, free_port
from fedshift.shift.stats import StatsLayout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENROLLED = ("site0", "site1", "site2")
INTENSITY = StatsLayout(16).fields()["intensity"]  # the default feat_dim
RUN_CONFIG = (
    "fed.rounds=1 fed.min_sites=3 fed.node_wait_s=120 seg.train.local_steps=2 "
    "fed.secure_stats=true fed.stats_samples=32 "
    "seg.train.batch_size=1 seg.eval.sw_batch_size=1 seg.train.patch_size='json:[16, 16, 16]' "
)
#: ~15 messages per site, each in a fresh ClientApp process: 5-15 min on a 2-core machine
RUN_TIMEOUT_S = 1800


def test_loopback_deployment(tmp_path: Path) -> None:
    prepare(tmp_path, "loopback", (*ENROLLED, "stranger"))
    port = free_port()
    write_configs(tmp_path, port, ENROLLED, ("stranger",))
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["coordinator"] = start(
            ["coordinator", "--config", "coordinator.yaml"], tmp_path / "coordinator.out", tmp_path
        )
        wait_for(tmp_path / "coordinator.out", "Ctrl-C", procs["coordinator"], 120)
        for name in (*ENROLLED, "stranger"):
            procs[name] = start(
                ["site", "--config", f"{name}.yaml"], tmp_path / f"{name}.out", tmp_path
            )
        assert procs["stranger"].wait(timeout=180) != 0
        refused = (tmp_path / "stranger.out").read_text()
        assert "enrol" in refused.lower() or "refused" in refused.lower(), refused
        for name in ENROLLED:
            wait_for(tmp_path / f"{name}.out", "joined", procs[name], 180)

        env = flower_env(tmp_path / "state" / "flwr-home")
        out = tmp_path / "run"
        try:  # each message starts a ClientApp process per site: slow on 2 busy cores
            run = subprocess.run(
                [
                    "flwr",
                    "run",
                    str(ROOT),
                    "fedshift",
                    "--stream",
                    "--run-config",
                    RUN_CONFIG
                    + f"out='{out}' fed.enrolled_sites='{tmp_path / 'state' / 'enrolled.json'}'",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:  # show how far the ServerApp got
            streamed = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout
            raise AssertionError(
                f"flwr run did not finish in {RUN_TIMEOUT_S} s; its last output:\n"
                f"{(streamed or '')[-4000:]}"
            ) from None
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        metrics = json.loads((out / "metrics.json").read_text())
        assert set(metrics["rounds"][0]["sites"]) == set(ENROLLED)
        for name in ENROLLED:
            assert metrics["rounds"][0]["sites"][name]["train_num-examples"] > 0
            assert 0.0 <= metrics["final"]["sites"][name]["dice"] <= 1.0
        for name in ENROLLED:  # the images stayed at the sites: only their work folders hold caches
            assert (tmp_path / "work" / name / "cache").is_dir()
        assert not (out / "sites").exists()
        # secure statistics: two rounds over the three sites, a verdict for each
        stats = metrics["federation"]["statistics"]
        assert [s["after_round"] for s in stats] == [0, 1]
        assert all(s["sites"] == sorted(ENROLLED) and not s["dropped"] for s in stats)
        diagnosis = json.loads((out / "diagnosis.json").read_text())
        assert set(diagnosis["sites"]) == set(ENROLLED)
        coordinator_text = run.stdout + run.stderr + json.dumps(metrics) + json.dumps(diagnosis)
        coordinator_text += (tmp_path / "coordinator.out").read_text()
        for name in ENROLLED:  # each site's own statistics stayed in its work folder
            with np.load(tmp_path / "work" / name / "shift" / "local.npz") as local:
                counts = [c for c in local["vector"][INTENSITY] if c > 0]
            assert len(counts) >= 5 and not holds_sequence(coordinator_text, counts), name
        # each SuperNode logged every message it sent, in its own work folder
        from fedshift.audit import find_logs, read_log, summarise

        for name in ENROLLED:
            (site, log), *_ = find_logs(tmp_path / "work" / name).items()
            audit = summarise(read_log(log))
            assert site == name and not audit.image_like and audit.errors == 0
            assert audit.messages["train"] == 1 and audit.messages["query.secagg_masked"] == 2
        # the last message: every enrolled site keeps the final model and segments with it
        from fedshift.bundle import load_bundle
        from fedshift.inference.predict import predict_inputs

        assert load_bundle(out / "model").info["site"] is None
        for name in ENROLLED:
            kept = load_bundle(tmp_path / "work" / name / "model")
            assert kept.info["site"] == name
            done = predict_inputs(
                kept, [tmp_path / "data" / name / "imagesTs"], tmp_path / "pred" / name
            )
            assert done["n_ok"] >= 1 and done["n_failed"] == 0, done
    finally:
        stop_all(procs)
    for name in ENROLLED:  # Ctrl-C is a clean stop
        assert procs[name].returncode == 0, name
    assert procs["coordinator"].returncode == 0
