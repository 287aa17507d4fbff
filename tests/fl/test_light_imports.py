"""A SuperNode starts a fresh ClientApp process for every message, and `fedshift --help`
is the first thing a hospital's engineer runs: neither should pay for importing torch,
MONAI or POT (several seconds each on a small machine) when it does not use them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "monai", "ot")


@pytest.mark.parametrize("module", ["sites.client_app", "fedshift.runconfig", "fedshift.cli"])
def test_module_imports_no_heavy_library(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "", f"importing {module} imported {out.stdout.strip()}"
