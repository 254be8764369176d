"""Limits on what hosts can make the controller do: packet-in rates and host learning.

Two defences against a host that floods the control plane (Faucet's ``packetin_pps`` and
``max_hosts``/``learn_ban_timeout`` ideas), both pure:

* **Packet-in meters.** The switches send LLDP, ARP and the table-2 miss to the controller
  through OpenFlow 1.3 meters on each switch (a drop band in packets/s): LLDP and ARP get
  ``packet_in_control_pps`` each (two meters, so an ARP flood does not starve discovery),
  packets to unknown destinations ``packet_in_pps``. The flows and meters are in
  :func:`controller.network.flows.pipeline_flows` and
  :func:`~controller.network.flows.packet_in_meters`; the core plans them with the meters of
  policed intents.
* **Host learning.** :class:`HostGuard` decides whether a host heard at a port may be learned:
  at most ``max_hosts_per_port`` hosts per host port (learned hosts, and file-host conflicts
  recorded there), and an IPv4 address that moves (to another port or MAC) more than
  ``host_move_limit`` times within ``host_move_window_s`` is not learned again for
  ``learn_ban_s``. Every refusal is counted by reason; a rate-limited ``host_refused`` event
  (one per port per :data:`REFUSED_EVENT_INTERVAL_S`) says what was refused and how often.

A value of 0 turns a limit off.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["REFUSAL_REASONS", "REFUSED_EVENT_INTERVAL_S", "ControlPlaneLimits", "HostGuard"]

REFUSAL_REASONS = ("port_full", "banned")
"""why a host is not learned: its port holds ``max_hosts_per_port`` hosts already; its
address is banned from learning after moving too often"""
REFUSED_EVENT_INTERVAL_S = 10.0
"""at most one ``host_refused`` event per port this often (a flood makes one per packet)"""


@dataclass(frozen=True, slots=True)
class ControlPlaneLimits:
    """The limits of one controller (``network.*`` settings; 0 turns one off)."""

    packet_in_pps: int = 0
    """meter rate of packet-ins to unknown destinations (the table-2 miss), per switch"""
    packet_in_control_pps: int = 0
    """meter rate of LLDP packet-ins, and apart of ARP packet-ins, per switch"""
    max_hosts_per_port: int = 0
    """hosts learned (or conflicts recorded) at one host port at most"""
    host_move_limit: int = 0
    """moves of one IPv4 address within ``host_move_window_s`` allowed before a ban"""
    host_move_window_s: float = 60.0
    learn_ban_s: float = 0.0
    """how long an address that moved too often is not learned"""

    def __post_init__(self) -> None:
        for name in ("packet_in_pps", "packet_in_control_pps", "max_hosts_per_port",
                     "host_move_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        if self.host_move_window_s <= 0 or self.learn_ban_s < 0:
            raise ValueError("host_move_window_s must be > 0 and learn_ban_s >= 0")


class HostGuard:
    """Host-learning limits of one :class:`~controller.network.state.NetworkState` (pure:
    every call takes ``now``). The state asks :meth:`port_full` before it learns a host at
    a port and :meth:`moved` when a learned address moves, and reports what it refused with
    :meth:`refuse`."""

    def __init__(self, limits: ControlPlaneLimits | None = None) -> None:
        self.limits = limits if limits is not None else ControlPlaneLimits()
        self.refused: dict[str, int] = dict.fromkeys(REFUSAL_REASONS, 0)
        """reason -> refusals so far (``cpn_hosts_refused_total``)"""
        self.banned_until: dict[str, float] = {}
        """IPv4 address -> end of its learning ban"""
        self._moves: dict[str, deque[float]] = {}
        self._last_event: dict[tuple[int, int], float] = {}
        self._unreported: dict[tuple[int, int], int] = {}

    def port_full(self, held: int) -> bool:
        """A port holding ``held`` hosts takes no more."""
        cap = self.limits.max_hosts_per_port
        return cap > 0 and held >= cap

    def banned(self, ip: str, now: float) -> bool:
        until = self.banned_until.get(ip)
        if until is None:
            return False
        if now < until:
            return True
        del self.banned_until[ip]
        return False

    def moved(self, ip: str, now: float) -> bool:
        """Count a move of ``ip``; True when it is one too many: the address is banned from
        learning from now on for ``learn_ban_s`` (and the move is not to be learned)."""
        lim = self.limits
        if lim.host_move_limit <= 0 or lim.learn_ban_s <= 0:
            return False
        times = self._moves.setdefault(ip, deque(maxlen=lim.host_move_limit + 1))
        while times and times[0] <= now - lim.host_move_window_s:
            times.popleft()
        times.append(now)
        if len(times) <= lim.host_move_limit:
            return False
        del self._moves[ip]
        self.banned_until[ip] = now + lim.learn_ban_s
        return True

    def forget(self, ip: str) -> None:
        """The address is no longer a learned host: its move history goes."""
        self._moves.pop(ip, None)

    def refuse(self, reason: str, dpid: int, port_no: int, now: float
               ) -> dict[str, Any] | None:
        """Count a refusal at ``(dpid, port_no)``; the details of a ``host_refused`` event
        when one is due for that port (the first, then at most one per
        :data:`REFUSED_EVENT_INTERVAL_S`, with how many were refused since the last), else
        None."""
        self.refused[reason] += 1
        key = (dpid, port_no)
        count = self._unreported.get(key, 0) + 1
        last = self._last_event.get(key)
        if last is not None and now - last < REFUSED_EVENT_INTERVAL_S:
            self._unreported[key] = count
            return None
        self._last_event[key] = now
        self._unreported[key] = 0
        return {"dpid": dpid, "port_no": port_no, "reason": reason, "refused": count}
