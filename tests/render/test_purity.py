"""fedshift.render stays pure: the standard library, numpy, matplotlib, jinja2 and
fedshift.errors only, so that every package with a report may import it (no cycle)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import fedshift.render

ALLOWED = {"numpy", "matplotlib", "jinja2"}
OWN = ("fedshift.render", "fedshift.errors")


def test_render_imports_only_what_it_may() -> None:
    bad = []
    for path in Path(fedshift.render.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                top = name.split(".")[0]
                if name.startswith(OWN) or top in ALLOWED or top in sys.stdlib_module_names:
                    continue
                bad.append(f"{path.name}: {name}")
    assert not bad, f"fedshift.render imports {bad}"
