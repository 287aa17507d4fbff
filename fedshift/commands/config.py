"""Show the resolved run config: every key, its value, and what it does.

`fedshift config show` prints the run config `fedshift simulate` would run with the same
arguments (the dataclass defaults, configs/default.yaml or --config, then the
overrides) as YAML, each key under its help text. The output is itself a valid --config
file. Site folders are not resolved and no data is generated.

Examples:
  fedshift config show
  fedshift config show fed.aggregator=fedprox seg.train.local_steps=40
  fedshift config show --config my-run.yaml > resolved.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

from omegaconf import OmegaConf

from fedshift.commands.simulate import add_arguments as add_run_arguments
from fedshift.config import HELP_KEY, load_config
from fedshift.runconfig import RunConfig

HELP = "show the resolved run config, every key with its help text"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["show"], help="show: print the resolved config")
    add_run_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(RunConfig, [args.config], args.overrides)
    sys.stdout.write(commented_yaml(cfg))
    return 0


def commented_yaml(obj: Any, width: int = 88) -> str:
    """``obj`` (a config dataclass) as YAML, each key under its help text as a comment.

    Loading the text back (``load_config(type(obj), [file])``) gives ``obj`` again.
    """
    return "\n".join(_commented(obj, 0, width)) + "\n"


def _commented(obj: Any, depth: int, width: int) -> Iterator[str]:
    indent = "  " * depth
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        text = str(f.metadata.get(HELP_KEY, ""))
        for line in textwrap.wrap(text, max(width - len(indent) - 2, 20)):
            yield f"{indent}# {line}"
        if dataclasses.is_dataclass(value):
            yield f"{indent}{f.name}:"
            yield from _commented(value, depth + 1, width)
        else:
            yield f"{indent}{f.name}: {_yaml_value(value)}"


def _yaml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    try:  # written bare when YAML reads it back as the same string
        plain = bool(text) and OmegaConf.create(f"v: {text}")["v"] == text
    except Exception:
        plain = False
    return text if plain else json.dumps(text)
