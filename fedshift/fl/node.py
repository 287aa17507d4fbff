"""Where a node's site lives: its data folder and its private working folder.

The data folder comes from the SuperNode's node config (``data-path``, what a hospital
passes when it starts its SuperNode) or, in simulation, from the run config's site list
at index ``partition-id``. The working folder comes from ``work-dir`` or is
``<run out>/sites/<site>`` (:func:`fedshift.site.folders.site_work_dir`). Light: no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flwr.app import Context

from fedshift.errors import ConfigError
from fedshift.fl.records import run_config
from fedshift.runconfig import RunConfig

DATA_PATH = "data-path"
WORK_DIR = "work-dir"
PARTITION = "partition-id"


def site_paths(cfg: RunConfig, node_config: Mapping[str, Any]) -> tuple[Path, Path | None]:
    """(data folder, work folder or None) for this node."""
    if DATA_PATH in node_config:
        data = Path(str(node_config[DATA_PATH]))
    elif PARTITION in node_config:
        index = int(node_config[PARTITION])
        if index >= len(cfg.all_sites):
            raise ConfigError(f"partition-id {index} but the run names {len(cfg.all_sites)} sites")
        data = Path(cfg.all_sites[index])
    else:
        raise ConfigError(f"node config has neither {DATA_PATH!r} nor {PARTITION!r}")
    work = Path(str(node_config[WORK_DIR])) if WORK_DIR in node_config else None
    return data, work


def node_site(
    context: Context, defaults: Mapping[str, Any] | None = None
) -> tuple[RunConfig, Path, Path | None]:
    """The run config (with the synthetic scenario's site folders filled in when the run
    names none), this node's data folder and its work folder (None: the default)."""
    cfg = run_config(context, defaults)
    if DATA_PATH not in context.node_config and not cfg.all_sites:
        from fedshift.site.folders import resolve_sites  # simulation on the synthetic scenario

        cfg = resolve_sites(cfg)
    data, work = site_paths(cfg, context.node_config)
    return cfg, data, work
