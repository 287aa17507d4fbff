"""Configuration: dataclass schema -> OmegaConf -> merged YAML and CLI dotlist -> dataclass.

Every command builds its settings the same way::

    cfg = load_config(SynthConfig, yaml_files=[scenario_yaml], overrides=["seed=3"])

Unknown keys and wrong types raise :class:`ConfigError` naming the key. Values are never
evaluated as code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fedshift.errors import ConfigError

T = TypeVar("T")

#: configs/ at the repository root (presets and scenarios)
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def find_preset(name_or_file: str, folder: str) -> Path:
    """Resolve ``name_or_file`` to a YAML file: an existing path, or configs/FOLDER/NAME.yaml."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {name_or_file!r} does not exist")
        return path
    preset = CONFIG_DIR / folder / f"{name_or_file}.yaml"
    if not preset.is_file():
        known = sorted(p.stem for p in (CONFIG_DIR / folder).glob("*.yaml"))
        raise ConfigError(
            f"unknown {folder[:-1] if folder.endswith('s') else folder} "
            f"{name_or_file!r}; known: {', '.join(known)} (or a .yaml path)"
        )
    return preset


def load_config(
    schema: type[T],
    yaml_files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
) -> T:
    """Merge YAML files then ``key=value`` overrides onto the schema's defaults.

    Returns an instance of ``schema`` (a dataclass). Raises :class:`ConfigError` for
    unknown keys, bad types or malformed overrides, naming the offending key.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    try:
        cfg: DictConfig = OmegaConf.structured(schema)
        for file in yaml_files:
            cfg = OmegaConf.merge(cfg, OmegaConf.load(file))
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid configuration: {_one_line(exc)}") from exc
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj  # type: ignore[return-value]


def to_yaml(obj: Any) -> str:
    """The resolved config as YAML (written next to every output)."""
    return OmegaConf.to_yaml(OmegaConf.structured(obj))


def _one_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("full_key", "object_type", "reference_type"))]
    full_key = next((ln for ln in lines if ln.startswith("full_key")), "")
    return "; ".join(keep[:1] + ([full_key] if full_key else []))
