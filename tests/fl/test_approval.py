"""A site runs only the FedShift code it approved (node config ``approved-app``): the
code's hash changes with any edit, and the ClientApp refuses a message, before any handler
runs, when the hash of the code it runs is not the approved one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from flwr.app import Context, Message, RecordDict

from fedshift.approval import PACKAGE_DIR, code_sha256
from fedshift.errors import FedShiftError
from fedshift.fl import approval
from fedshift.fl.approval import APPROVED_APP, approval_mod

pytestmark = pytest.mark.usefixtures("task_identity")  # Messages need an identity


def test_any_edit_addition_or_rename_changes_the_hash(tmp_path: Path) -> None:
    copy = tmp_path / "fedshift"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_sha256(copy) == code_sha256()  # the same files, wherever they are
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"compiled")
    assert code_sha256(copy) == code_sha256()  # bytecode does not count
    seen = {code_sha256(copy)}
    with (copy / "fl" / "client.py").open("a") as f:  # one line added to one module
        f.write("\n# sends something else\n")
    seen.add(code_sha256(copy))
    (copy / "extra.py").write_text("")
    seen.add(code_sha256(copy))
    (copy / "extra.py").rename(copy / "extra2.py")
    seen.add(code_sha256(copy))
    assert len(seen) == 4


def _context(approved: str | None) -> Context:
    node_config = {} if approved is None else {APPROVED_APP: approved}
    return Context(run_id=1, node_id=2, node_config=node_config, state=RecordDict(), run_config={})


def _handler(msg: Message, context: Context) -> Message:
    return Message(RecordDict({}), reply_to=msg)


def test_the_client_app_refuses_unapproved_code(monkeypatch, tmp_path: Path) -> None:
    msg = Message(RecordDict({}), dst_node_id=2, message_type="query.readiness")
    approved = code_sha256()
    assert approval_mod(msg, _context(approved), _handler).has_content()
    assert approval_mod(msg, _context(None), _handler).has_content()  # no check asked
    copy = tmp_path / "fedshift"  # the app the site now runs: one module edited
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "fl" / "client.py").open("a") as f:
        f.write("\n# sends something else\n")
    monkeypatch.setattr(approval, "code_sha256", lambda: code_sha256(copy))
    called = []
    with pytest.raises(FedShiftError, match="approved FedShift code"):
        approval_mod(msg, _context(approved), lambda m, c: called.append(m))
    assert called == []  # no handler saw the message
