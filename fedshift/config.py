"""Configuration: dataclass schema -> OmegaConf -> merged YAML and CLI dotlist -> dataclass.

Every command builds its settings the same way::

    cfg = load_config(SynthConfig, yaml_files=[scenario_yaml], overrides=["seed=3"])

The dataclass defaults are the truth; a YAML file holds only what differs from them.
Each setting documents itself where it is declared, ``rounds: int = setting(5, "...")``
(:func:`setting`, :func:`section`: the text is ``field(metadata={"help": ...})``), and
``fedshift config show`` prints it next to the value.

Validation lives in each dataclass's ``__post_init__``, so an instance built by
``OmegaConf``, by hand or by :func:`dataclasses.replace` is checked the same way. Every
error is a :class:`~fedshift.errors.ConfigError` in one style::

    fed.rounds=0 is invalid: expected an integer >= 1
    foo.bar=1 is invalid: unknown key 'foo'; valid keys: name, out, seed, ...
    data.sites=/a is invalid: expected a list of strings; write a list: data.sites=[/a]

Values are never evaluated as code.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from fedshift.errors import ConfigError

T = TypeVar("T")

#: configs/ at the repository root (presets and scenarios)
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
#: the key under which a field's documentation is kept in ``dataclasses.field(metadata=...)``
HELP_KEY = "help"


# --- declaring settings ------------------------------------------------------------------


def setting(default: Any, help: str) -> Any:
    """A documented setting: ``rounds: int = setting(5, "federated rounds")``."""
    return dataclasses.field(default=default, metadata={HELP_KEY: help})


def section(factory: Callable[[], Any], help: str) -> Any:
    """A documented group of settings: ``fed: FedConfig = section(FedConfig, "...")``."""
    return dataclasses.field(default_factory=factory, metadata={HELP_KEY: help})


def help_text(schema: type, name: str) -> str:
    """The documentation of field ``name`` of dataclass ``schema`` ("" when it has none)."""
    for f in dataclasses.fields(schema):
        if f.name == name:
            return str(f.metadata.get(HELP_KEY, ""))
    raise KeyError(name)


# --- the one error style -----------------------------------------------------------------


def show(value: Any) -> str:
    """``value`` as one would type it on the command line: ``48``, ``true``, ``[a,b]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def invalid(key: str, value: Any, expected: str) -> ConfigError:
    """``key=value is invalid: expected <expected>``, the error every config check raises."""
    return ConfigError(f"{key}={show(value)} is invalid: expected {expected}")


def check(ok: bool, key: str, value: Any, expected: str) -> None:
    """Raise :func:`invalid` unless ``ok``."""
    if not ok:
        raise invalid(key, value, expected)


def one_of(key: str, value: Any, allowed: Sequence[str]) -> None:
    """Raise unless ``value`` is one of the names ``allowed``, listing them."""
    check(value in allowed, key, value, f"one of: {', '.join(allowed)}")


# --- types, as the schema declares them ---------------------------------------------------


@functools.cache
def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def _args(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint)


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _strip_optional(hint: Any) -> Any:
    if _is_union(hint):
        rest = [a for a in _args(hint) if a is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


def _is_sequence(hint: Any) -> bool:
    return typing.get_origin(_strip_optional(hint)) in (tuple, list)


_NOUNS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURALS = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def describe(hint: Any) -> str:
    """What a value of type ``hint`` looks like, for an error: ``a list of 3 integers``."""
    hint = _strip_optional(hint)
    origin, args = typing.get_origin(hint), _args(hint)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            item = args[0]
            return f"a list of {len(args)} {_PLURALS.get(item, 'values')}"
        return f"a list of {_PLURALS.get(args[0], 'values') if args else 'values'}"
    if dataclasses.is_dataclass(hint):
        return "a group of settings"
    if origin is dict:
        return "a mapping"
    return _NOUNS.get(hint, "a value")


def _type_ok(value: Any, hint: Any) -> bool:
    if _is_union(hint):
        return any(_type_ok(value, a) for a in _args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(hint), _args(hint)
    if origin in (tuple, list):
        if not isinstance(value, tuple | list):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_type_ok, value, args))
        return not args or all(_type_ok(v, args[0]) for v in value)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return True  # Any, dict[...]: OmegaConf checks what it can


