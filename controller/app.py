"""The os-ken application: the only module that touches os-ken events and datapaths.

Thin, like Faucet's ``faucet.py``: each handler turns an OpenFlow event into one call on the
:class:`~controller.service.ControllerService` (which holds the
:class:`~controller.core.ControllerCore` under one lock and sends the resulting Changes in
order, make-before-break, from one sender thread). This module also implements the service's
:class:`~controller.service.Transport`: attach a datapath to messages, send, and match barrier
replies by xid.

Start it with :func:`controller.main.main` (``cpn-controller``), which builds the service and
passes it to the app as the ``cpn_service`` keyword.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofp_parser

from controller import openflow
from controller.routing import FlowEntry
from controller.service import ControllerService

__all__ = ["CpnApp"]

TICK_S = 1.0
"""How often ``core.tick`` runs (ends the startup grace period)."""
LLDP_INTERVAL_S = 2.0
"""How often every live port sends an LLDP probe (the core's LLDP timeout is 10 s)."""
FLOW_REMOVED_BATCH_S = 0.05
"""Flow-removed messages are gathered this long and handed to the core in one call per
switch (``ovs-ofctl del-flows`` sends one message per flow)."""


class _BarrierWaiter:
    __slots__ = ("event", "ok")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False

    def wait(self, timeout: float | None = None) -> bool:
        return self.event.wait(timeout) and self.ok


class _WireCache:
    """FlowMod bytes by content, so a FlowMod sent again (the same flow on a reroute back,
    a reconcile, a delete after its add) is not serialised again: os-ken's serialiser costs
    ~45 us a FlowMod, most of phase 1 for thousands of them. The key holds the identities of
    the match and instruction objects, which ``controller.openflow`` caches and shares; the
    entry keeps references to them, so an identity cannot be reused while it is cached."""

    def __init__(self, max_entries: int = 1 << 18) -> None:
        self._max_entries = max_entries
        self._bytes: dict[tuple[Any, ...], tuple[Any, tuple[Any, ...], bytes]] = {}

    def serialize(self, msg: Any) -> bytes:
        """The wire bytes of ``msg`` with its xid (set it first)."""
        if not isinstance(msg, ofp_parser.OFPFlowMod):
            msg.serialize()
            return bytes(msg.buf)
        inst = tuple(msg.instructions)
        key = (msg.command, msg.table_id, msg.priority, msg.cookie, msg.cookie_mask,
               msg.flags, msg.idle_timeout, msg.hard_timeout, msg.buffer_id, msg.out_port,
               msg.out_group, id(msg.match), tuple(id(i) for i in inst))
        hit = self._bytes.get(key)
        if hit is None:
            msg.serialize()
            if len(self._bytes) >= self._max_entries:
                self._bytes.clear()
            self._bytes[key] = (msg.match, inst, bytes(msg.buf))
            return bytes(msg.buf)
        wire = hit[2]
        return wire[:4] + (msg.xid & 0xFFFFFFFF).to_bytes(4, "big") + wire[8:]


class CpnApp(app_manager.OSKenApp):  # type: ignore[misc]
    """The CPN controller's os-ken app (OpenFlow 1.3)."""

    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        service = kwargs.pop("cpn_service", None)
        super().__init__(*args, **kwargs)
        if not isinstance(service, ControllerService):
            raise RuntimeError("controller.app needs a ControllerService as the cpn_service "
                               "keyword; start it with cpn-controller (controller.main)")
        self.service = service
        self._send_lock = threading.Lock()
        self._waiters: dict[tuple[int, int], _BarrierWaiter] = {}
        """(id(datapath), xid) -> waiter"""
        self._stats: dict[int, list[Any]] = {}
        """id(datapath) -> flow-stats entries read so far (multipart)"""
        self._removed: dict[int, tuple[Any, list[FlowEntry]]] = {}
        """dpid -> (datapath, flows removed not yet handed to the core)"""
        self._removed_lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._wire = _WireCache()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Any:
        thread = super().start()
        self.service.start(self)
        self._ticker = threading.Thread(target=self._periodic, name="cpn-periodic",
                                        daemon=True)
        self._ticker.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        self.service.stop()
        super().stop()

    def _periodic(self) -> None:
        next_tick = next_probe = time.monotonic()
        while not self._stop.wait(FLOW_REMOVED_BATCH_S):
            try:
                self._flush_removed()
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK_S
                    probes = now >= next_probe
                    if probes:
                        next_probe = now + LLDP_INTERVAL_S
                    for dp, msg in self.service.periodic(probes):
                        self.send(dp, [msg])
                    if self.service.state_file:
                        self.service.write_state_file(self.service.state_file)
            except Exception:  # noqa: BLE001 - keep ticking whatever one round did
                self.logger.exception("periodic work failed", extra={"event": "periodic"})

    # -- Transport -----------------------------------------------------------------------------
    def alive(self, handle: Any) -> bool:
        return bool(getattr(handle, "is_active", False))

    def send(self, handle: Any, msgs: Sequence[Any]) -> _BarrierWaiter | None:
        """Send ``msgs`` on datapath ``handle`` in order; a waiter for the last barrier."""
        waiter = None
        dp = handle
        bufs = []
        for msg in msgs:
            msg.datapath = dp
            with self._send_lock:  # xids are shared with the event thread's packet-outs
                xid = dp.set_xid(msg)
                if isinstance(msg, dp.ofproto_parser.OFPBarrierRequest):
                    waiter = _BarrierWaiter()
                    self._waiters[(id(dp), xid)] = waiter
            bufs.append(self._wire.serialize(msg))
        # one write for the lot: os-ken's per-datapath send queue holds 16 items, and a
        # thread hand-off per FlowMod costs more than serialising it
        if bufs and not dp.send(b"".join(bufs)):
            if waiter is not None:
                self._fail_waiters(dp)
            return None
        return waiter

    def _fail_waiters(self, dp: Any) -> None:
        with self._send_lock:
            keys = [k for k in self._waiters if k[0] == id(dp)]
            doomed = [self._waiters.pop(k) for k in keys]
        for w in doomed:
            w.event.set()

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier_reply(self, ev: Any) -> None:
        dp = ev.msg.datapath
        with self._send_lock:
            waiter = self._waiters.pop((id(dp), ev.msg.xid), None)
        if waiter is not None:
            waiter.ok = True
            waiter.event.set()

    # -- switches ------------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: Any) -> None:
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            # os-ken's handshake has read the port descriptions into dp.ports
            ports = {p.port_no: _live(p) for p in dp.ports.values() if p.port_no <= ofp.OFPP_MAX}
            if not self.service.switch_connected(dp.id, ports, dp):
                return
            self._stats[id(dp)] = []
            self.send(dp, [openflow.flow_stats_request()])
        elif ev.state == DEAD_DISPATCHER:
            self._fail_waiters(dp)
            self._stats.pop(id(dp), None)
            self.service.switch_lost(dp.id, dp)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev: Any) -> None:
        dp = ev.msg.datapath
        parts = self._stats.get(id(dp))
        if parts is None:
            return
        parts.extend(ev.msg.body)
        if ev.msg.flags & ofp.OFPMPF_REPLY_MORE:
            return
        del self._stats[id(dp)]
        self.service.reconcile(dp.id, [openflow.flowstats_to_entry(s) for s in parts], dp)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev: Any) -> None:
        msg = ev.msg
        port = msg.desc
        if port.port_no > ofp.OFPP_MAX:
            return
        up = msg.reason != ofp.OFPPR_DELETE and _live(port)
        self.service.port_status(msg.datapath.id, port.port_no, up, msg.datapath)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev: Any) -> None:
        dp = ev.msg.datapath
        entry = openflow.flowremoved_to_entry(ev.msg)
        with self._removed_lock:
            held = self._removed.get(dp.id)
            if held is None or held[0] is not dp:
                held = self._removed[dp.id] = (dp, [])
            held[1].append(entry)

    def _flush_removed(self) -> None:
        with self._removed_lock:
            batch, self._removed = self._removed, {}
        for dpid, (dp, flows) in batch.items():
            self.service.flows_removed(dpid, flows, dp)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: Any) -> None:
        msg = ev.msg
        for dp, out in self.service.packet_in(msg.datapath.id, msg.match["in_port"],
                                              bytes(msg.data)):
            self.send(dp, [out])


def _live(port: Any) -> bool:
    return not (port.state & ofp.OFPPS_LINK_DOWN) and not (port.config & ofp.OFPPC_PORT_DOWN)
