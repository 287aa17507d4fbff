"""Print the SHA-256 of the FedShift code installed here (every file of the ``fedshift``
package but compiled bytecode), the value a hospital puts in its site.yaml as
``approved_app`` after reviewing that version: its ClientApp then refuses every message
while it runs other code. What the check covers and what it cannot: docs/security.md.

Examples:
  fedshift app-hash              # the hash, then the folder it was computed over
  fedshift app-hash --quiet      # the hash only (for scripts)
"""

from __future__ import annotations

import argparse

from fedshift.approval import PACKAGE_DIR, code_files, code_sha256

HELP = "print the SHA-256 of the installed FedShift code (site.yaml: approved_app)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="print the hash only")


def run(args: argparse.Namespace) -> int:
    print(code_sha256())
    if not args.quiet:
        print(f"over {len(code_files())} files under {PACKAGE_DIR}")
    return 0
