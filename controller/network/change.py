"""A Change: the messages that move the switches from the installed plan to the wanted one,
by phase (make-before-break), with what set it off and the log lines it owes.

The core (:mod:`.core`) returns one for every event; the service's sender thread sends its
phases in order and calls :meth:`ControllerCore.confirm <.core.ControllerCore.confirm>` when the
last barrier is confirmed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.network.flows import FlowEntry

__all__ = ["LOG_EACH_MAX", "Change", "ChangeKind", "PacketInResult", "id_ranges"]

log = logging.getLogger("controller.network.core")
"""Changes log under the core's name: they are the core's output."""


class ChangeKind(StrEnum):
    """What set a :class:`Change` off (its ``cause`` says it in words)."""

    SWITCH_CONNECTED = "switch_connected"
    SWITCH_LOST = "switch_lost"
    PORT_UP = "port_up"
    PORT_DOWN = "port_down"
    PORT = "port"
    """a port status that changed nothing"""
    LLDP = "lldp"
    """discovery confirmed or refuted a link"""
    HOST = "host"
    """a host was learned or moved"""
    GRACE_OVER = "grace_over"
    """the startup grace period ended: switches not seen by then are absent"""
    TICK = "tick"
    """a periodic call that changed nothing"""
    RECONCILE = "reconcile"
    RESTORE = "restore"
    """flows removed behind the controller's back are put back (or it was told of its own)"""
    INTENTS = "intents"
    """intents added or removed by an operator"""
    ANYCAST = "anycast"

    @property
    def restoration(self) -> bool:
        """The network failed under the routes (a port down, a switch lost, flows removed
        behind the controller's back): the Change restores them."""
        return self in (ChangeKind.PORT_DOWN, ChangeKind.SWITCH_LOST, ChangeKind.RESTORE)


@dataclass
class Change:
    """Messages that move the switches from the installed plan to the wanted one.

    ``phase0[dpid]``: meter and group mods, then FlowMod ADDs (new and modified flows), ending
    with a barrier: every make that depends on nothing else in this change (new tunnels,
    destination flows, intents on tunnels already there, intents whose old path broke). It
    also holds the DELETE_STRICTs of intents that fell back to best effort or drop (their path
    is gone; left in place their flows would capture the fallback traffic).
    ``phase1[dpid]``: the ingress flows and tunnel heads that move live traffic (an intent
    whose old path is still up) onto a tunnel made in this change, ending with a barrier;
    sent once the phase-0 barriers of ``phase1_after[dpid]`` are confirmed (every phase-0
    barrier when ``dpid`` is not in it), so no packet carries a label a switch on its way
    does not know yet (empty when no such intent moves). An intent whose old path has a link
    that is down moves in phase 0 with its new tunnel: its traffic is lost until then
    anyway, and a cut's restoration takes one round trip instead of two.
    ``phase1_after[dpid]``: the phase-0 switches the traffic of ``dpid``'s phase-1 flows
    crosses after it (their intents' paths): its phase 1 waits for those, not for every
    switch of phase 0.
    ``phase2[dpid]``: FlowMod DELETE_STRICTs, then meter and group deletes, ending with a
    barrier; send only after every phase-1 barrier is confirmed. ``intents``: ids of the
    intents waiting for this change to be confirmed (they become ``installed`` in
    :meth:`ControllerCore.confirm`).
    ``adds``/``deletes`` hold the same flows as data, for logs and tests.
    """

    token: int
    cause: str
    kind: ChangeKind = ChangeKind.TICK
    phase1: dict[int, list[Any]] = field(default_factory=dict)
    phase2: dict[int, list[Any]] = field(default_factory=dict)
    phase0: dict[int, list[Any]] = field(default_factory=dict)
    phase1_after: dict[int, frozenset[int]] = field(default_factory=dict)
    intents: tuple[int, ...] = ()
    adds: dict[int, tuple[FlowEntry, ...]] = field(default_factory=dict)
    deletes: dict[int, tuple[FlowEntry, ...]] = field(default_factory=dict)
    compute_ms: float = 0.0
    compute_started: float = 0.0
    """``time.perf_counter()`` when the core began computing it (0: not computed by the
    core's replanning)"""
    log_records: list[tuple[object, dict[str, Any]]] = field(default_factory=list)
    """log lines of this change (reroutes; intents installed by :meth:`ControllerCore.confirm`)
    not logged yet: :meth:`emit_logs` logs them"""

    def emit_logs(self) -> None:
        """Log the reroutes and installs of this change (the sender calls it once the new
        flows are in and after the confirmation, outside the lock: a log line costs ~70 us,
        and logging a thousand in the computing thread delayed the change itself by as
        much)."""
        records, self.log_records = self.log_records, []
        if len(records) <= LOG_EACH_MAX:
            for message, extra in records:
                log.info(message, extra=extra)
            return
        # a big change: one summary line per kind at INFO, each intent at DEBUG
        by_event: dict[str, list[int]] = {}
        for _, extra in records:
            by_event.setdefault(extra["event"], []).append(extra["intent"])
        for event, ids in by_event.items():
            what = {"reroute": "rerouted", "installed": "installed"}.get(event, event)
            log.info(f"change {self.token} ({self.cause}): {len(ids)} intents {what} "
                     f"(ids {id_ranges(ids)}; each at DEBUG)",
                     extra={"event": f"{event}_batch", "token": self.token})
        if log.isEnabledFor(logging.DEBUG):
            for message, extra in records:
                log.debug(message, extra=extra)

    @property
    def empty(self) -> bool:
        """Nothing to send (there may still be intents to confirm)."""
        return not self.phase0 and not self.phase1 and not self.phase2

    @property
    def dpids(self) -> list[int]:
        return sorted(set(self.phase0) | set(self.phase1) | set(self.phase2))

    def phases(self) -> list[tuple[str, dict[int, list[Any]]]]:
        """The phases to send, in order, each after the previous one is confirmed (a
        switch's phase 1 after the phase-0 switches of ``phase1_after`` when it has an
        entry there)."""
        return [(name, ph) for name, ph in (("phase0", self.phase0), ("phase1", self.phase1),
                                            ("phase2", self.phase2)) if ph]

    def message_count(self) -> int:
        return sum(len(msgs) for _, ph in self.phases() for msgs in ph.values())


@dataclass
class PacketInResult:
    """What a packet-in led to: packets to send now (``(dpid, msg)``, e.g. a proxy-ARP reply)
    and a Change when it taught the controller something that moves flows (a new host, a
    miswired link)."""

    messages: list[tuple[int, Any]] = field(default_factory=list)
    change: Change | None = None


LOG_EACH_MAX = 50
"""A change that reroutes or installs more intents than this logs one summary line per kind
at INFO and each intent at DEBUG (a log line costs ~70 us)."""


def id_ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out: list[str] = []
    ordered = sorted(set(ids))
    start = 0
    for k in range(1, len(ordered) + 1):
        if k == len(ordered) or ordered[k] != ordered[k - 1] + 1:
            lo, hi = ordered[start], ordered[k - 1]
            out.append(str(lo) if lo == hi else f"{lo}-{hi}")
            start = k
    return ", ".join(out)
