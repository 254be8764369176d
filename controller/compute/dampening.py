"""Dampening of load moves (pure): a client of an anycast service moves to a better site only
when the gain is large enough, for long enough, and the service's move budget allows it.

A move *for load* (another site became better: less delay, a site came back) is allowed when

* the gain (current delay - new delay) is at least ``gain_ms`` **and** at least ``gain_pct``
  percent of the current delay,
* it has stayed so, at every look, for ``hold_s`` seconds (a gain that falls below the
  threshold starts the hold again),
* the service has made fewer than ``max_moves`` load moves in the last ``interval_s`` seconds,
* and the client is ready (affinity: :mod:`.anycast` passes whether the client is idle).

Moves for failure (site down, unhealthy, stale under ``cats``, path gone) never pass through
here: they are immediate. The time is an argument everywhere; nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from controller.errors import ComputeSiteError

__all__ = ["NO_DAMPENING", "Dampener", "Dampening"]


@dataclass(frozen=True, slots=True)
class Dampening:
    """Thresholds of load moves (``compute.move_*`` settings)."""

    gain_ms: float = 2.0
    """a load move needs at least this much less delay"""
    gain_pct: float = 20.0
    """... and at least this percentage of the current delay"""
    hold_s: float = 10.0
    """... held this long"""
    max_moves: int = 10
    """at most this many load moves per service ..."""
    interval_s: float = 60.0
    """... in this many seconds"""

    def __post_init__(self) -> None:
        for name in ("gain_ms", "gain_pct", "hold_s", "interval_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0:
                raise ComputeSiteError(f"dampening {name} must be a finite number >= 0, "
                                       f"got {v!r}")
        if isinstance(self.max_moves, bool) or not isinstance(self.max_moves, int) \
                or self.max_moves < 0:
            raise ComputeSiteError(f"dampening max_moves must be an integer >= 0, "
                                   f"got {self.max_moves!r}")


NO_DAMPENING = Dampening(gain_ms=0.0, gain_pct=0.0, hold_s=0.0, max_moves=10**9,
                         interval_s=0.0)
"""every strict gain moves at once (the benchmark's peer, not a default)"""


class Dampener:
    """The hold timers of candidate moves and the move budget of each service."""

    def __init__(self, config: Dampening | None = None) -> None:
        self.config = config if config is not None else Dampening()
        self._since: dict[tuple[str, str], float] = {}
        """(service, client) -> when its gain first met the thresholds (continuously)"""
        self._moves: dict[str, deque[float]] = {}
        """service -> times of its load moves within the interval"""

    def gain_ok(self, current_ms: float, new_ms: float) -> bool:
        """Whether moving from ``current_ms`` to ``new_ms`` of delay meets both thresholds."""
        gain = current_ms - new_ms
        if gain <= 0:
            return False
        pct = math.inf if current_ms <= 0 else 100.0 * gain / current_ms
        return gain >= self.config.gain_ms and pct >= self.config.gain_pct

    def moves_in_window(self, service: str, now: float) -> int:
        """Load moves of ``service`` in the last ``interval_s`` seconds."""
        window = self._moves.get(service)
        if window is None:
            return 0
        while window and window[0] <= now - self.config.interval_s:
            window.popleft()
        return len(window)

    def offer(self, service: str, client: str, current_ms: float, new_ms: float, now: float,
              *, ready: bool = True) -> bool:
        """A look at a possible load move of ``client``: True when it may move now (the move
        is then counted against the service's budget). ``ready`` False (the client is busy)
        keeps the hold timer running but moves nothing."""
        key = (service, client)
        if not self.gain_ok(current_ms, new_ms):
            self._since.pop(key, None)
            return False
        since = self._since.setdefault(key, now)
        if not ready or now - since < self.config.hold_s:
            return False
        if self.moves_in_window(service, now) >= self.config.max_moves:
            return False
        self._moves.setdefault(service, deque()).append(now)
        del self._since[key]
        return True

    def forget(self, service: str, client: str) -> None:
        """Drop the client's hold timer (it moved, left, or its gain is gone)."""
        self._since.pop((service, client), None)

    def forget_service(self, service: str) -> None:
        self._moves.pop(service, None)
        for key in [k for k in self._since if k[0] == service]:
            del self._since[key]

    def holding(self) -> int:
        """Clients whose gain currently meets the thresholds (waiting for the hold time)."""
        return len(self._since)
