"""The console: one log format, quiet libraries, and progress that does not garble it.

:func:`setup` is called once by the ``fedshift`` command. Without ``-v`` the console shows
FedShift's INFO lines and every library's warnings that matter, once each; with ``-v``
it shows DEBUG lines, Flower's and Ray's own chatter and the warnings this module hides.

- Flower and Ray are quietened where they are started, in :mod:`fedshift.fl.simulation`
  (Flower is imported only under ``fedshift/fl``), reading :func:`verbose`.
- :class:`Progress` counts work done: a tqdm bar on a terminal; elsewhere (CI logs, a
  pipe) a log line at most every :data:`LOG_EVERY_S` seconds, so a log stays a log.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any, TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATEFMT = "%H:%M:%S"
#: set by :func:`setup` for the processes a command starts (Ray's workers inherit it)
VERBOSE_ENV = "FEDSHIFT_VERBOSE"
#: libraries that log their own plumbing: at WARNING, at INFO with -v (their DEBUG lines,
#: e.g. matplotlib's ~200 font-cache lines per report, would bury FedShift's and Flower's)
CHATTY = ("alembic", "filelock", "asyncio", "urllib3", "httpx", "PIL", "matplotlib")
#: off a terminal, the least time between two progress lines of one task
LOG_EVERY_S = 30.0


def verbose() -> bool:
    """Whether ``-v`` was given (here or in the command that started this process)."""
    return os.environ.get(VERBOSE_ENV) == "1"


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes records to stderr through ``tqdm.write`` once a progress bar may be on
    screen, so a bar is redrawn below the line instead of being cut by it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if "tqdm" in sys.modules:
                from tqdm import tqdm

                tqdm.write(text, file=self.stream)
            else:
                self.stream.write(text + self.terminator)
            self.flush()
        except Exception:  # logging must never raise
            self.handleError(record)


def setup(verbose: bool = False, stream: TextIO | None = None) -> None:
    """Configure the root logger for a ``fedshift`` command (replacing its handlers)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = ConsoleHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"


class Progress:
    """Work done out of ``total``: a tqdm bar on a terminal, log lines elsewhere.

    Use as a context manager; call :meth:`update` (or the object itself, which fits the
    ``progress(message)`` callback of ``write_federation``) as each unit is done. Off a
    terminal a line is logged when ``every_s`` seconds passed since the last one, and a
    last line when a task that took that long is done: a quick task prints nothing.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "it",
        logger: logging.Logger | None = None,
        stream: TextIO | None = None,
        every_s: float = LOG_EVERY_S,
    ) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.unit = unit
        self.done = 0
        self.every_s = every_s
        self.log = logger or logging.getLogger("fedshift.progress")
        self.started = self._last = time.monotonic()
        self._reported = 0  # the count the last line showed
        self._bar: Any = None
        stream = stream or sys.stderr
        if self.total and _is_terminal(stream):
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=stream, leave=False)

    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last >= self.every_s:
            self._line()

    def __call__(self, message: str = "") -> None:
        self.update()

    def _line(self) -> None:
        self._last = time.monotonic()
        self._reported = self.done
        self.log.info(
            "%s: %d/%d %s (%.0f s)",
            self.desc,
            self.done,
            self.total,
            self.unit,
            self._last - self.started,
        )

    def close(self) -> None:
        """Remove the bar; off a terminal, log the last count of a long task."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._reported != self.done and time.monotonic() - self.started >= self.every_s:
            self._line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
