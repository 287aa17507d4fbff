"""Which FedShift code a site approved: the SHA-256 of the ``fedshift`` package as it is
on disk (every file under the package folder but compiled bytecode), so that a hospital
can pin the version its data-protection officer reviewed.

``fedshift app-hash`` prints it for the installed code; a site that sets
``approved_app`` in its site.yaml gets it as node config ``approved-app``, and its
ClientApp then refuses every message while the code it runs has another hash
(:mod:`fedshift.fl.approval`).

What this does not cover: a Flower app is the coordinator's; an app whose entry point
(``sites/client_app.py``) was rewritten need not run this check at all. Only the SuperNode
can verify an app before it runs, which Flower 1.42 does (``--trusted-entities``) for apps
signed through Flower's platform only (``flwr/supernode/start_client_internal.py``: an app
without the platform's ``valid_license`` verification is refused). See docs/security.md.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: the package this module belongs to: the code whose hash a site approves
PACKAGE_DIR = Path(__file__).resolve().parent


def code_files(root: Path = PACKAGE_DIR) -> list[Path]:
    """Every file under ``root`` that is code or data of the package (no ``__pycache__``,
    no ``.pyc``), sorted by relative path."""
    files = [
        p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def code_sha256(root: Path = PACKAGE_DIR) -> str:
    """The SHA-256 over each file's relative path and content hash (:func:`code_files`):
    any changed, added, removed or renamed file changes it."""
    digest = hashlib.sha256()
    for path in code_files(root):
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        digest.update(f"{path.relative_to(root).as_posix()}\0{content}\n".encode())
    return digest.hexdigest()
