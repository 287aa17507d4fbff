"""Launching Flower's executables: argv, node config, readiness gate, process control.

The ``slow`` test starts a real SuperLink (TLS + node authentication) on a free loopback
port, enrolls one site and checks that its SuperNode is accepted while a SuperNode with
an unenrolled key is refused; everything started is stopped.
"""

from __future__ import annotations

import re
import socket
import sys
import time
import types
from pathlib import Path

import pytest

from fedshift.deploy import certs, flower
from fedshift.deploy import processes as proc
from fedshift.deploy.config import CoordinatorConfig, EnrolledSite, SiteConfig
from fedshift.deploy.gate import level_at_least, readiness_gate
from fedshift.errors import UsageError

# --------------------------------------------------------------------------- pure parts


def test_node_config_arg_quotes_values() -> None:
    arg = flower.node_config_arg({"data-path": "/data/my site", "n": 3})
    assert arg == "data-path='/data/my site' n='3'"


@pytest.mark.parametrize("key, value", [("data-path", "it's"), ("a b", "x"), ("k", "a\nb")])
def test_node_config_arg_refuses_what_flower_cannot_parse(key: str, value: str) -> None:
    with pytest.raises(UsageError, match="cannot be passed to Flower"):
        flower.node_config_arg({key: value})


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_supernode_argv(tmp_path: Path) -> None:
    cfg = SiteConfig(
        name="site0",
        data_path=str(tmp_path / "data"),
        work_dir=str(tmp_path / "work"),
        superlink="localhost:9091",
        ca_cert="/c/ca.crt",
        private_key="/k/site0.key",
        port=9100,
        node_config={"fold": "1"},
    )
    argv = flower.supernode_argv(cfg)
    assert Path(argv[0]).name == "flower-supernode"
    assert _flag(argv, "--superlink") == "localhost:9091"
    assert _flag(argv, "--root-certificates") == "/c/ca.crt"
    assert _flag(argv, "--auth-supernode-private-key") == "/k/site0.key"
    assert _flag(argv, "--port") == "9100"
    assert _flag(argv, "--max-wait-time") == "3600"
    data, work = tmp_path / "data", tmp_path / "work"
    expected = f"data-path='{data}' work-dir='{work}' site-name='site0' fold='1'"
    assert _flag(argv, "--node-config") == expected
    assert "--insecure" not in argv


def test_superlink_argv() -> None:
    cfg = CoordinatorConfig(host="0.0.0.0", port=9191, database="/s/db.sqlite")
    argv = flower.superlink_argv(cfg)
    assert Path(argv[0]).name == "flower-superlink"
    for flag in ("--enable-supernode-auth", "--disable-runtime-dependency-installation"):
        assert flag in argv
    assert _flag(argv, "--port") == "9191" and _flag(argv, "--database") == "/s/db.sqlite"
    assert {"--ssl-ca-certfile", "--ssl-certfile", "--ssl-keyfile"} <= set(argv)
    assert "--insecure" not in argv
    assert cfg.address == "127.0.0.1:9191"


def test_write_connection(tmp_path: Path) -> None:
    path = flower.write_connection(tmp_path / "home", "fed", "localhost:9091", tmp_path / "ca.crt")
    text = path.read_text()
    assert 'default = "fed"' in text and "[superlink.fed]" in text
    assert 'address = "localhost:9091"' in text
    assert f'root-certificates = "{tmp_path / "ca.crt"}"' in text


def test_levels() -> None:
    assert level_at_least("A", "B") and level_at_least("B", "B")
    assert not level_at_least("C", "B")
    with pytest.raises(UsageError, match="'E' is not one of"):
        level_at_least("E", "B")


def _fake_runner(monkeypatch: pytest.MonkeyPatch, level: str) -> list[tuple[Path, Path, object]]:
    calls: list[tuple[Path, Path, object]] = []

    def run_readiness(site_dir: Path, out_dir: Path, config: object = None) -> dict[str, object]:
        calls.append((site_dir, out_dir, config))
        return {"level": level, "counts": {"error": 1}}

    module = types.ModuleType("fedshift.readiness.runner")
    module.run_readiness = run_readiness  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fedshift.readiness.runner", module)
    return calls


