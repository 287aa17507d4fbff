"""Which site folders a run uses: the user's, or the synthetic scenario's (generated once)."""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fedshift.config import to_yaml
from fedshift.data.synth.config import SiteSpec, SynthConfig
from fedshift.data.synth.federation import write_federation
from fedshift.errors import UsageError
from fedshift.logs import Progress
from fedshift.runconfig import RunConfig, synth_config

log = logging.getLogger(__name__)


def site_work_dir(cfg: RunConfig, data_dir: str | Path, work_dir: str | Path | None = None) -> Path:
    """A site's private working folder: ``work_dir`` where the hospital named one (its
    SuperNode's ``work-dir``), else ``<run out>/sites/<site folder name>`` (simulation,
    local baselines)."""
    if work_dir is not None:
        return Path(work_dir)
    return Path(cfg.out) / "sites" / Path(data_dir).resolve().name


def synth_root(cfg: RunConfig) -> Path:
    synth = synth_config(cfg)
    return Path(cfg.data.synth_dir or f"runs/data/{synth.name}-seed{synth.seed}").resolve()


def ensure_synthetic(cfg: RunConfig) -> Path:
    """Generate the run's synthetic federation, or reuse it when the same settings made it.

    Several processes may ask at once (simulated sites): a file lock makes one generate
    while the others wait, then reuse.
    """
    root = synth_root(cfg)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _ensure_synthetic_locked(cfg, root)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _with_defaults(tree: Any) -> Any:
    """A written scenario's settings with every setting it predates at its default (a
    knob added later is off by default, so it did not change what was generated)."""
    if not isinstance(tree, dict):
        return tree
    full = {**asdict(SynthConfig()), **tree}
    full.pop("sites", None)
    full["sites"] = {
        name: {**asdict(SiteSpec()), **(spec or {})}
        for name, spec in (tree.get("sites") or {}).items()
    }
    return full


def same_federation(written: str, synth: SynthConfig) -> bool:
    """Whether ``written`` (a federation's ``scenario.yaml``) describes ``synth``, settings
    added since it was written counting at their defaults."""
    try:
        old = OmegaConf.to_container(OmegaConf.create(written))
    except Exception:  # unreadable YAML (OmegaConf lets yaml's errors through): not it
        return False
    new = OmegaConf.to_container(OmegaConf.create(to_yaml(synth)))
    return _with_defaults(old) == _with_defaults(new)


def _ensure_synthetic_locked(cfg: RunConfig, root: Path) -> Path:
    synth = synth_config(cfg)
    made = root / "scenario.yaml"
    if made.is_file() and (root / "truth.json").is_file():
        if same_federation(made.read_text(), synth):
            log.info("reusing synthetic federation %s", root)
            return root
        raise UsageError(f"{root} holds another synthetic federation; set data.synth_dir elsewhere")
    if root.exists() and any(root.iterdir()):
        raise UsageError(
            f"{root} is not empty but holds no finished synthetic federation (no truth.json "
            "and scenario.yaml); delete it or set data.synth_dir elsewhere"
        )
    # generate next to it and rename when done: an interrupted generation leaves only
    # the hidden .partial folder, which the next run replaces
    partial = root.with_name(f".{root.name}.partial")
    if partial.exists():
        log.info("removing %s, left by an interrupted generation", partial)
        shutil.rmtree(partial)
    log.info("generating synthetic federation %r (seed %d) in %s", synth.name, synth.seed, root)
    # write_federation reports each case of each site, then each calibration case
    n_cases = sum(sum(synth.site_cases(s)) for s in synth.sites) + synth.calibration_cases
    with Progress(n_cases, "synthetic cases", unit="cases", logger=log) as progress:
        write_federation(synth, partial, progress=progress)
    if root.exists():
        root.rmdir()  # empty (checked above)
    partial.rename(root)
    return root


def resolve_sites(cfg: RunConfig) -> RunConfig:
    """The config with ``data.sites`` / ``data.target`` filled in and checked."""
    if not cfg.data.sites and not cfg.data.target:
        root = ensure_synthetic(cfg)
        truth = json.loads((root / "truth.json").read_text())
        sites = tuple(str(root / s) for s, t in truth["sites"].items() if t["spec"]["labelled"])
        target = tuple(
            str(root / s) for s, t in truth["sites"].items() if not t["spec"]["labelled"]
        )
        cfg = replace(cfg, data=replace(cfg.data, sites=sites, target=target))
    for path in cfg.all_sites:
        if not Path(path).is_dir():
            raise UsageError(f"site folder {path!r} does not exist")
    names = [Path(p).resolve().name for p in cfg.all_sites]
    if len(set(names)) != len(names):
        raise UsageError(f"site folder names must be unique, got {names}")
    return cfg
