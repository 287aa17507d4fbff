"""fedshift.render.pages: the reports' Jinja2 environment escapes every value."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import UndefinedError

from fedshift.render.pages import environment, num, render, sig


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    (tmp_path / "plain.html.j2").write_text("<p>{{ name }}</p>")
    return tmp_path


def test_values_are_escaped(templates: Path) -> None:
    out = render(templates, "plain.html.j2", name='<script>alert("x")</script>')
    assert out == "<p>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</p>"


def test_shared_layout_and_css_come_with_every_folder(tmp_path: Path) -> None:
    (tmp_path / "r.html.j2").write_text(
        '{% extends "page.html.j2" %}{% block title %}{{ name }}{% endblock %}'
        "{% block body %}<h1>{{ name }}</h1>{{ chart | safe }}{% endblock %}"
    )
    out = render(tmp_path, "r.html.j2", name="<b>", chart="<svg></svg>", version="1")
    assert out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")
    assert "<title>&lt;b&gt;</title>" in out and "<h1>&lt;b&gt;</h1>" in out
    assert "<svg></svg>" in out  # marked safe on purpose
    assert ".scroll{overflow-x:auto" in out and "max-width:1200px" in out
    assert "<script" not in out and "<link" not in out


def test_missing_values_fail_loudly(templates: Path) -> None:
    with pytest.raises(UndefinedError):
        render(templates, "plain.html.j2")
    with pytest.raises(FileNotFoundError, match="template_dir"):
        environment(templates / "nowhere")


def test_number_filters() -> None:
    assert num(0.12345) == "0.123" and num(0.12345, 1) == "0.1" and num(3) == "3"
    assert num(None) == num(float("nan")) == num(float("inf")) == "–"
    assert sig(1234.5) == "1.23e+03" and sig(0.000123) == "0.000123" and sig(None) == "n/a"
