"""The readiness gate a site passes before it joins a federation: its MIDaR level against
the level the federation requires. Only the level and the verdict leave the site."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedshift.deploy.config import LEVELS
from fedshift.errors import UsageError


@dataclass(frozen=True)
class GateResult:
    """The readiness gate's verdict: the site's level against the required one."""

    level: str
    required: str
    ok: bool
    reason: str
    report: dict[str, Any]


def level_at_least(level: str, required: str) -> bool:
    """True when MIDaR ``level`` is ``required`` or better (D < C < B < A)."""
    for value, key in ((level, "level"), (required, "required level")):
        if value not in LEVELS:
            raise UsageError(f"{key} {value!r} is not one of {', '.join(LEVELS)}")
    return LEVELS.index(level) >= LEVELS.index(required)


def readiness_gate(
    data_path: str | Path,
    out_dir: str | Path,
    required: str,
    site_config: str | Path | None = None,
) -> GateResult:
    """Run readiness on the site's data and compare its level with ``required``.

    ``site_config`` is the site YAML, whose ``attestations`` and ``readiness`` sections
    readiness reads. Only the level and the verdict are meant to leave the site; the
    report stays in ``out_dir`` (``readiness.json``, ``readiness.html``).
    """
    from fedshift.readiness.runner import run_readiness  # heavy: import when gating

    report = run_readiness(Path(data_path), Path(out_dir), config=site_config)
    level = str(report.get("level", "D"))
    ok = level_at_least(level, required)
    if ok:
        reason = f"readiness level {level} meets the required level {required}"
    else:
        reason = (
            f"readiness level {level} is below the level {required} this federation "
            f"requires; see {Path(out_dir) / 'readiness.html'} for what to fix"
        )
    return GateResult(level=level, required=required, ok=ok, reason=reason, report=report)
