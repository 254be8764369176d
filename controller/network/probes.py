"""When each port gets its next LLDP probe: spread over the interval, and adaptive.

Probing every live port every ``interval_s`` all at once costs a burst of packet-outs and
packet-ins each round (134 packet-ins/s on the national backbone, about 900/s on Kdl) for
what is, on a quiet network, the same answer again. :class:`ProbeSchedule` keeps a due time
per port (pure: the caller passes ``now``):

- a port not seen before (its switch just connected, or the port just came up) is due at
  once: a new link is discovered without waiting for a round;
- after a probe, a port is due again after ``interval_s``, or after ``settled_interval_s``
  when its link is *settled*: seen both ways by LLDP within the last ``interval_s`` and as
  the topology file says. ``settled_interval_s`` stays below half the LLDP timeout, so a
  settled link stays verified even when one probe is lost;
- each port's due time is offset by a fixed fraction of its interval (a hash of its switch),
  so the probes of a round spread over the interval instead of leaving in one burst, while the
  ports of one switch probed at the same time stay due together: they leave in one write
  (Open vSwitch's userspace datapath handles every bridge in one main loop, so a thousand
  switches probed port by port cost it a thousand wake-ups where one per switch will do);
- a port that goes down (or whose switch is lost) is forgotten, so it is probed at once when
  it comes back.

- at most ``max_pps`` probes leave per second, the most overdue ports first (a token bucket
  holding one second of them): a network of any size costs its switches and the controller at
  most that many packet-outs and packet-ins a second. When every port's round at that rate
  takes longer than ``settled_interval_s`` (on Kdl, 1,798 link ends at 100/s: 18 s),
  :meth:`ProbeSchedule.size` stretches the settled interval to the round and the LLDP timeout
  to 2.5 rounds, so links stay verified at the slower pace instead of timing out.

Failure detection does not depend on probes: a cut link is reported by the port status of
both ends at once. Probes verify the wiring (a miswired port is seen on the next probe of
either end, within ``settled_interval_s``) and measure link delays.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable

__all__ = ["ProbeSchedule", "SETTLED_FACTOR"]

SETTLED_FACTOR = 4.0
"""A settled link's ports are probed this many times less often (bounded by the timeout)."""


class ProbeSchedule:
    """Due times of the LLDP probes, per ``(dpid, port_no)`` (see the module docstring)."""

    def __init__(self, interval_s: float, timeout_s: float,
                 max_pps: float | None = None) -> None:
        self.interval_s = interval_s
        self._settled_base_s = max(interval_s, min(interval_s * SETTLED_FACTOR, timeout_s / 2.0))
        self.settled_interval_s = self._settled_base_s
        self._timeout_base_s = timeout_s
        self.timeout_s = timeout_s
        """the LLDP timeout at the pace the budget allows (see :meth:`size`)"""
        self.max_pps = max_pps
        self._tokens = max_pps or 0.0
        self._filled_at: float | None = None
        self._next: dict[tuple[int, int], float] = {}

    def size(self, ports: int) -> None:
        """``ports`` are probed: with a budget, a round of all of them takes at least
        ``ports / max_pps``; when that is longer than the settled interval, the settled
        interval stretches to the round and the timeout to 2.5 rounds (two probes at the
        latest phase, 1.25, fit in it)."""
        if self.max_pps is None:
            return
        round_s = ports / self.max_pps
        if round_s <= self._settled_base_s:
            self.settled_interval_s, self.timeout_s = self._settled_base_s, self._timeout_base_s
        else:
            self.settled_interval_s = round_s
            self.timeout_s = max(self._timeout_base_s, 2.5 * round_s)

    def budget(self, now: float) -> int:
        """How many probes may leave now (unlimited without ``max_pps``); call
        :meth:`spend` with how many did."""
        if self.max_pps is None:
            return 1 << 30
        if self._filled_at is not None:
            self._tokens = min(self.max_pps,
                               self._tokens + (now - self._filled_at) * self.max_pps)
        self._filled_at = now
        return int(self._tokens)

    def spend(self, n: int) -> None:
        if self.max_pps is not None:
            self._tokens = max(0.0, self._tokens - n)

    def overdue(self, key: tuple[int, int]) -> float:
        """When the port was due (a port never probed: minus infinity, first of all)."""
        return self._next.get(key, -math.inf)

    def due(self, key: tuple[int, int], now: float) -> bool:
        """The port's probe is due (or it is new)."""
        return self._next.get(key, now) <= now

    def sent(self, key: tuple[int, int], now: float, settled: bool) -> None:
        """A probe left ``key`` at ``now``; ``settled``: its link is settled."""
        interval = self.settled_interval_s if settled else self.interval_s
        # a fixed phase per switch in [0.75, 1.25) x interval spreads a round's probes over
        # the switches; a switch's ports probed together stay together, so their probes leave
        # in one write and a userspace switch takes them in one wake-up
        phase = 0.75 + (zlib.crc32(f"{key[0]}".encode()) % 1000) / 2000.0
        self._next[key] = now + interval * phase

    def forget(self, keys: Iterable[tuple[int, int]]) -> None:
        """These ports went down or away: probed at once when they are back."""
        for key in list(keys):
            self._next.pop(key, None)

    def known(self) -> set[tuple[int, int]]:
        return set(self._next)
