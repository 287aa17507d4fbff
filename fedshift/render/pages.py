"""The Jinja2 environment the HTML reports are rendered with.

Each report keeps its templates next to the package that fills them (for example
``fedshift/readiness/templates/``); they extend ``page.html.j2`` and use the macros of
``parts.html.j2``, which live here with the one stylesheet every report shares
(``report.css``). Autoescape is on for every template: a value from a site (a case or
site name, a finding's message) is text, never markup. Charts are passed in as SVG text
and placed with ``|safe``; nothing else is.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

#: the shared layout, macros and stylesheet
SHARED_TEMPLATES = Path(__file__).resolve().parent / "templates"
#: page width the reports are laid out for (pixels); tables wider than it scroll
PAGE_WIDTH = 1280


def num(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; a dash for ``None``, NaN and inf."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "–"
    return str(value)


def sig(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; ``n/a`` for ``None`` and NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


@lru_cache(maxsize=8)
def _environment(template_dir: str) -> Environment:
    env = Environment(
        loader=ChoiceLoader(
            [FileSystemLoader(template_dir), FileSystemLoader(str(SHARED_TEMPLATES))]
        ),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = num
    env.filters["sig"] = sig
    env.globals["page_width"] = PAGE_WIDTH
    return env


def environment(template_dir: str | Path) -> Environment:
    """The environment for one package's templates (``template_dir``), with the shared
    layout and macros behind them. Cached per folder.

    Raises
    ------
    FileNotFoundError
        ``template_dir`` is not a folder.
    """
    folder = Path(template_dir).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"template_dir {str(folder)!r} is not a folder")
    return _environment(str(folder))


def render(template_dir: str | Path, template: str, /, **context: Any) -> str:
    """Render ``template`` (a file name in ``template_dir``) with ``context``."""
    return environment(template_dir).get_template(template).render(**context)
