"""tests/waiting.py: the bounded waits every kind of test shares."""

from __future__ import annotations

import time

import pytest
from waiting import wait_until, wait_until_stable


def test_wait_until_returns_the_first_truthy_value() -> None:
    calls = iter([None, 0, "", {"state": "installed"}])
    assert wait_until(lambda: next(calls), 2.0, "the intent", poll_s=0.01) == {
        "state": "installed"}


def test_wait_until_fails_naming_the_condition_after_the_timeout() -> None:
    t0 = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"^s4 reconciled not within 0.2 s: 3 of 4$"):
        wait_until(lambda: False, 0.2, "s4 reconciled", poll_s=0.05, detail=lambda: "3 of 4")
    assert 0.2 <= time.monotonic() - t0 < 2.0


def test_wait_until_treats_ignored_exceptions_as_not_yet() -> None:
    answers: list[object] = [KeyError("not yet"), KeyError("not yet"), 42]

    def read() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_until(read, 2.0, "the answer", poll_s=0.01, ignore=(KeyError,)) == 42
    with pytest.raises(ValueError):  # anything else is an error at once
        wait_until(lambda: int("x"), 2.0, "a number", ignore=(KeyError,))


def test_wait_until_stable_returns_once_two_reads_agree() -> None:
    reads = iter([1, 5, 9, 9, 12])
    assert wait_until_stable(lambda: next(reads), gap_s=0.01, timeout_s=2.0) == 9


def test_wait_until_stable_returns_the_last_read_at_the_timeout() -> None:
    count = iter(range(1000))
    value = wait_until_stable(lambda: next(count), gap_s=0.02, timeout_s=0.1)
    assert 3 <= value < 1000