def test_readiness_gate_refuses_below_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fake_runner(monkeypatch, "C")
    gate = readiness_gate(tmp_path / "data", tmp_path / "out", "B", site_config="s.yaml")
    assert calls == [(tmp_path / "data", tmp_path / "out", "s.yaml")]
    assert not gate.ok and gate.level == "C"
    assert "level C is below the level B" in gate.reason and "readiness.html" in gate.reason


def test_readiness_gate_passes_at_or_above(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_runner(monkeypatch, "B")
    assert readiness_gate(tmp_path, tmp_path / "out", "B").ok
    _fake_runner(monkeypatch, "A")
    assert readiness_gate(tmp_path, tmp_path / "out", "B").ok


def test_register_site_parses_flwr_json(monkeypatch: pytest.MonkeyPatch) -> None:
    replies = iter(
        [
            '{\n  "success": true,\n  "node-id": 42\n}\n',
            '{"success": false, "error-message": "Using SuperLink: x\\n\\n[code: 23] Public '
            'key already in use."}',
            '{"success": false, "error-message": "[code: 9] boom"}',
        ]
    )

    def fake_run(argv: list[str], **kwargs: object) -> types.SimpleNamespace:
        assert argv[1:4] == ["supernode", "register", "k.pub"] and "--format" in argv
        return types.SimpleNamespace(stdout=next(replies), stderr="", returncode=0)

    monkeypatch.setattr(flower.subprocess, "run", fake_run)
    assert flower.register_site("k.pub", "s0", "fed", {}) == flower.Registration("s0", 42, False)
    assert flower.register_site("k.pub", "s0", "fed", {}).already
    with pytest.raises(proc.LaunchError, match=r"enrolling site 's0' .* \[code: 9\] boom"):
        flower.register_site("k.pub", "s0", "fed", {})


def test_list_nodes_parses_flwr_json(monkeypatch: pytest.MonkeyPatch) -> None:
    out = (
        "Using SuperLink: fed\n"
        '{"success": true, "nodes": [{"node-id": "7", "status": "online"},'
        ' {"node-id": "8", "status": "unregistered"}]}'
    )

    def fake_run(argv: list[str], **kwargs: object) -> types.SimpleNamespace:
        assert argv[1:4] == ["supernode", "ls", "fed"]
        return types.SimpleNamespace(stdout=out, stderr="", returncode=0)

    monkeypatch.setattr(flower.subprocess, "run", fake_run)
    assert flower.list_nodes("fed", {}) == {7: "online", 8: "unregistered"}


# --------------------------------------------------------------------------- processes

_STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         start_new_session=True)
print("GRANDCHILD=%d" % child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie counts as gone)."""
    return proc._pid_alive(pid)


def test_stop_escalates_and_reaches_other_sessions(tmp_path: Path) -> None:
    """SIGINT ignored -> SIGTERM; a grandchild in its own session is stopped too."""
    managed = proc.start_process("stub", [sys.executable, "-c", _STUBBORN], tmp_path / "x.log")
    try:
        deadline = time.monotonic() + 20
        while not re.search(r"^GRANDCHILD=\d+$", managed.log_text(), re.M):
            assert time.monotonic() < deadline, managed.log_text()
            time.sleep(0.05)
        child = int(re.findall(r"^GRANDCHILD=(\d+)$", managed.log_text(), re.M)[0])
        start = time.monotonic()
        status = proc.stop_process(managed, timeouts_s=(1.0, 2.0))
        assert status is not None and status != 0
        assert time.monotonic() - start < 8
        assert not _alive(child)
    finally:
        proc.stop_process(managed, timeouts_s=(1.0, 1.0))


def test_wait_for_port(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        proc.wait_for_port("127.0.0.1", server.getsockname()[1], timeout_s=5)
    port = proc.free_port()
    with pytest.raises(proc.LaunchError, match=f"nothing listens on 127.0.0.1:{port}"):
        proc.wait_for_port("127.0.0.1", port, timeout_s=0.5)
    died = proc.start_process("stub", [sys.executable, "-c", "print('bye')"], tmp_path / "d.log")
    with pytest.raises(proc.LaunchError, match="stub exited with status 0 before listening"):
        proc.wait_for_port("127.0.0.1", port, timeout_s=10, proc=died)


def test_wait_for_activation_reads_the_log(tmp_path: Path) -> None:
    ok = proc.start_process(
        "SuperNode",
        [
            sys.executable,
            "-c",
            "import time; print('SuperNode ID: 123', flush=True); time.sleep(30)",
        ],  # fmt: skip
        tmp_path / "ok.log",
    )
    try:
        assert flower.wait_for_activation(ok, timeout_s=20) == 123
    finally:
        proc.stop_process(ok, timeouts_s=(2.0, 2.0))
    refused = proc.start_process(
        "SuperNode",
        [
            sys.executable,
            "-c",
            f"print('[code: 2004] {flower.REFUSED_MARKER}.'); raise SystemExit(1)",
        ],  # fmt: skip
        tmp_path / "no.log",
    )
    with pytest.raises(proc.LaunchError, match="not enrolled"):
        flower.wait_for_activation(refused, timeout_s=20)
    quiet = proc.start_process("SuperNode", [sys.executable, "-c", "import time; time.sleep(30)"],
                               tmp_path / "q.log")  # fmt: skip
    try:
        assert flower.wait_for_activation(quiet, timeout_s=0.5) is None
    finally:
        proc.stop_process(quiet, timeouts_s=(2.0, 2.0))


# --------------------------------------------------------------------------- real Flower


@pytest.mark.slow
def test_superlink_accepts_enrolled_and_refuses_unenrolled(tmp_path: Path) -> None:
    """Real flower-superlink (TLS, node auth) + two flower-supernodes on loopback."""
    pki = certs.make_ca(tmp_path / "certs")
    server = certs.make_server_cert(tmp_path / "certs", ["localhost", "127.0.0.1"], pki)
    enrolled = certs.make_site_keypair(tmp_path / "keys", "site0")
    stranger = certs.make_site_keypair(tmp_path / "keys", "stranger")
    port = proc.free_port()
    coord = CoordinatorConfig(
        host="127.0.0.1",
        port=port,
        ca_cert=str(pki.cert),
        server_cert=str(server.cert),
        server_key=str(server.key),
        database=str(tmp_path / "state" / "superlink.db"),
        sites=[EnrolledSite(name="site0", public_key=str(enrolled.public_key))],
    )
    home = tmp_path / "flwr-home"
    flower.write_connection(home, "fedshift", coord.address, pki.cert)
    env = proc.flower_env(home)
    (tmp_path / "state").mkdir()
    started: list[proc.Managed] = []
    try:
        link = proc.start_process(
            "SuperLink", flower.superlink_argv(coord), tmp_path / "superlink.log", env=env
        )
        started.append(link)
        proc.wait_for_port("127.0.0.1", port, timeout_s=60, proc=link)
        reg = flower.register_site(enrolled.public_key, "site0", "fedshift", env, timeout_s=60)
        assert reg.node_id is not None and not reg.already
        again = flower.register_site(enrolled.public_key, "site0", "fedshift", env, timeout_s=60)
        assert again.already

        nodes = {}
        for name, pair in (("site0", enrolled), ("stranger", stranger)):
            site = SiteConfig(
                name=name,
                data_path=str(tmp_path / name),
                superlink=f"localhost:{port}",
                ca_cert=str(pki.cert),
                private_key=str(pair.private_key),
                port=proc.free_port(),
            )
            nodes[name] = proc.start_process(
                name, flower.supernode_argv(site), tmp_path / f"{name}.log", env=env
            )
            started.append(nodes[name])

        with pytest.raises(proc.LaunchError, match="not enrolled"):
            flower.wait_for_activation(nodes["stranger"], timeout_s=90)
        assert nodes["stranger"].popen.returncode == 1  # Flower logs "Exit Code: 305"
        assert "[code: 2004] Failed to activate SuperNode" in nodes["stranger"].log_text()
        assert flower.wait_for_activation(nodes["site0"], timeout_s=90) == reg.node_id
        assert nodes["site0"].alive() and link.alive()
        assert flower.list_nodes("fedshift", env)[reg.node_id] == "online"
    finally:
        families = [(m, proc._descendants(m.pid)) for m in started]
        for managed in reversed(started):
            proc.stop_process(managed)
        for managed, family in families:
            assert not managed.alive()
            assert not [p for p in family if _alive(p)], f"{managed.name} left {family}"
