"""The console: progress that stays readable in a log, log lines that do not cut a bar."""

from __future__ import annotations

import io
import logging

import pytest

from fedshift.logs import ConsoleHandler, Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.progress"]


def test_off_a_terminal_a_quick_task_prints_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with Progress(
        5, "train round 1", "sites", logging.getLogger("test.progress"), io.StringIO()
    ) as p:
        for _ in range(5):
            p.update()
    assert _lines(caplog) == []


def test_off_a_terminal_a_slow_task_logs_its_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("test.progress")
    with Progress(3, "evaluate test", "sites", logger, io.StringIO(), every_s=0.0) as p:
        p.update()
        p("a message from write_federation")
    lines = _lines(caplog)
    assert [line.split(" (")[0] for line in lines] == [
        "evaluate test: 1/3 sites",
        "evaluate test: 2/3 sites",
    ]
    assert all(line.endswith(" s)") for line in lines)


def test_on_a_terminal_a_bar_and_log_lines_above_it(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = _Terminal()
    logger = logging.getLogger("test.bar")
    logger.propagate = False
    handler = ConsoleHandler(screen)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    try:
        with Progress(4, "synthetic cases", "cases", logger, screen) as p:
            p.update(2)
            logger.warning("a site warned")
            assert "synthetic cases:  50%" in screen.getvalue()
    finally:
        logger.removeHandler(handler)
    text = screen.getvalue()
    assert "a site warned\n" in text
    # the line was written on a cleared line, not glued to the bar
    assert "casesa site warned" not in text and "]a site warned" not in text
