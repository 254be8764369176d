"""Bounded waits for every kind of test: wait on the condition, never a bare sleep.

``tests/`` is on ``sys.path`` (pytest's rootdir conftest lives there), so any test module
imports these as ``from waiting import wait_until, wait_until_stable``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

__all__ = ["tcp_listening", "wait_until", "wait_until_stable"]

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float, message: str, *,
               poll_s: float = 0.2, detail: Callable[[], str] | None = None,
               ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``predicate`` until it returns something truthy, and return that value.

    After ``timeout_s`` seconds the test fails with "``message`` not within N s" (and
    ``detail()`` when given, e.g. a log tail). Exceptions of the ``ignore`` types count as
    "not yet". ``predicate`` runs at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = predicate()
        except ignore:
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f": {detail()}" if detail is not None else ""
            pytest.fail(f"{message} not within {timeout_s:g} s{extra}", pytrace=False)
        time.sleep(poll_s)


def wait_until_stable(read: Callable[[], T], gap_s: float, timeout_s: float) -> T:
    """``read()`` once two reads ``gap_s`` apart agree (counters that a switch publishes
    periodically have settled); after ``timeout_s`` the last read, settled or not."""
    deadline = time.monotonic() + timeout_s
    last = read()
    while True:
        time.sleep(gap_s)  # the gap is what "stable" is measured over
        now = read()
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def tcp_listening(port: int) -> bool:
    """Whether some socket on this machine listens on TCP ``port`` (``/proc/net/tcp`` and
    ``tcp6``, state 0A), asked without connecting: a fake switch's connection made only to
    probe would count as a switch."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False