def check_fields(obj: Any, prefix: str) -> None:
    """Check every field of dataclass ``obj`` against its declared type (lists become
    tuples where a tuple is declared). Call first in ``__post_init__``; ``prefix`` is
    where ``obj`` sits in a run config (``"seg.train"``)."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        name, hint = f.name, hints[f.name]
        value = getattr(obj, name)
        if isinstance(value, list) and typing.get_origin(_strip_optional(hint)) is tuple:
            value = tuple(value)
            object.__setattr__(obj, name, value)
        check(_type_ok(value, hint), _join(prefix, name), value, describe(hint))


# --- loading -----------------------------------------------------------------------------


def find_preset(name_or_file: str, folder: str, key: str = "") -> Path:
    """Resolve ``name_or_file`` to a YAML file: an existing path, or configs/FOLDER/NAME.yaml.

    ``key`` names the setting in errors (default: the folder's name, singular).
    """
    key = key or (folder[:-1] if folder.endswith("s") else folder)
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.exists():
        check(path.is_file(), key, name_or_file, "an existing YAML file")
        return path
    preset = CONFIG_DIR / folder / f"{name_or_file}.yaml"
    if not preset.is_file():
        known = sorted(p.stem for p in (CONFIG_DIR / folder).glob("*.yaml"))
        raise invalid(key, name_or_file, f"a preset (known: {', '.join(known)}) or a .yaml file")
    return preset


def load_config(
    schema: type[T],
    yaml_files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
) -> T:
    """Merge YAML files then ``key=value`` overrides onto the schema's defaults.

    Returns an instance of ``schema`` (a dataclass), validated by its ``__post_init__``
    (and by its ``validate()`` where a schema still has one). Raises :class:`ConfigError`
    for a missing or malformed file, an unknown key, a value of the wrong type or out of
    range, naming the key.
    """
    sources = [(_read_yaml(file), f" (in {file})") for file in yaml_files]
    sources += [(_parse_override(item), "") for item in overrides]
    return from_trees(schema, sources)


def from_trees(schema: type[T], sources: Sequence[tuple[Mapping[str, Any], str]]) -> T:
    """The schema's defaults, updated by each ``(nested mapping, where)`` in turn.

    ``where`` is appended to the key in errors (``" (in run.yaml)"``).
    """
    cfg: DictConfig = OmegaConf.structured(schema)
    for tree, where in sources:
        leaves = dict(_leaves(tree))
        for key, value in leaves.items():
            _check_leaf(schema, key, value, where)
        try:
            cfg = OmegaConf.merge(cfg, tree)  # type: ignore[assignment]
        except OmegaConfBaseException as exc:
            raise _from_omegaconf(schema, exc, leaves, where) from None
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise _from_omegaconf(schema, exc, {}, "") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj  # type: ignore[return-value]


def to_yaml(obj: Any) -> str:
    """The resolved config as YAML (written next to every output)."""
    return OmegaConf.to_yaml(OmegaConf.structured(obj))


def _read_yaml(file: str | Path) -> Mapping[str, Any]:
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"config file {file} is invalid: expected an existing YAML file")
    try:
        loaded = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError, OSError, OmegaConf's: one line, no traceback
        raise ConfigError(f"config file {file} is invalid: expected YAML ({_first(exc)})") from None
    if not OmegaConf.is_dict(loaded):
        raise ConfigError(f"config file {file} is invalid: expected a mapping of key: value")
    return OmegaConf.to_container(loaded)  # type: ignore[return-value]


def _parse_override(item: str) -> Mapping[str, Any]:
    key, eq, _ = item.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"{item} is invalid: expected key=value, e.g. fed.rounds=3")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist([item]))  # type: ignore[return-value]
    except Exception as exc:  # a YAML syntax error in the value
        raise ConfigError(f"{item} is invalid: expected a YAML value ({_first(exc)})") from None


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every non-mapping value of a nested mapping."""
    for key, value in tree.items():
        dotted = _join(prefix, str(key))
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, dotted)
        else:
            yield dotted, value


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check_leaf(schema: type, key: str, value: Any, where: str) -> None:
    """Raise for an unknown key, a group given a value, or a list given a bare value."""
    node: Any = schema
    parts = key.split(".")
    for depth, part in enumerate(parts):
        at = ".".join(parts[:depth])
        if dataclasses.is_dataclass(node):
            names = [f.name for f in dataclasses.fields(node)]
            if part not in names:
                level = f" in {at}" if at else ""
                raise ConfigError(
                    f"{key}={show(value)}{where} is invalid: unknown key {part!r}{level}; "
                    f"valid keys: {', '.join(names)}"
                )
            node = _hints(node)[part]
        elif typing.get_origin(_strip_optional(node)) is dict:
            args = _args(_strip_optional(node))
            node = args[1] if len(args) == 2 else Any
        else:
            if node is Any or not _is_scalar(node):
                return  # free-form below here: OmegaConf checks what it can
            raise ConfigError(
                f"{key}={show(value)}{where} is invalid: {at} takes one value "
                f"({describe(node)}), not keys below it"
            )
    node = _strip_optional(node)
    if dataclasses.is_dataclass(node) and not isinstance(value, Mapping):
        names = ", ".join(f.name for f in dataclasses.fields(node))
        raise invalid(key, value, f"a group of settings ({key}.KEY=VALUE), keys: {names}")
    if _is_sequence(node) and not isinstance(value, list | tuple) and value is not None:
        form = f"{key}=[{show(value)}]" if not where else f"[{show(value)}]"
        raise ConfigError(
            f"{key}={show(value)}{where} is invalid: expected {describe(node)}; "
            f"write a list: {form}"
        )
    if (_is_scalar(node) or _is_sequence(node)) and not _loose_ok(value, node):
        raise ConfigError(f"{key}={show(value)}{where} is invalid: expected {describe(node)}")


