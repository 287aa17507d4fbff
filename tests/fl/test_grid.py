"""The coordinator's send: replies pulled as they arrive, counted, with the timeout kept."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from types import SimpleNamespace

import pytest

from fedshift.fl import grid as fl_grid


class Reply(SimpleNamespace):
    def has_error(self) -> bool:
        return False


class FakeGrid:
    """Push returns one id per message; each pull returns the replies that are 'done':
    ``arrivals[k]`` replies become available at the k-th pull."""

    pull_interval = 0.001

    def __init__(self, arrivals: list[int]) -> None:
        self.arrivals = arrivals
        self.pulls = 0
        self.returned: set[str] = set()

    def push_messages(self, messages: Iterable[object]) -> list[str]:
        return [f"m{i}" for i, _ in enumerate(messages)]

    def pull_messages(self, message_ids: Iterable[str]) -> list[Reply]:
        ready = sum(self.arrivals[: self.pulls + 1])
        self.pulls += 1
        out = []
        for mid in sorted(message_ids)[: max(ready - len(self.returned), 0)]:
            if mid not in self.returned:
                self.returned.add(mid)
                out.append(Reply(metadata=SimpleNamespace(reply_to_message_id=mid)))
        return out


def test_replies_are_collected_as_they_arrive(monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[int] = []
    real = fl_grid.Progress

    class Spy(real):  # type: ignore[misc,valid-type]
        def update(self, n: int = 1) -> None:
            super().update(n)
            counted.append(self.done)

    monkeypatch.setattr(fl_grid, "Progress", Spy)
    grid = FakeGrid(
        [0, 2, 0, 1, 2],
    )
    replies = fl_grid.collect_replies(grid, [object()] * 5, timeout_s=10.0, what="train round 1")
    assert sorted(r.metadata.reply_to_message_id for r in replies) == [f"m{i}" for i in range(5)]
    assert counted == [1, 2, 3, 4, 5]
    assert grid.pulls == 5  # stopped once every site had replied


def test_the_timeout_still_holds() -> None:
    grid = FakeGrid(
        [1] + [0] * 10_000,
    )
    start = time.monotonic()
    replies = fl_grid.collect_replies(grid, [object()] * 3, timeout_s=0.2, what="evaluate test")
    assert 0.2 <= time.monotonic() - start < 5.0
    assert len(replies) == 1


def test_send_warns_when_sites_are_missing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fedshift.coordinator")
    grid = FakeGrid([2] + [0] * 10_000)
    replies = fl_grid.send(grid, [object()] * 3, timeout_s=0.05, what="evaluate val")
    assert len(replies) == 2
    assert "evaluate val: 2 of 3 sites replied" in caplog.text
