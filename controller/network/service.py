"""ControllerService: the thread-safe face of a running controller, and the one boundary
around the network core.

The os-ken app (``app.py``) feeds switch events in; everything outside ``controller/network``
(the REST API, the web map, the metrics, compute steering, the intents' write protocol) calls
the intent methods and the read views, never the core or its lock. Both go through one lock
around the :class:`~.core.ControllerCore`, and every :class:`~.core.Change` the core
returns is handed, still under that lock, to one :class:`~.sender.ChangeSender` thread, so Changes
leave in exactly the order the core produced them.

Read views take the lock themselves and return plain data or immutable snapshots
(:mod:`.views`: :class:`~.views.SwitchView`, :class:`~.views.LinkView`,
:class:`~.views.NetworkSnapshot`); code that must compute on the live graph while the core
cannot change it runs inside ``with service.network() as net:`` (compute steering's
placements), and steering's NAT flows are computed by a callback under the lock
(:meth:`ControllerService.set_anycast`).

The sender (:mod:`.sender`) applies each Change make-before-break. Nothing here imports
os-ken's app machinery: switches are reached through a :class:`~.sender.Transport` (the app
implements it; tests can fake it).

Live reads (:meth:`ControllerService.read_flow_stats`, :meth:`~ControllerService.read_flows`,
:meth:`~ControllerService.read_ports`) send multipart requests through the transport and wait
for every part in the calling thread (bounded); the app only matches the parts by xid.

OpenFlow roles (``roles=True``, a cluster member; every switch connects to every member):
the cluster runtime says which switches this member masters (:meth:`ControllerService.want_role`,
with a ``generation_id`` that only grows), the service asks the switch, and writes reach a
switch only while it has confirmed this member as its master on the current connection (the
:class:`~.sender.WriteGate`). A standby keeps its core's view of a switch equal to the plan
(the sender drops its writes), learns hosts and links from the same packet-ins, and on
takeover reads the switch's flow table and reconciles against the same plan: a switch the
previous master left complete gets no FlowMod. The switches fence the rest: a write from a
demoted master is refused (``OFPBRC_IS_SLAVE``), a role request with an older generation too
(``OFPRRFC_STALE``). ``roles=False`` (standalone): no role request is sent and every connected
switch is written.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import heapq
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from controller.errors import BadRequest, NotFound, SwitchUnavailable
from controller.network import openflow
from controller.network.change import Change, ChangeKind
from controller.network.core import ControllerCore
from controller.network.flows import FlowEntry
from controller.network.intents import Intent
from controller.network.limits import ControlPlaneLimits
from controller.network.lldpauth import LldpAuth, LldpGuard
from controller.network.probes import ProbeSchedule
from controller.network.sender import (
    BARRIER_TIMEOUT_MAX_S,
    BARRIER_TIMEOUT_S,
    ChangeRecord,
    ChangeSender,
    Reply,
    Ticket,
    Transport,
    WriteGate,
)
from controller.network.sla import SlaMonitor
from controller.network.views import (
    LinkView,
    NetworkSnapshot,
    NetworkView,
    RoleEvent,
    RoleView,
    SwitchView,
    query_paths,
)
from controller.topology.model import IntentSpec, Topology
from controller.topology.wiring import Wiring

__all__ = ["ControllerService", "LinkView", "NetworkSnapshot", "NetworkView", "RoleEvent",
           "RoleView", "SwitchUnavailable", "SwitchView", "Ticket"]

log = logging.getLogger("controller.network.service")

READ_TIMEOUT_S = 5.0
"""Default bound of a live read (every part of a multipart reply)."""


PORT_STATS_INTERVAL_S = 2.0
"""default port-statistics poll (link load); setting ``network.port_stats_interval_s``"""
LLDP_INTERVAL_S = 2.0
"""default LLDP probe interval of every live port; setting ``network.lldp_interval_s``"""
LLDP_MAX_PPS = 100.0
"""default most LLDP probes a second over the whole network; setting
``network.lldp_max_pps``"""
GC_RECLAIM_INTERVAL_S = 600.0
"""How often the service hands the frozen plan objects back to the cyclic collector (see
:meth:`ControllerService.reclaim_garbage`)."""
IDLE_PORT_BPS = 64_000
"""A switch whose link ports carried less than this (bits/s, both ways, all ports) since its
last port-statistics poll is idle: polled :data:`IDLE_POLL_FACTOR` times less often."""
IDLE_POLL_FACTOR = 4
PROBE_CHECK_S = 0.1
"""How often the app asks for the LLDP probes due (:meth:`ControllerService.lldp_due`)."""
RESYNC_INTERVAL_S = 1.0
"""How often the service tries again to read the flow table of a switch that did not answer a
barrier in time (see :meth:`ControllerService.resync_stalled`)."""
RESYNC_MAX_INTERVAL_S = 16.0
"""A switch that is unconfirmed again soon after each reconciliation (it keeps refusing a
FlowMod, or answers reads but not barriers) is tried at doubling intervals up to this, so a
switch that cannot take its flows costs a table read and a log line every 16 s, not every
second; it is tried at the base interval again once it stays confirmed."""
WRITE_DRAIN_TIMEOUT_S = 2.0
"""How long a demotion waits for a write to the switch that is being handed over (only a
switch whose send queue is full takes long; the switch refuses that write anyway)."""


@dataclass
class _Role:
    """The role this controller wants and has on one switch (under the service's lock; the
    permission to write is the :class:`WriteGate`'s)."""

    wanted: str | None = None
    generation_id: int | None = None
    role: str = "unknown"
    """as the switch confirmed it on the current connection"""
    role_generation: int | None = None
    """the generation of that confirmation"""
    since: float | None = None
    error: str | None = None
    requested_at: float | None = None
    """``time.perf_counter()`` of the last role request on the current connection"""


class ControllerService:
    """Thread-safe facade over :class:`ControllerCore` plus the Change sender.

    Switch-event methods (``switch_connected`` ... ``periodic``) are for the os-ken app; they
    never block on switches. Intent methods wait (bounded) until their Change is confirmed by
    barriers. Read views return copies, safe to keep and serialise from another thread.
    """

    def __init__(self, topology: Topology, *, fallback: str = "best_effort",
                 startup_grace_s: float = 10.0, lldp_timeout_s: float = 10.0,
                 lldp_interval_s: float = LLDP_INTERVAL_S,
                 lldp_max_pps: float | None = LLDP_MAX_PPS,
                 barrier_timeout_s: float = BARRIER_TIMEOUT_S,
                 barrier_timeout_max_s: float = BARRIER_TIMEOUT_MAX_S,
                 delete_delay_s: float = 0.0,
                 port_stats_interval_s: float = PORT_STATS_INTERVAL_S,
                 gc_reclaim_interval_s: float = GC_RECLAIM_INTERVAL_S,
                 state_file: str | None = None, roles: bool = False,
                 limits: ControlPlaneLimits | None = None, fast_reroute: bool = False) -> None:
        self.topology = topology
        self.lock = threading.RLock()
        self.core = ControllerCore(topology, fallback=fallback, now=time.monotonic(),
                                   limits=limits, fast_reroute=fast_reroute,
                                   startup_grace_s=startup_grace_s,
                                   lldp_timeout_s=lldp_timeout_s)
        self.core.freeze_gc = True
        self._view = NetworkView(self.core.state)
        self.gc_reclaim_interval_s = gc_reclaim_interval_s
        """how often :meth:`start`'s collector thread unfreezes and collects (0: never)"""
        self.lldp_interval_s = lldp_interval_s
        """how often the app sends an LLDP probe out of every live port whose link is not
        settled (and an echo request to every switch)"""
        self.probe_schedule = ProbeSchedule(lldp_interval_s, lldp_timeout_s, lldp_max_pps)
        self._probed: tuple[tuple[int, int] | None, list[tuple[int, int]]] = (None, [])
        """((ports version, hosts version), the ports probed then): see :meth:`lldp_due`"""
        """when each port's next LLDP probe is due (:meth:`lldp_due`)"""
        self._gc_thread: threading.Thread | None = None
        self._resync: dict[int, Any] = {}
        self._resync_streak: dict[int, tuple[float, int]] = {}
        """dpid -> (when it was last reconciled by a resync, how many times in a row it was
        unconfirmed again soon after): the backoff of :meth:`resync_stalled`"""
        self._resync_not_before: dict[int, float] = {}
        """dpid -> the connection that did not answer a barrier in time: its table is read
        again until it answers (under :attr:`lock`)"""
        self._resync_wake = threading.Event()
        self._resync_thread: threading.Thread | None = None
        self._handles: dict[int, Any] = {}
        self._barrier_timeout_s = barrier_timeout_s
        self._barrier_timeout_max_s = barrier_timeout_max_s
        self._delete_delay_s = delete_delay_s
        self._transport: Transport | None = None
        self.sender: ChangeSender | None = None
        self.state_file = state_file
        """where the app writes :meth:`snapshot` every second (None: nowhere)"""
        self.port_stats_interval_s = port_stats_interval_s
        """how often :meth:`start` polls every switch's port statistics (0: never)"""
        self._poll_stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.packet_listeners: list[Callable[[int, int, bytes], None]] = []
        """called with ``(dpid, in_port, data)`` after the core handled a packet-in, outside
        the lock, in the app's event thread: must not block (compute steering queues work)"""
        self.topology_listeners: list[Callable[[str, float], None]] = []
        """called with ``(cause, t_event)`` (``time.perf_counter``) after the core handled a
        switch connect/loss or a port status, outside the lock, in the event thread: must
        not block"""
        self.role_mode = roles
        """a cluster member: OpenFlow roles decide which switches this process writes to
        (see the module docstring); False: standalone, every connected switch is written"""
        self.role_listeners: list[Callable[[RoleEvent], None]] = []
        """called with a :class:`RoleEvent` when a switch answers about this controller's
        role (a role reply, a refused role request, a write refused as not master), outside
        the lock, in the event thread: must not block"""
        self._gate = WriteGate(enforced=roles)
        self._roles = {d: _Role() for d in self.core.state.dpids()}
        self._role_send = threading.Lock()
        """held while role messages are built and sent, so they leave in the order the
        wanted roles were set (taken before :attr:`lock`, never inside it)"""

    # -- wiring to the app ----------------------------------------------------------------------
    def start(self, transport: Transport) -> None:
        """Start the sender thread (the app calls this once it can send)."""
        if self.sender is None:
            self._transport = transport
            self.sender = ChangeSender(self, transport, self._barrier_timeout_s,
                                       gate=self._gate,
                                       barrier_timeout_max_s=self._barrier_timeout_max_s,
                                       delete_delay_s=self._delete_delay_s)
        if self._poller is None and self.port_stats_interval_s > 0:
            self._poller = threading.Thread(target=self._poll_ports, name="cpn-port-stats",
                                            daemon=True)
            self._poller.start()
        if self._resync_thread is None:
            self._resync_thread = threading.Thread(target=self._resync_loop,
                                                   name="cpn-resync", daemon=True)
            self._resync_thread.start()
        if self._gc_thread is None and self.gc_reclaim_interval_s > 0:
            self._gc_thread = threading.Thread(target=self._reclaim_loop, name="cpn-gc",
                                               daemon=True)
            self._gc_thread.start()

    def _reclaim_loop(self) -> None:
        interval = self.gc_reclaim_interval_s
        while not self._poll_stop.wait(interval):
            self.reclaim_garbage()

    def reclaim_garbage(self, idle_timeout_s: float = 0.0) -> float | None:
        """Give the objects the core froze after its changes (``ControllerCore.freeze_gc``)
        back to the cyclic collector and run a full collection, so reference cycles among
        them are freed. Only when no Change is in flight (within ``idle_timeout_s``); returns
        the pause in ms, None when it was not idle."""
        if self.sender is not None and not self.sender.idle(idle_timeout_s):
            return None
        with self.lock:  # no change is computed meanwhile (its plan would be thawed half-made)
            t0 = time.perf_counter()
            gc.unfreeze()
            freed = gc.collect()
            ms = (time.perf_counter() - t0) * 1000.0
        log.debug(f"garbage collection: {freed} objects freed in {ms:.1f} ms",
                  extra={"event": "gc", "duration_ms": round(ms, 3)})
        return ms

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the service's threads (idempotent): the sender sends nothing more and gives
        up the Change it is sending (:meth:`ChangeSender.stop`; Changes submitted later are
        done at once, unsent), the port-statistics poller and the collector end. Waits at
        most ``timeout_s`` for the sender."""
        self._poll_stop.set()
        if self.sender is not None and not self.sender.stop(timeout_s):
            log.warning(f"the change sender did not end within {timeout_s:g} s",
                        extra={"event": "sender_stop_timeout"})

    def _poll_ports(self) -> None:
        """Port statistics of the connected switches (one aggregate request per switch for
        all its ports, sent to every due switch at once, then the replies waited for under
        one deadline), handed to the state (per-link load and drops). A switch is due every
        ``port_stats_interval_s``; one whose link ports carried less than
        :data:`IDLE_PORT_BPS` since its last poll every :data:`IDLE_POLL_FACTOR` times that."""
        interval = self.port_stats_interval_s
        due: dict[int, float] = {}
        last: dict[int, tuple[float, int]] = {}
        """dpid -> (switch clock s, link-port bytes both ways) at its last poll"""
        while not self._poll_stop.wait(interval):
            now = time.monotonic()
            with self.lock:
                handles = {d: h for d, h in self._handles.items()
                           if self.core.state.switches[d].connected and due.get(d, 0.0) <= now}
            transport = self._transport
            if transport is None:
                continue
            replies = [(d, transport.request(h, openflow.port_stats_request()))
                       for d, h in sorted(handles.items())]
            deadline = time.monotonic() + min(interval, READ_TIMEOUT_S)
            for dpid, reply in replies:
                if reply is None or not reply.wait(max(0.0, deadline - time.monotonic())) \
                        or reply.error is not None:
                    if reply is not None:
                        reply.cancel()
                    log.debug(f"port stats of {dpid:#x}: no answer",
                              extra={"event": "port_stats", "dpid": dpid})
                    continue
                rows = openflow.port_rows_of((), reply.parts)
                with self.lock:
                    self.core.state.port_counters(dpid, rows, time.monotonic())
                    links = [r for r in rows if (p := self.core.wiring.peer(
                        dpid, r["port_no"])) is not None and p[0] == "link"]
                total = sum(int(r["tx_bytes"] or 0) + int(r["rx_bytes"] or 0) for r in links)
                clock = max((r["duration_s"] or 0.0 for r in links), default=0.0)
                prev = last.get(dpid)
                last[dpid] = (clock, total)
                idle = prev is not None and clock > prev[0] and total >= prev[1] and \
                    (total - prev[1]) * 8 / (clock - prev[0]) < IDLE_PORT_BPS
                due[dpid] = now + interval * (IDLE_POLL_FACTOR if idle else 1) - interval / 2

    def submit(self, change: Change | None, t_event: float,
               unstall: Mapping[int, Any] | None = None) -> Ticket | None:
        """Queue ``change`` for the sender; call with :attr:`lock` held, right after the core
        returned it (``t_event``: ``time.perf_counter()`` of the event that caused it). Wait
        for it with :meth:`wait_change` after releasing the lock (the sender takes the lock to
        confirm). None when there is nothing to send. ``unstall``: the switches (dpid ->
        connection) whose stall this change ends (it is queued even when empty)."""
        if change is None:
            return None
        if self.sender is None or (change.empty and not change.intents and not unstall):
            change.emit_logs()  # nothing to send: its reroutes (if any) are news now
            return None
        handles = {d: self._handles[d] for d in change.dpids if d in self._handles}
        return self.sender.submit(change, handles, t_event, unstall)

    def _confirm(self, change: Change,
                 hold: Mapping[int, Sequence[FlowEntry] | None] | None = None) -> list[Intent]:
        """The sender's: every barrier of ``change`` is answered. ``hold``: switches an
        earlier Change in flight is not done with -> the flows it adds or deletes there
        (None: not only flows). An intent whose path crosses such a switch is not confirmed
        now unless none of those flows is one its traffic may use (another intent's ingress
        flows, tunnels of other labels); the sender confirms ``change`` again when the
        earlier Change ends."""
        with self.lock:
            if hold:
                change = dataclasses.replace(change, intents=tuple(
                    i for i in change.intents if not self._held_back(i, hold)))
            return self.core.confirm(change, time.monotonic())

    def _held_back(self, intent_id: int, hold: Mapping[int, Sequence[FlowEntry] | None]
                   ) -> bool:
        intent = self.core.router.intents.get(intent_id)
        if intent is None or intent.path is None:
            return False
        labels = {intent.mpls_label, *intent.mpls_labels}
        node_dpid = self.core.wiring.node_dpid
        for node in intent.path:
            dpid = node_dpid.get(node)
            if dpid is None or dpid not in hold:
                continue
            entries = hold[dpid]
            if entries is None:
                return True
            for e in entries:
                owner = e.owner
                if owner is None:
                    return True
                kind, oid = owner
                if not ((kind == "intent" and oid != intent_id)
                        or (kind == "tunnel" and oid not in labels)):
                    return True
        return False

    def _unconfirmed(self, handles: Mapping[int, Any]) -> None:
        """The sender's: these switches (dpid -> connection) did not answer a barrier within
        the bound. The core forgets their tables (no intent through them is confirmed, no
        FlowMod computed for them) and the resync thread reads them until they answer."""
        with self.lock:
            now = time.monotonic()
            for dpid, handle in handles.items():
                if self._handles.get(dpid) is not handle:
                    continue  # lost or reconnected: that connection's own handshake reads it
                self.core.desync(dpid, now)
                self._resync[dpid] = handle
                last, streak = self._resync_streak.get(dpid, (-math.inf, -1))
                streak = streak + 1 if now - last < 2 * RESYNC_MAX_INTERVAL_S else 0
                self._resync_streak[dpid] = (last, streak)
                delay_s = min(RESYNC_INTERVAL_S * 2 ** streak, RESYNC_MAX_INTERVAL_S)
                self._resync_not_before[dpid] = now + delay_s - RESYNC_INTERVAL_S
        self._resync_wake.set()

    def _resync_loop(self) -> None:
        while not self._poll_stop.is_set():
            self._resync_wake.wait(RESYNC_INTERVAL_S)
            self._resync_wake.clear()
            if self._poll_stop.is_set():
                return
            try:
                self.resync_stalled()
            except Exception:  # noqa: BLE001 - keep trying whatever one round did
                log.exception("resync failed", extra={"event": "resync_failed"})

    def resync_stalled(self, timeout_s: float | None = None) -> list[int]:
        """Read the flow table of every switch that did not answer a barrier in time (each
        read bounded by ``timeout_s``, default the barrier timeout) and reconcile the plan
        against what it answers: what it lacks is sent, make-before-break, and the intents
        through it become ``installed`` when that change is confirmed. A switch that still
        does not answer is tried again on the next round (every
        :data:`RESYNC_INTERVAL_S`; one unconfirmed again soon after each reconciliation at
        doubling intervals up to :data:`RESYNC_MAX_INTERVAL_S`). Returns the dpids
        reconciled. The service's resync thread calls it; tests may call it directly."""
        sender = self.sender
        with self.lock:
            now = time.monotonic()
            pending = {d: h for d, h in self._resync.items()
                       if self._resync_not_before.get(d, 0.0) <= now}
        done = []
        for dpid, handle in sorted(pending.items()):
            # as long as a barrier of this switch may take (its measured round trips)
            bound = (timeout_s if timeout_s is not None else
                     sender.round_trips.wait_s(dpid) if sender is not None else
                     self._barrier_timeout_s)
            t_read = time.monotonic()
            try:
                (parts,) = self._read(dpid, [("flow stats", openflow.flow_stats_request())],
                                      bound)
            except SwitchUnavailable as exc:
                if sender is not None:
                    sender.round_trips.expired(dpid)
                log.info(f"switch {dpid:#x} still not answering: {exc}",
                         extra={"dpid": dpid, "event": "resync_wait"})
                with self.lock:
                    if self._handles.get(dpid) is not handle:
                        self._resync.pop(dpid, None)  # gone: its next connection is read
                continue
            if sender is not None:
                sender.round_trips.sample(dpid, time.monotonic() - t_read)
            flows = [openflow.flowstats_to_entry(st) for st in parts]
            t = time.perf_counter()
            with self.lock:
                if self._handles.get(dpid) is not handle or self._resync.get(dpid) is not handle:
                    continue
                del self._resync[dpid]
                self._resync_streak[dpid] = (time.monotonic(),
                                             self._resync_streak.get(dpid, (0.0, 0))[1])
                log.info(f"switch {dpid:#x} answers again: {len(flows)} flows read",
                         extra={"dpid": dpid, "event": "resync"})
                self.submit(self.core.reconcile(dpid, flows, time.monotonic()), t,
                            unstall={dpid: handle})
            done.append(dpid)
        return done

    # -- switch events (from the app) ----------------------------------------------------------
    def switch_connected(self, dpid: int, ports: Mapping[int, bool], handle: Any) -> bool:
        """A switch finished its handshake. False (and nothing done) for a dpid the topology
        does not know: the app should ignore that switch."""
        t = time.perf_counter()
        with self._role_send:
            with self.lock:
                if dpid not in self.core.state.switches:
                    log.warning(f"switch {dpid:#x} is not in topology "
                                f"{self.topology.name!r}; ignoring it",
                                extra={"dpid": dpid, "event": "unknown_switch"})
                    return False
                self._handles[dpid] = handle
                self._reset_role(dpid)
                hello = self._role_hello(dpid)
                self.submit(self.core.switch_connected(dpid, ports, time.monotonic()), t)
            # before the app reads the flow table: the async configuration, then the role
            self._send_control(handle, hello)
        self._notify_topology(f"switch {dpid:#x} connected", t)
        return True

    def reconcile(self, dpid: int, flows: Iterable[FlowEntry], handle: Any) -> None:
        t = time.perf_counter()
        with self.lock:
            if self._handles.get(dpid) is not handle:
                return  # a newer connection of this switch will reconcile
            self.submit(self.core.reconcile(dpid, flows, time.monotonic()), t)

    def switch_lost(self, dpid: int, handle: Any) -> None:
        t = time.perf_counter()
        with self.lock:
            if self._handles.get(dpid) is not handle:
                return  # an old connection of a switch that has already reconnected
            del self._handles[dpid]
            self._reset_role(dpid)
            self.submit(self.core.switch_lost(dpid, time.monotonic()), t)
        self._notify_topology(f"switch {dpid:#x} lost", t)

    def port_status(self, dpid: int, port_no: int, up: bool, handle: Any) -> None:
        t = time.perf_counter()
        with self.lock:
            if self._handles.get(dpid) is not handle:
                return
            self.submit(self.core.port_status(dpid, port_no, up, time.monotonic()), t)
        self._notify_topology(f"port {dpid:#x}:{port_no} {'up' if up else 'down'}", t)

    def flows_removed(self, dpid: int, flows: Sequence[FlowEntry], handle: Any,
                      installed_at: Mapping[FlowEntry, float] | None = None) -> None:
        """``installed_at``: when each flow was installed, on ``time.monotonic()`` (the
        report's receipt less the flow's age; see ``ControllerCore.flows_removed``)."""
        t = time.perf_counter()
        with self.lock:
            if self._handles.get(dpid) is not handle:
                return
            self.submit(self.core.flows_removed(dpid, flows, time.monotonic(), installed_at), t)

    def packet_in(self, dpid: int, in_port: int | None, data: bytes
                  ) -> list[tuple[Any, Any]]:
        """Returns ``(handle, msg)`` packets to send now (proxy-ARP replies). ``in_port``
        None: the switch's message had none (counted, not used)."""
        t = time.perf_counter()
        with self.lock:
            result = self.core.packet_in(dpid, in_port, data, time.monotonic(),
                                         wall_s=time.time())
            self.submit(result.change, t)
            # a packet-out is a write: only the switch's master answers (proxy ARP)
            out = [(h, m) for d, m in result.messages
                   if (h := self._handles.get(d)) is not None and self._gate.allows(d, h)]
            learned = result.change if result.change is not None \
                and result.change.kind is ChangeKind.LLDP else None
            # exactly one member acts on a packet (steering a client's first packet)
            act = self._gate.allows(dpid, self._handles.get(dpid))
        for listener in self.packet_listeners if act else ():
            try:
                if in_port is not None:
                    listener(dpid, in_port, data)
            except Exception:  # noqa: BLE001 - a listener must not break packet handling
                log.exception("packet-in listener failed", extra={"event": "listener_failed"})
        if learned is not None:
            self._notify_topology(learned.cause, t)
        return out

    def _notify_topology(self, cause: str, t_event: float) -> None:
        """Tell the topology listeners (outside the lock) that the core saw ``cause``."""
        for listener in self.topology_listeners:
            try:
                listener(cause, t_event)
            except Exception:  # noqa: BLE001 - a listener must not break event handling
                log.exception("topology listener failed", extra={"event": "listener_failed"})

    def send_packet(self, dpid: int, msg: Any) -> bool:
        """Send one message (a packet-out) to switch ``dpid`` now; False when it is not
        connected, not writable here (:meth:`may_write`) or the service has no transport."""
        with self.lock:
            handle = self._handles.get(dpid)
        transport = self._transport
        if handle is None or transport is None or not transport.alive(handle):
            return False
        sent, _ = self._gate.send(transport, dpid, handle, [msg])
        if not sent:
            log.debug(f"packet-out to {dpid:#x} not sent: the switch is not mastered here",
                      extra={"dpid": dpid, "event": "packet_out_not_master"})
        return sent

    def periodic(self, probes: bool) -> list[tuple[Any, Any]]:
        """``core.tick``; with ``probes`` (the app asks every settled-link probe interval),
        an echo request to every switch, as ``(handle, msg)``, whose round trips the LLDP
        probes' delays need.
        The probes themselves: :meth:`lldp_due`."""
        t = time.perf_counter()
        with self.lock:
            now = time.monotonic()
            change = self.core.tick(now)
            self.submit(change, t)
        if change.kind is ChangeKind.GRACE_OVER:  # unseen switches are absent from now on
            self._notify_topology(change.cause, t)
        with self.lock:
            if not probes:
                return []
            # echo requests first: their round trips (control channel) are subtracted from the
            # LLDP probes' transit times to give link delays (NetworkState._measure_delay)
            return [(h, openflow.echo_request(time.monotonic()))
                    for d, h in sorted(self._handles.items())]

    def lldp_due(self) -> list[tuple[Any, Any]]:
        """The LLDP probes due now (:class:`~.probes.ProbeSchedule`: spread over the
        interval, settled links less often, new ports at once), as ``(handle, msg)``; the app
        asks every :data:`PROBE_CHECK_S`."""
        with self.lock:
            now = time.monotonic()
            st = self.core.state
            schedule = self.probe_schedule
            version = (st.ports_version, st.hosts_version)
            if self._probed[0] != version:  # the ports probed change rarely; asked 10 x/s
                probed = self.core.probe_ports()
                schedule.forget(schedule.known() - set(probed))
                schedule.size(len(probed))
                st.lldp_timeout_s = schedule.timeout_s  # verified at the pace of the budget
                self._probed = (version, probed)
            probed = self._probed[1]
            window_s = min(schedule.settled_interval_s * 1.5, st.lldp_timeout_s)
            # the most overdue first, as many as the budget lets out now
            waiting = [k for k in probed if schedule.due(k, now)]
            allowed = schedule.budget(now)
            if len(waiting) > allowed:
                waiting = heapq.nsmallest(allowed, waiting, key=schedule.overdue)
            chosen = set(waiting)
            schedule.spend(len(chosen))

            def seen(here: tuple[int, int], there: tuple[int, int]) -> bool:
                s = st.lldp_seen.get(here)
                return s is not None and (s.src_dpid, s.src_port) == there \
                    and now - s.time <= window_s

            for key in chosen:
                peer = st.wiring.link_peer(*key)
                settled = peer is not None and seen(key, peer[1:]) and seen(peer[1:], key)
                schedule.sent(key, now, settled)
            probes_out = []
            for d, m in self.core.lldp_probes(now, wall_s=time.time(), ports=sorted(chosen)):
                h = self._handles.get(d)
                if h is not None and self._gate.allows(d, h):
                    probes_out.append((h, m))
                elif h is not None:
                    # a standby sends no probe (a packet-out is a write): it sees the
                    # master's, whose send time it does not know, so it measures no delay
                    sent = self.core.state.lldp_sent
                    for key in [k for k in sent if k[0] == d]:
                        del sent[key]
            return probes_out

    def echo_reply(self, dpid: int, data: bytes) -> None:
        """An echo reply from ``dpid`` (the app): one of ours gives a control-channel RTT."""
        sent = openflow.parse_echo(data)
        if sent is not None:
            with self.lock:
                self.core.state.echo_rtt(dpid, time.monotonic() - sent)

    # -- OpenFlow roles (a cluster member) -----------------------------------------------------
    def want_role(self, dpid: int, master: bool, generation_id: int) -> None:
        """This member should be master (``master``) or a standby of switch ``dpid``, as of
        ``generation_id`` (from the cluster; it only grows). Remembered across reconnects of
        the switch; thread-safe; never waits for the switch.

        Not master: writes to the switch stop before this returns (a Change already queued
        does not reach it), then ``OFPRoleRequest(SLAVE, generation_id)`` is sent if it is
        connected. Master: ``OFPRoleRequest(MASTER, generation_id)`` is sent if connected;
        the switch becomes writable when its role reply confirms MASTER with this generation
        on the current connection, and is then read and reconciled (only the difference from
        the plan is sent). Standalone (``roles=False``): only remembered. :class:`NotFound`
        for a dpid the topology lacks, :class:`BadRequest` for a generation that is not an
        unsigned 64-bit number."""
        if not isinstance(generation_id, int) or not 0 <= generation_id < 1 << 64:
            raise BadRequest(f"generation_id {generation_id!r} is not an unsigned 64-bit "
                             "number")
        wanted = "master" if master else "slave"
        with self.lock:
            st = self._role(dpid)
            if (st.wanted, st.generation_id) == (wanted, generation_id) \
                    and (st.role, st.role_generation) == (wanted, generation_id) \
                    and self._may_write(dpid) == (master and self.role_mode):
                return  # in effect already: the switch confirmed exactly this
            st.wanted, st.generation_id = wanted, generation_id
            closed = not master and self._close(dpid, st)
        log.info(f"switch {dpid:#x}: wanted role {wanted}, generation {generation_id}",
                 extra={"dpid": dpid, "event": "role_wanted", "role": wanted,
                        "generation_id": generation_id})
        if closed:
            self._drain([dpid])
        self._request_role(dpid)

    def demote_all(self) -> None:
        """Stop writing to every switch at once (before returning) and want to be a standby
        of each (a member cut off from the cluster): ``OFPRoleRequest(SLAVE)`` with the
        last generation known per connected switch (refused as stale when another member
        has a newer one, which is harmless); a switch whose generation was never told gets
        no request. Standalone: only the wanted roles are remembered."""
        with self.lock:
            dpids = sorted(self._roles)
            for dpid in dpids:
                st = self._roles[dpid]
                st.wanted = "slave"
                self._close(dpid, st)
        log.warning("every switch demoted: no writes from this controller",
                    extra={"event": "role_demote_all"})
        if self.role_mode:
            self._drain(dpids)
        for dpid in dpids:
            self._request_role(dpid)

    def may_write(self, dpid: int) -> bool:
        """This controller writes to switch ``dpid`` now: it is connected and (a cluster
        member) has confirmed this controller as its master."""
        with self.lock:
            return self._may_write(dpid)

    def roles(self) -> dict[int, RoleView]:
        """This controller's role on every switch of the topology (dpid -> view)."""
        with self.lock:
            return {d: self._role_view(d) for d in self.core.state.dpids()}

    def role_reply(self, dpid: int, role: str, generation_id: int, handle: Any) -> bool:
        """The switch answered a role request on connection ``handle`` (the app): ``role``
        as :func:`openflow.role_name` names it. True when the switch has just become
        writable and its flow table was read since it connected: the app reads it again
        and hands it to :meth:`reconcile` (the previous master may have left it anyhow).
        (Before the first read, that read reconciles.)"""
        t = time.perf_counter()
        with self.lock:
            st = self._roles.get(dpid)
            if st is None or self._handles.get(dpid) is not handle:
                return False  # an old connection: its successor asks again
            before = (st.role, self._may_write(dpid))
            st.role, st.role_generation, st.error = role, generation_id, None
            opened = False
            if role == "master":
                # only the answer to the latest wanted role counts: a reply to an older
                # request (a newer generation or a demotion is on its way) does not
                if self.role_mode and st.wanted == "master" \
                        and st.generation_id == generation_id \
                        and not self._gate.allows(dpid, handle):
                    self._gate.open(dpid, handle)
                    opened = True
            else:
                self._gate.close(dpid)
            if (st.role, self._may_write(dpid)) != before:
                st.since = time.time()
            event = RoleEvent(dpid, role, generation_id, st.requested_at, t, None)
            reread = opened and self.core.synced(dpid)
        log.info(f"switch {dpid:#x} confirmed role {role}, generation {generation_id}"
                 + (": writable" if opened else ""),
                 extra={"dpid": dpid, "event": "role_reply", "role": role,
                        "generation_id": generation_id})
        self._notify_role(event)
        return reread

    def role_refused(self, dpid: int, code: int, generation_id: int | None,
                     handle: Any) -> None:
        """The switch refused a role request (OpenFlow error type 11, ``code``: 0 stale
        generation, 1 unsupported, 2 bad role) on connection ``handle``; ``generation_id``
        of the refused request when the error carried it back. The switch is not written
        any more; listeners hear ``"refused"``."""
        t = time.perf_counter()
        text = openflow.role_error_text(code)
        with self.lock:
            st = self._roles.get(dpid)
            if st is None or self._handles.get(dpid) is not handle:
                return
            self._close(dpid, st)
            st.error = text
            gen = generation_id if generation_id is not None else st.generation_id
            event = RoleEvent(dpid, "refused", gen, st.requested_at, t, text)
        log.warning(f"switch {dpid:#x}: {text}",
                    extra={"dpid": dpid, "event": "role_refused", "generation_id": gen})
        self._notify_role(event)

    def not_master(self, dpid: int, handle: Any) -> None:
        """The switch refused a write on connection ``handle`` because this controller is
        not its master (OpenFlow error type 1 code 10, ``OFPBRC_IS_SLAVE``): a newer master
        took it. The switch is not written any more; listeners hear ``"not_master"`` (once
        per loss: a burst of refused writes is one event)."""
        t = time.perf_counter()
        text = "write refused: this controller is not the switch's master (OFPBRC_IS_SLAVE)"
        with self.lock:
            st = self._roles.get(dpid)
            if st is None or self._handles.get(dpid) is not handle:
                return
            closed = self._close(dpid, st)
            if not closed and st.role == "slave":
                return  # known already: a write that was on its way when we stopped
            st.role, st.error, st.since = "slave", text, time.time()
            event = RoleEvent(dpid, "not_master", st.generation_id, st.requested_at, t, text)
        log.warning(f"switch {dpid:#x}: {text}",
                    extra={"dpid": dpid, "event": "role_not_master"})
        self._notify_role(event)

    def _role(self, dpid: int) -> _Role:
        st = self._roles.get(dpid)
        if st is None:
            raise NotFound(f"no switch with dpid {dpid:#x} in the topology")
        return st

    def _may_write(self, dpid: int) -> bool:
        handle = self._handles.get(dpid)
        return handle is not None and self._gate.allows(dpid, handle)

    def _role_view(self, dpid: int) -> RoleView:
        st = self._roles[dpid]
        return RoleView(dpid, st.wanted, st.role, st.generation_id, self._may_write(dpid),
                        st.since, st.error)

    def _close(self, dpid: int, st: _Role) -> bool:
        """Stop writes to ``dpid`` (with the lock); True when they were allowed."""
        closed = self._gate.close(dpid)
        if closed:
            st.since = time.time()
        return closed

    def _drain(self, dpids: Sequence[int]) -> None:
        """Wait (bounded, outside the lock) until no write to ``dpids`` is being handed over."""
        late = self._gate.drain(dpids, WRITE_DRAIN_TIMEOUT_S)
        if late:
            log.warning("a write to " + ", ".join(f"{d:#x}" for d in late) + " was still "
                        f"being handed over after {WRITE_DRAIN_TIMEOUT_S:g} s (send queue "
                        "full); the switch refuses it if it is mastered elsewhere",
                        extra={"event": "role_drain_timeout"})

    def _reset_role(self, dpid: int) -> None:
        """A new connection of ``dpid`` (or none): nothing confirmed, nothing writable (in
        roles mode); the wanted role and generation stay. With the lock."""
        st = self._roles[dpid]
        if self._gate.close(dpid) or st.role != "unknown":
            st.since = time.time()
        st.role, st.role_generation, st.requested_at, st.error = "unknown", None, None, None

    def _role_hello(self, dpid: int) -> list[Any]:
        """The first messages of a new connection in roles mode: the async configuration
        (a slave still gets packet-ins and port status), then the wanted role. With the
        lock; send with :meth:`_send_control` under :attr:`_role_send`."""
        if not self.role_mode:
            return []
        msgs = [openflow.set_async()]
        request = self._role_request(dpid)
        return msgs + ([request] if request is not None else [])

    def _role_request(self, dpid: int) -> Any | None:
        """The role request of the wanted role (None: none known, or standalone), recorded
        as sent now. With the lock."""
        st = self._roles[dpid]
        if not self.role_mode or st.wanted is None or st.generation_id is None:
            return None
        st.requested_at = time.perf_counter()
        return openflow.role_request(st.wanted, st.generation_id)

    def _request_role(self, dpid: int) -> None:
        """Send the role wanted now to the switch's current connection. Each request is
        built from the state when it leaves, under :attr:`_role_send`, so the last request
        on the wire always carries the latest wanted role."""
        with self._role_send:
            with self.lock:
                handle = self._handles.get(dpid)
                request = self._role_request(dpid) if handle is not None else None
            if request is not None:
                self._send_control(handle, [request])

    def _send_control(self, handle: Any, msgs: list[Any]) -> None:
        """Send messages every role may send (role requests, async configuration)."""
        transport = self._transport
        if msgs and transport is not None and transport.alive(handle):
            transport.send(handle, msgs)

    def _notify_role(self, event: RoleEvent) -> None:
        for listener in self.role_listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a listener must not break event handling
                log.exception("role listener failed", extra={"event": "listener_failed"})

    # -- intents (for the write protocol, controller/operations.py) ----------------------------
    def wait_change(self, ticket: Ticket | None, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until the Change of ``ticket`` (from :meth:`submit`)
        is sent and confirmed; a timeout is logged, not raised."""
        if ticket is not None and not ticket.done.wait(timeout_s):
            log.warning(f"change {ticket.change.token} not confirmed within {timeout_s:g} s",
                        extra={"event": "confirm_timeout", "token": ticket.change.token})

    def add_intent(self, spec: IntentSpec, *, intent_id: int | None = None,
                   timeout_s: float = 10.0, admit: bool = False) -> Intent:
        """Add an intent, send its flows and wait (at most ``timeout_s``) for the barriers.
        Returns a snapshot: ``state`` is ``installed`` once confirmed, ``infeasible`` with a
        ``reason`` when no path meets its bounds, ``pending`` on timeout."""
        t = time.perf_counter()
        with self.lock:
            intent, change = self.core.add_intent(spec, time.monotonic(), intent_id,
                                                  admit=admit)
            ticket = self.submit(change, t)
        self.wait_change(ticket, timeout_s)
        return self.intent(intent.id)

    def add_intents(self, specs: Sequence[IntentSpec], *,
                    intent_ids: Sequence[int | None] | None = None,
                    timeout_s: float = 30.0) -> list[Intent]:
        """Many intents in one routing pass and one Change; all or nothing (see the core)."""
        t = time.perf_counter()
        with self.lock:
            added, change = self.core.add_intents(specs, time.monotonic(), intent_ids)
            ticket = self.submit(change, t)
        self.wait_change(ticket, timeout_s)
        with self.lock:
            return [self.core.intent(i.id).snapshot() for i in added]

    def apply_intents(self, adds: Sequence[tuple[int, IntentSpec]], removes: Sequence[int]
                      ) -> Ticket | None:
        """Apply committed changes to the operator intents (a cluster member's replica, see
        :meth:`ControllerCore.apply_intents`) as one Change, without waiting: the returned
        ticket (None: nothing to send) tells when its barriers are confirmed
        (:meth:`wait_change`). Specs the core refuses are logged and skipped."""
        t = time.perf_counter()
        with self.lock:
            _, refused, change = self.core.apply_intents(adds, removes, time.monotonic())
            ticket = self.submit(change, t)
        for iid, why in refused:
            log.error(f"committed intent {iid} not applied here: {why}",
                      extra={"intent": iid, "event": "apply_refused"})
        return ticket

    def validate_intent(self, spec: IntentSpec, *, admit: bool = False) -> None:
        """Raise what :meth:`add_intent` would raise for ``spec`` (with ``admit``: admission
        control too); nothing changes."""
        with self.lock:
            self.core.validate_intent(spec, time.monotonic(), admit=admit)

    def remove_intent(self, intent_id: int, *, timeout_s: float = 10.0) -> None:
        t = time.perf_counter()
        with self.lock:
            ticket = self.submit(self.core.remove_intent(intent_id, time.monotonic()), t)
        self.wait_change(ticket, timeout_s)

    def intents(self) -> list[Intent]:
        with self.lock:
            return [i.snapshot() for i in self.core.intents()]

    def intent(self, intent_id: int) -> Intent:
        with self.lock:
            return self.core.intent(intent_id).snapshot()

    # -- read views (the API, metrics, the web map, compute steering) ----------------------------
    @property
    def wiring(self) -> Wiring:
        """Port numbers of every link end and host (from the topology file; never changes)."""
        return self.core.wiring

    def _switch_view(self, dpid: int) -> SwitchView:
        s = self.core.state.switch(dpid)
        pending, since = (self.sender.backlog().get(dpid, (0, None)) if self.sender is not None
                          else (0, None))
        # synced: its table is known and it has answered every Change sent to it
        return SwitchView(s.name, s.dpid, s.connected, self.core.synced(dpid) and not pending,
                          dict(s.ports) if s.ports is not None else None, pending,
                          None if since is None else round(time.monotonic() - since, 3))

    def switch(self, dpid: int) -> SwitchView:
        """One switch; :class:`NotFound` for a dpid the topology lacks."""
        with self.lock:
            return self._switch_view(dpid)

    def switch_views(self) -> list[SwitchView]:
        """Every switch of the topology, in dpid order."""
        with self.lock:
            return [self._switch_view(d) for d in self.core.state.dpids()]

    def switches(self) -> list[dict[str, Any]]:
        """:meth:`switch_views` as plain data."""
        return [v.as_dict() for v in self.switch_views()]

    def links(self) -> dict[str, list[dict[str, Any]]]:
        """The LLDP check of the file's links: ``missing``/``unexpected``/... (core's view)."""
        with self.lock:
            return copy.deepcopy(self.core.state.link_report(time.monotonic()))

    def _link_views(self) -> list[LinkView]:
        st = self.core.state
        g = st.graph
        out = []
        backup = self.core.router.table.backup_mbps
        bypasses = self.core.router.bypasses  # as of the last change
        node_dpid = st.wiring.node_dpid

        def bypass(node: str, port: int) -> tuple[str, ...] | None:
            found = bypasses.bypass(node_dpid[node], port)
            return None if found is None else found.path

        for i, lk in enumerate(self.topology.links):
            pa, pb = st.wiring.link_ports[i]
            lid = st.link_ids[i]
            back = g.reverse_link(lid)
            cap = lk.bandwidth_mbps
            out.append(LinkView(i, lk.a, lk.b, lk.latency_ms, cap, lk.cost,
                                lk.distance_km, st.link_usable(i),
                                st.reserved_mbps(lid, cap), st.link_load(i),
                                st.link_delay_ms.get(i),
                                0.0 if back is None else st.reserved_mbps(back, cap),
                                backup.get(lid, 0.0),
                                0.0 if back is None else backup.get(back, 0.0),
                                bypass(lk.a, pa), bypass(lk.b, pb)))
        return out

    def link_views(self) -> list[LinkView]:
        """Every link of the topology file, in file order: state, reservations, measured
        load and delay."""
        with self.lock:
            return self._link_views()

    def link_states(self) -> list[dict[str, Any]]:
        """:meth:`link_views` as the plain data of ``GET /links`` and the state file."""
        return [v.as_state() for v in self.link_views()]

    def hosts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"name": h.name, "ip": h.ip, "mac": h.mac, "node": h.node,
                     "dpid": h.dpid, "port_no": h.port_no, "source": h.source}
                    for h in self.core.state.hosts.values()]

    def events(self, limit: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            evs = list(self.core.state.events)
        return copy.deepcopy(evs[-limit:] if limit else evs)

    def record_event(self, kind: str, **details: Any) -> None:
        """Add an event that happened outside the core (e.g. a refused OpenFlow TLS
        handshake) to the event log of :meth:`events`, timed now."""
        with self.lock:
            self.core.state.record(kind, time.monotonic(), **details)

    def health(self) -> dict[str, Any]:
        """Counters for ``/health``: ``topology``, ``switches_total``, ``switches_connected``,
        ``switches_synced``, ``intents``."""
        with self.lock:
            st = self.core.state
            sws = list(st.switches.values())
            return {"topology": self.topology.name, "switches_total": len(sws),
                    "switches_connected": sum(1 for s in sws if s.connected),
                    "switches_synced": sum(1 for s in sws if self.core.synced(s.dpid)),
                    "intents": len(self.core.intents())}

    def change_marker(self) -> tuple[Any, ...]:
        """A cheap value that differs whenever links, switches, hosts, intents (state, path,
        reroutes, reason) or the event log change: poll it to learn when to take a
        :meth:`network_snapshot`."""
        with self.lock:
            return self._marker()

    def _marker(self) -> tuple[Any, ...]:
        st = self.core.state
        events = st.events
        last = events[-1] if events else None
        intents = tuple((i.id, i.state, tuple(i.path or ()), len(i.history), i.reason)
                        for i in self.core.intents())
        return (st.version, len(events), id(last), intents)

    def network_snapshot(self, recent_events: int = 30) -> NetworkSnapshot:
        """Switches, links, intents and the ``recent_events`` latest events, consistent with
        each other (one acquisition of the lock)."""
        with self.lock:
            st = self.core.state
            recent = list(st.events)[-recent_events:] if recent_events > 0 else []
            return NetworkSnapshot(
                self.topology.name, tuple(self._switch_view(d) for d in st.dpids()),
                tuple(self._link_views()),
                tuple(i.snapshot() for i in self.core.intents()),
                tuple(copy.deepcopy(recent)), self._marker())

    # -- flows as the controller plans them ------------------------------------------------------
    def plan_flows(self, dpid: int) -> tuple[str, list[FlowEntry]]:
        """The flows of switch ``dpid`` in the controller's plan, sorted: ``("installed",
        ...)`` (its confirmed view, read from the switch at reconciliation and kept by
        barriers) when the switch is synced, else ``("wanted", ...)``. :class:`NotFound`
        for a dpid the topology lacks."""
        with self.lock:
            self.core.state.switch(dpid)
            synced = self.core.synced(dpid)
            plan = self.core.installed_plan() if synced else self.core.wanted_plan()
            return ("installed" if synced else "wanted"), sorted(plan.entries(dpid))

    def installed_flows(self) -> list[tuple[SwitchView, list[FlowEntry]]]:
        """Every switch (dpid order) with the flows it holds as far as the controller knows
        (its confirmed view; nothing for a switch not synced), sorted."""
        with self.lock:
            plan = self.core.installed_plan()
            return [(self._switch_view(d), sorted(plan.entries(d)))
                    for d in self.core.state.dpids()]

    # -- measured delay and SLA monitoring (controller.network.measure, .sla) -------------------
    def configure_measurements(self, *, delay_source: str = "external",
                               measurement_max_age_s: float = 30.0, sla_interval_s: float = 1.0,
                               sla_samples: int = 3, sla_ewma_alpha: float = 0.3,
                               sla_reroute: bool = True,
                               bandwidth_admission: str = "reserved") -> None:
        """Which measured delay counts, how intents' SLAs are sampled and what reservations
        are admitted against (the settings ``network.delay_source`` ...
        ``network.sla_ewma_alpha``, ``network.bandwidth_admission``); ``sla_reroute`` False
        keeps every intent on configured latencies (a cluster member: measurements are each
        member's own, and every member must compute the same routes)."""
        if bandwidth_admission not in ("reserved", "measured"):
            raise ValueError(f"bandwidth_admission {bandwidth_admission!r}: reserved or "
                             "measured")
        with self.lock:
            st = self.core.state
            st.delay_source, st.measurement_max_age_s = delay_source, measurement_max_age_s
            st.bandwidth_admission = bandwidth_admission
            self.core.sla = SlaMonitor(samples=sla_samples, alpha=sla_ewma_alpha,
                                       interval_s=sla_interval_s)
            self.core.sla_reroute = sla_reroute

    def set_link_measurement(self, index: int, body: Any) -> dict[str, Any]:
        """An external measurement of link ``index`` (``PUT /links/{index}/measurements``);
        the link's measurement view. 404 unknown link, 400 nonsense (nothing kept)."""
        with self.lock:
            return self.core.state.set_link_measurement(index, body, time.monotonic())

    def path_measured_ms(self, link_ids: Sequence[int]) -> tuple[float, int] | None:
        """The measured latency of a path (directed pathcore link ids) and how many of its
        links had no measurement (configured latency counted); None for an id the graph
        lacks."""
        with self.lock:
            try:
                return self.core.state.path_measured_ms(link_ids, time.monotonic())
            except KeyError:
                return None

    def link_measurements(self) -> list[dict[str, Any]]:
        """Per link of the file, in order: :meth:`NetworkState.link_measurement_view`."""
        with self.lock:
            st, now = self.core.state, time.monotonic()
            return [st.link_measurement_view(i, now) for i in range(len(self.topology.links))]

    def set_lldp_auth(self, auth: LldpAuth | None) -> None:
        """Sign LLDP probes with ``auth`` and use only received LLDP that passes its checks
        (None: unsigned discovery). Set before the switches connect (the composition root
        does, once the discovery secret is loaded); a change drops what the old key
        admitted to the replay cache, not the links it confirmed."""
        with self.lock:
            rejected = self.core.lldp.rejected
            self.core.lldp = LldpGuard(auth)
            self.core.lldp.rejected = rejected

    def hosts_refused(self) -> dict[str, int]:
        """reason -> hosts not learned since start (see :mod:`~controller.network.limits`)."""
        with self.lock:
            return dict(self.core.state.host_guard.refused)

    def packet_in_rejections(self) -> dict[str, int]:
        """reason -> packet-ins not used since start (``core.PACKET_IN_REJECTIONS``)."""
        with self.lock:
            return dict(self.core.packet_in_rejected)

    def lldp_rejections(self) -> dict[str, int]:
        """reason -> LLDP frames dropped since start (see :mod:`~controller.network.lldpauth`)."""
        with self.lock:
            return dict(self.core.lldp.rejected)

    def installed_flow_counts(self) -> dict[int, int]:
        """dpid -> how many flows the switch holds as far as the controller knows."""
        with self.lock:
            plan = self.core.installed_plan()
            return {d: len(plan.entries(d)) for d in self.core.state.dpids()}

    def intent_flows(self, intent_id: int) -> tuple[Intent, list[tuple[int, FlowEntry, bool]]]:
        """The intent (a copy) and its flows in the plan, ``(dpid, entry, installed)``: its
        own, its tunnel head's and those of the tunnel segments it rides; ``installed``: the
        switch holds it as far as the controller knows. :class:`NotFound` for an unknown
        id."""
        with self.lock:
            intent = self.core.intent(intent_id).snapshot()
            installed = self.core.installed_plan()
            owners = {("intent", intent_id)}
            # its head (at the ingress) and the segments of the tunnel that head points at
            owners.update(("tunnel", label) for label in intent.mpls_labels)
            if intent.mpls_label is not None:
                owners.add(("tunnel", intent.mpls_label))
            return intent, [(d, e, e in installed.entries(d))
                            for d, e in self.core.wanted_plan() if e.owner in owners]

    def installed_intent_flows(self, intent_id: int) -> int:
        """How many of the intent's own flows the switches hold (the controller's view)."""
        with self.lock:
            return sum(1 for _, e in self.core.installed_plan()
                       if e.owner == ("intent", intent_id))

    def max_intent_id(self) -> int:
        """The highest id of an intent the controller holds (0 when none)."""
        with self.lock:
            return max((i.id for i in self.core.intents()), default=0)

    # -- path queries ----------------------------------------------------------------------------
    def node_of(self, name: str) -> str:
        """The node a host hangs off, or ``name`` itself when it is a node; NotFound else."""
        with self.lock:
            host = self.core.state.hosts.get(name)
        if host is not None:
            return host.node
        if any(n.name == name for n in self.topology.nodes):
            return name
        raise NotFound(f"no host or node {name!r}")

    def query_paths(self, src: str, dst: str, *, max_latency_ms: float | None = None,
                    min_bandwidth_mbps: float | None = None, k: int = 1,
                    disjoint: bool = False) -> dict[str, Any]:
        """What the engine would choose between two hosts or nodes on the network as it is
        now, installing nothing (see :func:`~controller.network.views.query_paths`), as
        the plain data of ``GET /paths`` (``compute_ms``: the time under the lock).
        :class:`BadRequest` for equal ends, :class:`NotFound`, :class:`InfeasibleRoute`."""
        if src == dst:
            raise BadRequest("src and dst are the same")
        t0 = time.perf_counter()
        with self.lock:
            a, b = self.node_of(src), self.node_of(dst)
            paths = query_paths(self.core.state.graph, a, b, max_latency_ms=max_latency_ms,
                                min_bandwidth_mbps=min_bandwidth_mbps, k=k,
                                disjoint=disjoint)
        compute_ms = (time.perf_counter() - t0) * 1000.0
        return {"src": src, "dst": dst, "src_node": a, "dst_node": b,
                "max_latency_ms": max_latency_ms, "min_bandwidth_mbps": min_bandwidth_mbps,
                "disjoint": disjoint, "compute_ms": compute_ms, "paths": paths}

    def within_latency(self, centers: Sequence[str], max_latency_ms: float
                       ) -> dict[str, dict[str, float]]:
        """For each center (a node, or a host: its node) the nodes within ``max_latency_ms``
        of it on the network as it is now: ``{center node: {node: latency_ms}}``."""
        with self.lock:
            nodes = [self.node_of(c) for c in centers]
            g = self.core.state.graph
            return {n: g.within_latency(n, max_latency_ms) for n in nodes}

    # -- compute steering ------------------------------------------------------------------------
    @contextmanager
    def network(self) -> Iterator[NetworkView]:
        """Hold the lock and read the live network (for computations that must see one
        state, e.g. a placement); keep the block short, never wait in it."""
        with self.lock:
            yield self._view

    def node_present(self, node: str) -> bool:
        """The node's switch is connected (or not seen yet during the startup grace)."""
        with self.lock:
            return self.core.state.node_present(node)

    def set_anycast(self, plan: Callable[[NetworkView], tuple[
                        Mapping[int, Mapping[int, Iterable[FlowEntry]]], Mapping[str, str]]],
                    *, timeout_s: float) -> None:
        """Replace every anycast NAT flow: ``plan`` computes, under the lock, from the live
        network, the flows (owner cookie -> dpid -> entries) and the proxy-ARP answers
        (anycast IPv4 -> MAC). Sends the Change and waits (at most ``timeout_s``) for its
        barriers."""
        t = time.perf_counter()
        with self.lock:
            flows, arp = plan(self._view)
            change = self.core.set_anycast(flows, arp, time.monotonic())
            ticket = self.submit(change, t)
        self.wait_change(ticket, timeout_s)

    # -- the state file --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Intents, switches and links as plain data (what ``--state-file`` writes)."""
        with self.lock:
            return {"topology": self.topology.name,
                    "intents": [i.as_dict() for i in self.core.intents()],
                    "switches": self.switches(), "links": self.link_states(),
                    "link_report": self.links()}

    def write_state_file(self, path: str) -> None:
        """Write :meth:`snapshot` as JSON to ``path`` atomically (tests and operators read
        it while the REST API does not exist yet)."""
        data = json.dumps(self.snapshot(), default=str)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(tmp, path)

    # -- live reads from the switches -------------------------------------------------------------
    def _read(self, dpid: int, requests: Sequence[tuple[str, Any]], timeout_s: float
              ) -> list[list[Any]]:
        """Send ``requests`` (what, message) to switch ``dpid`` together and wait, in this
        thread, for every part of every reply; one deadline for all."""
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive number, not {timeout_s!r}")
        with self.lock:
            sw = self.core.state.switches.get(dpid)
            if sw is None:
                raise NotFound(f"no switch with dpid {dpid:#x} in the topology")
            handle = self._handles.get(dpid)
        label = f"switch {sw.name} ({dpid:#x})"
        transport = self._transport
        if handle is None or transport is None or not transport.alive(handle):
            raise SwitchUnavailable(f"{label} is not connected")
        replies: list[tuple[str, Reply]] = []
        try:
            for what, msg in requests:
                reply = transport.request(handle, msg)
                if reply is None:
                    raise SwitchUnavailable(f"{label}: the connection was lost")
                replies.append((what, reply))
            deadline = time.monotonic() + timeout_s
            for what, reply in replies:
                if not reply.wait(max(0.0, deadline - time.monotonic())):
                    raise SwitchUnavailable(f"{label} did not answer the {what} request "
                                            f"within {timeout_s:g} s")
                if reply.error is not None:
                    raise SwitchUnavailable(f"{label}, {what}: {reply.error}")
        finally:
            for _, reply in replies:
                reply.cancel()
        return [reply.parts for _, reply in replies]

    def read_flow_stats(self, dpid: int, *, timeout_s: float = READ_TIMEOUT_S
                        ) -> list[openflow.FlowStat]:
        """Every flow of switch ``dpid`` (all tables, any cookie), read from the switch now
        (all parts of the multipart reply), with its counters; sorted by entry.
        :class:`NotFound` for a dpid the topology lacks, :class:`SwitchUnavailable` when the
        switch is not connected or does not answer within ``timeout_s``."""
        (parts,) = self._read(dpid, [("flow stats", openflow.flow_stats_request())],
                              timeout_s)
        return openflow.flow_stats_of(parts)

    def read_flows(self, dpid: int, *, timeout_s: float = READ_TIMEOUT_S) -> list[FlowEntry]:
        """Every flow of switch ``dpid`` as the switch holds it now (see
        :meth:`read_flow_stats`)."""
        return [st.entry for st in self.read_flow_stats(dpid, timeout_s=timeout_s)]

    def read_ports(self, dpid: int, *, timeout_s: float = READ_TIMEOUT_S
                   ) -> list[dict[str, Any]]:
        """The switch's ports read now (port descriptions and port statistics, requested
        together): ``port_no``, ``name``, ``hw_addr``, ``link_up``, ``admin_up``,
        ``curr_speed_kbps``, ``rx_packets``, ``tx_packets``, ``rx_bytes``, ``tx_bytes``,
        ``rx_dropped``, ``tx_dropped``, ``rx_errors``, ``tx_errors``, ``duration_s``
        (counters None for a port the statistics lack). Physical ports only (not LOCAL),
        sorted by ``port_no``. Errors as :meth:`read_flow_stats`."""
        descs, stats = self._read(dpid, [("port description", openflow.port_desc_request()),
                                         ("port stats", openflow.port_stats_request())],
                                  timeout_s)
        return openflow.port_rows_of(descs, stats)

    def change_records(self) -> list[ChangeRecord]:
        """Timings of the Changes sent so far (the most recent 10,000)."""
        return list(self.sender.records) if self.sender is not None else []

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued Change is sent and confirmed; False on timeout."""
        return self.sender.idle(timeout_s) if self.sender is not None else True