def _loose_ok(value: Any, hint: Any, top: bool = True) -> bool:
    """Whether ``value`` may be given for ``hint``: as :func:`_type_ok`, but a string setting
    takes any scalar (``name=123``), a number may come as text (OmegaConf converts it), and
    a list may be given where a tuple is."""
    if value is None:
        return _is_union(hint) and type(None) in _args(hint)
    hint = _strip_optional(hint)
    if hint is str:
        return not isinstance(value, list | tuple | Mapping)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping | hint)  # a list item given as its settings
    if top and hint in (int, float, bool) and isinstance(value, str):
        return True  # OmegaConf converts "3", "inf", "true" or names the key it cannot
    origin, args = typing.get_origin(hint), _args(hint)
    if origin in (tuple, list) and isinstance(value, list | tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(
                _loose_ok(v, a, top=False) for v, a in zip(value, args, strict=True)
            )
        return not args or all(_loose_ok(v, args[0], top=False) for v in value)
    return _type_ok(value, hint)


def _is_scalar(hint: Any) -> bool:
    hint = _strip_optional(hint)
    return hint in _NOUNS


def _hint_at(schema: type, key: str) -> Any:
    node: Any = schema
    for part in key.split("."):
        node = _strip_optional(node)
        if dataclasses.is_dataclass(node):
            node = _hints(node).get(part, Any)
        elif typing.get_origin(node) is dict and len(_args(node)) == 2:
            node = _args(node)[1]
        else:
            return Any
    return node


def _from_omegaconf(
    schema: type, exc: OmegaConfBaseException, leaves: Mapping[str, Any], where: str
) -> ConfigError:
    """An OmegaConf error (a value it could not convert, a missing value) in our style."""
    key = str(getattr(exc, "full_key", "") or "").split("[")[0]
    if not key:
        return ConfigError(f"the configuration{where} is invalid: {_first(exc)}")
    expected = describe(_hint_at(schema, key))
    if isinstance(exc, MissingMandatoryValue):
        return ConfigError(f"{key}=??? is invalid: expected {expected} (it has no default)")
    value = leaves.get(key, "?")
    return ConfigError(f"{key}={show(value)}{where} is invalid: expected {expected}")


def _first(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
