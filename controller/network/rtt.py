"""How long to wait for a switch: round-trip estimates per switch and the waits they give
(pure: the caller passes the measured times; no clock, no I/O).

A fixed wait fits one network and load. With a few dozen switches on a quiet controller, a
barrier comes back in milliseconds and a switch silent for 5 s is in trouble. With hundreds
of userspace switches sharing two cores while they all connect at once, barrier replies take
seconds (measured on the 754-switch Kdl map: 726 replies later than 5 s in one bring-up), and
a fixed 5 s turns every late reply into a switch given up on, whose flow table is then read
again: more work for the very switches that are behind, and more late replies.

:class:`RoundTrips` keeps, as TCP does for its retransmission timer (RFC 6298), a smoothed
round trip and its mean deviation per switch, fed by every barrier answered and every flow
table read, and gives the wait for the next one:

- ``srtt + 4 x rttvar`` of that switch, never below ``floor_s`` (the configured barrier
  timeout: a healthy network detects a silent switch as soon as before) and never above
  ``cap_s``;
- a switch with no sample yet (just connected) gets the estimate over every switch's samples:
  the switches share one control channel's load, so what the others take is the best guess;
- after a wait ran out on a switch, its next wait is doubled (up to ``cap_s``) until it
  answers again (Karn's rule: the late reply is not a sample, it may answer an older
  request).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["RoundTrips"]

ALPHA = 1.0 / 8.0
"""weight of a new sample in the smoothed round trip (RFC 6298)"""
BETA = 1.0 / 4.0
"""weight of a new sample's deviation in the mean deviation (RFC 6298)"""
K = 4.0
"""deviations added to the smoothed round trip"""


@dataclass
class _Estimate:
    srtt: float
    rttvar: float

    def add(self, sample: float) -> None:
        self.rttvar = (1.0 - BETA) * self.rttvar + BETA * abs(self.srtt - sample)
        self.srtt = (1.0 - ALPHA) * self.srtt + ALPHA * sample

    @property
    def rto(self) -> float:
        return self.srtt + K * self.rttvar


class RoundTrips:
    """Round-trip estimates per switch and the waits they give (see the module docstring).
    Safe to call from any thread (the sender samples barriers, the resync thread reads)."""

    def __init__(self, floor_s: float, cap_s: float) -> None:
        if not 0.0 < floor_s <= cap_s:
            raise ValueError(f"need 0 < floor_s <= cap_s, got {floor_s!r} and {cap_s!r}")
        self.floor_s = floor_s
        self.cap_s = cap_s
        self._per: dict[int, _Estimate] = {}
        self._all: _Estimate | None = None
        self._backoff: dict[int, int] = {}
        """dpid -> how many waits in a row ran out on it (0: absent)"""
        self._lock = threading.Lock()

    def sample(self, dpid: int, seconds: float) -> None:
        """Switch ``dpid`` answered in ``seconds`` (request sent to answer read): a sample
        of its round trip; its backoff ends."""
        if not seconds >= 0.0:
            return  # a clock oddity (or NaN) is no sample
        with self._lock:
            self._add(dpid, seconds)

    def _add(self, dpid: int, seconds: float) -> None:
        for est, key in ((self._per.get(dpid), dpid), (self._all, None)):
            if est is None:
                est = _Estimate(seconds, seconds / 2.0)
                if key is None:
                    self._all = est
                else:
                    self._per[key] = est
            else:
                est.add(seconds)
        self._backoff.pop(dpid, None)

    def expired(self, dpid: int) -> None:
        """A wait on ``dpid`` ran out: its next wait is doubled (up to the cap)."""
        with self._lock:
            self._backoff[dpid] = min(self._backoff.get(dpid, 0) + 1, 16)

    def wait_s(self, dpid: int) -> float:
        """How long to wait for ``dpid``'s next answer."""
        with self._lock:
            est = self._per.get(dpid) or self._all
            base = max(self.floor_s, est.rto if est is not None else 0.0)
            return min(self.cap_s, base * (2 ** self._backoff.get(dpid, 0)))

    def srtt_s(self, dpid: int) -> float | None:
        """The switch's smoothed round trip (None: no sample yet)."""
        est = self._per.get(dpid)
        return None if est is None else est.srtt
