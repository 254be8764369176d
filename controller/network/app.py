"""The os-ken application: the only module that touches os-ken events and datapaths.

Thin, like Faucet's ``faucet.py``: each handler turns an OpenFlow event into one call on the
:class:`~controller.network.service.ControllerService` (which holds the
:class:`~controller.network.core.ControllerCore` under one lock and sends the resulting Changes in
order, make-before-break, from one sender thread). This module also implements the service's
:class:`~.service.Transport`: attach a datapath to messages, send, and match barrier
replies by xid.

Start it with :func:`controller.main.main` (``cpn-controller``), which builds the service and
passes it to the app as the ``cpn_service`` keyword.

Multipart requests (flow stats, port stats, port descriptions) go out through
:meth:`CpnApp.request`; their reply parts are matched by xid and collected here, and whoever
asked waits on the returned :class:`_Reply` in its own thread (the REST API's, for live reads),
never in os-ken's event thread.

OpenFlow roles (a cluster member's service, ``roles=True``): role replies go to
:meth:`ControllerService.role_reply` (a switch just taken over is read and reconciled, as on
connect), refused role requests (error type 11) to :meth:`~ControllerService.role_refused`,
writes refused as not master (error type 1 code 10) to :meth:`~ControllerService.not_master`;
such a refused bundle is not sent again one by one. The service builds the role requests and
the async configuration and sends them through :meth:`CpnApp.send`.

Stopping: :meth:`CpnApp.shutdown` ends every wait on a switch at once (barrier waits and live
reads fail with :data:`STOPPING`; the service's sender gives up the Change it is sending) and
sends nothing more; :meth:`CpnApp.close_connections` then shuts every switch connection
(``controller.main`` orders the two around the rest of the stop).

OpenFlow message counters (:mod:`.counters`): messages out are counted per type once per
:meth:`CpnApp.send` batch (role requests and async configuration too); messages in (role
replies and errors too) are counted by the event thread into a plain dict (it is the only
writer) and added to the Prometheus counters by the periodic thread every 50 ms, so a
handler pays a dict increment, not the counters' locks.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofp_parser

from controller.network import openflow
from controller.network.counters import PACKET_INS, count_openflow_message
from controller.network.flows import FlowEntry
from controller.network.service import PROBE_CHECK_S, ControllerService

__all__ = ["CpnApp"]

TICK_S = 1.0
"""How often ``core.tick`` runs (ends the startup grace period)."""
FLOW_REMOVED_BATCH_S = 0.05
"""Flow-removed messages are gathered this long and handed to the core in one call per
switch (``ovs-ofctl del-flows`` sends one message per flow)."""


BUNDLE_MIN = 2
"""FlowMods in a row that are sent as one bundle rather than one by one."""
STOPPING = "the controller is stopping"
"""Why waits on switches end when the app shuts down (a live read answers 503 with it)."""


def _next_xid(dp: Any) -> int:
    """The next xid of datapath ``dp``, as ``Datapath.set_xid`` allocates them (for the bundle
    control messages, which are packed here without an os-ken message object)."""
    dp.xid = (dp.xid + 1) & ofp.MAX_XID
    return int(dp.xid)


class _BarrierWaiter:
    """Set when the barrier is answered: ``ok`` unless the connection died or the switch
    refused a FlowMod sent before the barrier (``error`` says which)."""

    __slots__ = ("_callback", "error", "event", "ok")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.ok = False
        self.error: str | None = None
        self._callback: Callable[[], None] | None = None

    def wait(self, timeout: float | None = None) -> bool:
        return self.event.wait(timeout) and self.ok

    def notify(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the wait is over (at once if it is already)."""
        self._callback = callback
        if self.event.is_set():
            callback()

    def set(self) -> None:
        """The wait is over (``ok`` and ``error`` are set before)."""
        self.event.set()
        callback = self._callback
        if callback is not None:
            callback()


class _Reply:
    """The parts of one multipart reply, matched by xid. ``wait`` returns True once it is
    complete: every part came (``error`` None), or the switch answered with an error message
    or the connection died (``error`` says which). ``on_done`` (if any) runs in the event
    thread with the parts when the last one came."""

    __slots__ = ("_cancel", "error", "event", "on_done", "parts")

    def __init__(self, on_done: Callable[[list[Any]], None] | None,
                 cancel: Callable[[], None]) -> None:
        self.event = threading.Event()
        self.parts: list[Any] = []
        self.error: str | None = None
        self.on_done = on_done
        self._cancel = cancel

    def wait(self, timeout: float | None = None) -> bool:
        return self.event.wait(timeout)

    def cancel(self) -> None:
        """Forget the request (after a timeout): late parts are dropped. No-op once done."""
        self._cancel()

    def _finish(self, error: str | None) -> None:
        self.error = error
        try:
            if error is None and self.on_done is not None:
                self.on_done(self.parts)
        finally:
            self.event.set()


class _Bundle:
    """FlowMods sent to one switch as one ONF bundle (atomic, ordered), kept until the
    barrier after it is answered: if the switch refuses the bundle (an error with an xid of
    it), :meth:`CpnApp._error` sends the FlowMods again one by one, as they were sent before
    bundles (each that fails then fails alone), and moves the barrier waiter behind them."""

    __slots__ = ("added", "barrier_xid", "retried", "xids")

    def __init__(self, xids: frozenset[int], added: list[bytes]) -> None:
        self.xids = xids
        """the xids of the bundle's messages: open, each FlowMod (its bundle-add's too), commit"""
        self.added = added
        """the bundle-add messages, in order"""
        self.barrier_xid: int | None = None
        self.retried = False

    @property
    def plain(self) -> list[bytes]:
        """The FlowMods the bundle carries, each as it is sent alone."""
        return [w[openflow.BUNDLE_ADD_HEADER_BYTES:] for w in self.added]

    def holds(self, xid: int) -> bool:
        return xid in self.xids


class CpnApp(app_manager.OSKenApp):  # type: ignore[misc]  # os-ken ships no types: Any
    """The CPN controller's os-ken app (OpenFlow 1.3)."""

    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        service = kwargs.pop("cpn_service", None)
        super().__init__(*args, **kwargs)
        if not isinstance(service, ControllerService):
            raise RuntimeError(f"{__name__} needs a ControllerService as the cpn_service "
                               "keyword; start it with cpn-controller (controller.main)")
        self.service = service
        self._send_lock = threading.Lock()
        self._waiters: dict[tuple[int, int], _BarrierWaiter] = {}
        """(id(datapath), xid) -> waiter"""
        self._replies: dict[tuple[int, int], _Reply] = {}
        """(id(datapath), xid) -> multipart reply being collected"""
        self._in_counts: dict[str, int] = {}
        """message type -> messages received so far (written by the event thread only)"""
        self._in_flushed: dict[str, int] = {}
        self._packet_ins: dict[int, int] = {}
        """dpid -> packet-ins so far (event thread only)"""
        self._packet_ins_flushed: dict[int, int] = {}
        self._removed: dict[int, tuple[Any, dict[FlowEntry, float]]] = {}
        """dpid -> (datapath, flows removed not yet handed to the core -> when the switch
        installed each, on ``time.monotonic()``)"""
        self._removed_lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._bundles: dict[int, list[_Bundle]] = {}
        """id(datapath) -> bundles whose barrier is not answered yet (under ``_send_lock``)"""
        self._refused: dict[int, str] = {}
        """id(datapath) -> the first FlowMod error since its last barrier reply (under
        ``_send_lock``): a switch answers in order, so that barrier's waiter is told"""
        self._bundle_ids = itertools.count(1)
        self._connections: dict[int, Any] = {}
        """id(datapath) -> datapath of every connection past the handshake (under
        ``_send_lock``), closed by :meth:`close_connections`"""

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Any:
        thread = super().start()
        self.service.start(self)
        self._ticker = threading.Thread(target=self._periodic, name="cpn-periodic",
                                        daemon=True)
        self._ticker.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        super().stop()

    def shutdown(self) -> None:
        """End every wait on a switch now (idempotent): barrier waits and live reads in
        flight fail with :data:`STOPPING`, later requests fail at once and nothing more is
        sent, the periodic thread ends and the service stops its threads (the Change being
        sent is given up). The connections stay up (a cluster member leaves the cluster
        first); :meth:`close_connections` ends them."""
        self._stop.set()
        with self._send_lock:
            doomed = list(self._waiters.values())
            lost = list(self._replies.values())
            self._waiters.clear()
            self._replies.clear()
            self._bundles.clear()
        for w in doomed:
            w.set()
        for r in lost:
            r._finish(STOPPING)
        self.service.stop()

    def close_connections(self) -> int:
        """Shut down the socket of every switch connection (os-ken's reader of each then
        ends); how many there were."""
        with self._send_lock:
            dps = list(self._connections.values())
        for dp in dps:
            try:
                dp.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already
        return len(dps)

    def _periodic(self) -> None:
        next_tick = next_probe = next_lldp = time.monotonic()
        while not self._stop.wait(FLOW_REMOVED_BATCH_S):
            try:
                self._flush_removed()
                self._flush_counts()
                now = time.monotonic()
                if now >= next_lldp:
                    next_lldp = now + PROBE_CHECK_S
                    # a switch's due probes in one write (see probes.py)
                    by_switch: dict[int, tuple[Any, list[Any]]] = {}
                    for dp, msg in self.service.lldp_due():
                        by_switch.setdefault(id(dp), (dp, []))[1].append(msg)
                    for dp, msgs in by_switch.values():
                        self.send(dp, msgs)
                if now >= next_tick:
                    next_tick = now + TICK_S
                    probes = now >= next_probe
                    if probes:
                        # echo requests (control-channel round trips for the link delays)
                        # as often as a settled link is probed
                        next_probe = now + self.service.probe_schedule.settled_interval_s
                    for dp, msg in self.service.periodic(probes):
                        self.send(dp, [msg])
                    if self.service.state_file:
                        self.service.write_state_file(self.service.state_file)
            except Exception:  # noqa: BLE001 - keep ticking whatever one round did
                self.logger.exception("periodic work failed", extra={"event": "periodic"})

    # -- metrics -------------------------------------------------------------------------------
    def _count_in(self, msg: Any) -> None:
        """Count one message received (event thread only)."""
        name = type(msg).__name__
        self._in_counts[name] = self._in_counts.get(name, 0) + 1

    def _flush_counts(self) -> None:
        """Add what the event thread counted since the last flush to the Prometheus counters.
        The dicts only grow and only the event thread writes them; ``dict.copy`` is atomic
        under the GIL, so nothing is lost or counted twice."""
        for name, total in self._in_counts.copy().items():
            delta = total - self._in_flushed.get(name, 0)
            if delta:
                count_openflow_message(name, "in", delta)
                self._in_flushed[name] = total
        for dpid, total in self._packet_ins.copy().items():
            delta = total - self._packet_ins_flushed.get(dpid, 0)
            if delta:
                # count_packet_in counts one at a time; a burst is one increment here
                PACKET_INS.labels(dpid=f"{dpid:#x}").inc(delta)
                self._packet_ins_flushed[dpid] = total

    # -- Transport -----------------------------------------------------------------------------
    def alive(self, handle: Any) -> bool:
        return bool(getattr(handle, "is_active", False))

    def send(self, handle: Any, msgs: Sequence[Any]) -> _BarrierWaiter | None:
        """Send ``msgs`` on datapath ``handle`` in order; a waiter for the last barrier.

        Consecutive FlowMods (at least :data:`BUNDLE_MIN`) in a list that ends with a barrier
        go out as one ONF bundle (open, add each, commit): Open vSwitch applies a bundle with
        one flow-table version change instead of one per FlowMod (2-3x less of its time
        for a change of thousands of flows) and all or nothing, so a switch never holds half
        of a phase. Meter and group mods stay outside (before the FlowMods that use them)."""
        if self._stop.is_set():
            return None  # stopping: nothing more leaves
        waiter = None
        dp = handle
        bufs: list[bytes] = []
        sent: dict[str, int] = {}
        bundle = len(msgs) > BUNDLE_MIN and isinstance(msgs[-1], ofp_parser.OFPBarrierRequest)
        # the FlowMods in a row, each already inside a bundle-add of bundle ``run_id``
        run: list[tuple[int, bytes]] = []
        run_id = 0
        new: list[_Bundle] = []
        flowmods = 0
        with self._send_lock:  # xids are shared with the event thread's packet-outs
            for msg in msgs:
                if bundle and msg.__class__ is openflow.EntryFlowMod and msg.xid is None:
                    # the common case, packed with its bundle-add in one call (a big change
                    # sends thousands)
                    if not run:
                        run_id = next(self._bundle_ids) & 0xFFFF_FFFF
                    xid = _next_xid(dp)
                    wire = msg.bundle_wire(xid, run_id)
                    if wire is not None:
                        msg.datapath = dp
                        run.append((xid, wire))
                        flowmods += 1
                        continue
                name = type(msg).__name__
                msg.datapath = dp
                xid = dp.set_xid(msg)
                msg.serialize()
                wire = bytes(msg.buf)
                if isinstance(msg, ofp_parser.OFPFlowMod):
                    sent["OFPFlowMod"] = sent.get("OFPFlowMod", 0) + 1
                    if bundle:
                        if not run:
                            run_id = next(self._bundle_ids) & 0xFFFF_FFFF
                        run.append((xid, openflow.bundle_add(run_id, wire, xid=xid)))
                        continue
                elif run:
                    self._bundle_run(dp, run_id, run, bufs, new, sent)
                    run = []
                sent[name] = sent.get(name, 0) + 1
                if isinstance(msg, ofp_parser.OFPBarrierRequest):
                    waiter = _BarrierWaiter()
                    self._waiters[(id(dp), xid)] = waiter
                    for b in new:
                        if b.barrier_xid is None:
                            b.barrier_xid = xid
                bufs.append(wire)
            if new:
                self._bundles.setdefault(id(dp), []).extend(new)
        if flowmods:
            sent["OFPFlowMod"] = sent.get("OFPFlowMod", 0) + flowmods
        # one write for the lot: os-ken's per-datapath send queue holds 16 items, and a
        # thread hand-off per FlowMod costs more than serialising it
        if bufs and not dp.send(b"".join(bufs)):
            if waiter is not None:
                self._fail_waiters(dp)
            return None
        for name, n in sent.items():
            count_openflow_message(name, "out", n)
        return waiter

    def _bundle_run(self, dp: Any, bundle_id: int, run: list[tuple[int, bytes]],
                    bufs: list[bytes], new: list[_Bundle], sent: dict[str, int]) -> None:
        """Append ``run`` ((xid, bundle-add of bundle ``bundle_id``) of FlowMods, in order)
        to ``bufs``: as one bundle when it is long enough, else the FlowMods as they are. Call
        with ``_send_lock`` held."""
        wires = [w for _, w in run]
        if len(run) < BUNDLE_MIN:
            bufs.extend(w[openflow.BUNDLE_ADD_HEADER_BYTES:] for w in wires)
            return
        open_xid = _next_xid(dp)
        bufs.append(openflow.bundle_control(bundle_id, ofp.ONF_BCT_OPEN_REQUEST, open_xid))
        bufs.extend(wires)
        commit_xid = _next_xid(dp)
        bufs.append(openflow.bundle_control(bundle_id, ofp.ONF_BCT_COMMIT_REQUEST, commit_xid))
        sent["ONFBundleCtrlMsg"] = sent.get("ONFBundleCtrlMsg", 0) + 2
        new.append(_Bundle(frozenset([open_xid, commit_xid, *(x for x, _ in run)]), wires))

    def request(self, handle: Any, msg: Any,
                on_done: Callable[[list[Any]], None] | None = None) -> _Reply | None:
        """Send the multipart request ``msg`` on datapath ``handle``; the returned reply
        collects every part (matched by xid). None when the connection is gone."""
        dp = handle
        msg.datapath = dp
        with self._send_lock:
            if self._stop.is_set():  # checked under the lock shutdown fails replies under
                reply = _Reply(None, lambda: None)
                reply._finish(STOPPING)
                return reply
            xid = dp.set_xid(msg)
            key = (id(dp), xid)
            reply = _Reply(on_done, lambda: self._drop_reply(key))
            self._replies[key] = reply
        msg.serialize()
        if not dp.send(bytes(msg.buf)):
            self._drop_reply(key)
            return None
        count_openflow_message(type(msg).__name__, "out")
        return reply

    def _drop_reply(self, key: tuple[int, int]) -> None:
        with self._send_lock:
            self._replies.pop(key, None)

    def _fail_waiters(self, dp: Any) -> None:
        with self._send_lock:
            keys = [k for k in self._waiters if k[0] == id(dp)]
            doomed = [self._waiters.pop(k) for k in keys]
            self._bundles.pop(id(dp), None)
            self._refused.pop(id(dp), None)
            rkeys = [k for k in self._replies if k[0] == id(dp)]
            lost = [self._replies.pop(k) for k in rkeys]
        for w in doomed:
            w.set()
        for r in lost:
            r._finish("the connection to the switch was lost")

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier_reply(self, ev: Any) -> None:
        self._count_in(ev.msg)
        dp = ev.msg.datapath
        with self._send_lock:
            waiter = self._waiters.pop((id(dp), ev.msg.xid), None)
            refused = self._refused.pop(id(dp), None)
            held = self._bundles.get(id(dp))
            if held:
                held[:] = [b for b in held if b.barrier_xid != ev.msg.xid]
        if waiter is not None:
            waiter.ok = refused is None
            waiter.error = refused
            waiter.set()

    # -- switches ------------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: Any) -> None:
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            with self._send_lock:
                self._connections[id(dp)] = dp
            # os-ken's handshake has read the port descriptions into dp.ports
            ports = {p.port_no: _live(p) for p in dp.ports.values() if p.port_no <= ofp.OFPP_MAX}
            if not self.service.switch_connected(dp.id, ports, dp):
                return
            self._read_and_reconcile(dp)
        elif ev.state == DEAD_DISPATCHER:
            with self._send_lock:
                self._connections.pop(id(dp), None)
            self._fail_waiters(dp)
            self.service.switch_lost(dp.id, dp)

    def _read_and_reconcile(self, dp: Any) -> None:
        """Read the switch's flow table; the service reconciles the plan against it."""
        dpid = dp.id

        def reconcile(parts: list[Any]) -> None:
            self.service.reconcile(dpid, [openflow.flowstats_to_entry(s) for s in parts], dp)

        self.request(dp, openflow.flow_stats_request(), on_done=reconcile)

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    def _role_reply(self, ev: Any) -> None:
        msg = ev.msg
        self._count_in(msg)
        dp = msg.datapath
        if dp.id is None:
            return
        if self.service.role_reply(dp.id, openflow.role_name(msg.role), msg.generation_id, dp):
            self._read_and_reconcile(dp)  # taken over: adopt what the previous master left

    @set_ev_cls([ofp_event.EventOFPFlowStatsReply, ofp_event.EventOFPPortStatsReply,
                 ofp_event.EventOFPPortDescStatsReply], MAIN_DISPATCHER)
    def _multipart_reply(self, ev: Any) -> None:
        msg = ev.msg
        self._count_in(msg)
        key = (id(msg.datapath), msg.xid)
        with self._send_lock:
            reply = self._replies.get(key)
            if reply is None:
                return  # not ours (os-ken's handshake) or given up on
            reply.parts.extend(msg.body)
            if msg.flags & ofp.OFPMPF_REPLY_MORE:
                return
            del self._replies[key]
        reply._finish(None)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        self._count_in(msg)
        dp = msg.datapath
        if msg.type == ofp.OFPET_ROLE_REQUEST_FAILED:
            request = openflow.role_request_of(msg.data)
            self.service.role_refused(dp.id, msg.code,
                                      request[1] if request is not None else None, dp)
            return
        # another controller masters the switch now: nothing of ours is written any more
        # (a refused bundle is not sent again one by one)
        not_master = msg.type == ofp.OFPET_BAD_REQUEST and msg.code == ofp.OFPBRC_IS_SLAVE
        with self._send_lock:
            reply = self._replies.pop((id(dp), msg.xid), None)
            bundle = next((b for b in self._bundles.get(id(dp), ()) if b.holds(msg.xid)), None)
            retry = bundle is not None and not bundle.retried and not not_master
            if not_master and bundle is not None:
                bundle.retried = True
            if retry:
                assert bundle is not None
                bundle.retried = True
                barrier = openflow.barrier_request()
                barrier.datapath = dp
                xid = dp.set_xid(barrier)
                barrier.serialize()
                waiter = self._waiters.pop((id(dp), bundle.barrier_xid), None) \
                    if bundle.barrier_xid is not None else None
                if waiter is not None:
                    self._waiters[(id(dp), xid)] = waiter
                bundle.barrier_xid = xid
        if reply is not None:
            reply._finish(f"the switch answered with OpenFlow error type {msg.type} "
                          f"code {msg.code}")
            return
        if not_master:
            self.service.not_master(dp.id, dp)
            return
        failed = msg.data[1] if msg.data and len(msg.data) > 1 else None
        if retry:
            assert bundle is not None
            self.logger.warning(
                f"switch {dp.id:#x} refused a bundle of {len(bundle.plain)} FlowMods (error "
                f"type {msg.type} code {msg.code}); sending them one by one",
                extra={"dpid": dp.id, "event": "bundle_failed"})
            dp.send(b"".join(bundle.plain) + bytes(barrier.buf))
            count_openflow_message("OFPFlowMod", "out", len(bundle.plain))
            count_openflow_message("OFPBarrierRequest", "out")
        elif failed == ofp.OFPT_FLOW_MOD:
            # refused alone (not in a bundle, or again after its bundle was refused): the
            # switch does not hold what the plan says, so the barrier after it does not
            # confirm the change; the sender treats the switch as stalled (its table is read
            # again and reconciled until the switch takes the FlowMod)
            reason = f"OpenFlow error type {msg.type} code {msg.code} to a FlowMod"
            with self._send_lock:
                self._refused.setdefault(id(dp), reason)
            self.logger.warning(f"switch {dp.id:#x} refused a FlowMod (xid {msg.xid}): "
                                f"{reason}", extra={"dpid": dp.id, "event": "flowmod_refused"})
        elif failed not in (ofp.OFPT_METER_MOD, ofp.OFPT_GROUP_MOD):
            # meter and group mods are sent as ADD then MODIFY to a switch whose table is
            # unknown: one of the two fails by design
            self.logger.warning(f"switch {dp.id:#x} answered xid {msg.xid} with OpenFlow "
                                f"error type {msg.type} code {msg.code}",
                                extra={"dpid": dp.id, "event": "openflow_error"})

    @set_ev_cls(ofp_event.EventOFPEchoReply, MAIN_DISPATCHER)
    def _echo_reply(self, ev: Any) -> None:
        self._count_in(ev.msg)
        if ev.msg.datapath.id is not None:
            self.service.echo_reply(ev.msg.datapath.id, bytes(ev.msg.data or b""))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev: Any) -> None:
        msg = ev.msg
        self._count_in(msg)
        port = msg.desc
        if port.port_no > ofp.OFPP_MAX:
            return
        up = msg.reason != ofp.OFPPR_DELETE and _live(port)
        self.service.port_status(msg.datapath.id, port.port_no, up, msg.datapath)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev: Any) -> None:
        msg = ev.msg
        self._count_in(msg)
        dp = msg.datapath
        entry = openflow.flowremoved_to_entry(msg)
        # when the switch installed it, on our clock: a delete of ours that comes back after a
        # later change added the flow again is told from a removal behind our back by it
        installed_at = time.monotonic() - msg.duration_sec - msg.duration_nsec / 1e9
        with self._removed_lock:
            held = self._removed.get(dp.id)
            if held is None or held[0] is not dp:
                held = self._removed[dp.id] = (dp, {})
            # the same flow removed twice in a batch: the later install counts (believed)
            held[1][entry] = max(installed_at, held[1].get(entry, installed_at))

    def _flush_removed(self) -> None:
        with self._removed_lock:
            batch, self._removed = self._removed, {}
        for dpid, (dp, flows) in batch.items():
            self.service.flows_removed(dpid, list(flows), dp, flows)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: Any) -> None:
        msg = ev.msg
        self._count_in(msg)
        dpid = msg.datapath.id
        self._packet_ins[dpid] = self._packet_ins.get(dpid, 0) + 1
        # a malformed message may lack in_port or data: the core counts it, nothing raises
        for dp, out in self.service.packet_in(msg.datapath.id, msg.match.get("in_port"),
                                              bytes(msg.data or b"")):
            self.send(dp, [out])


def _live(port: Any) -> bool:
    return not (port.state & ofp.OFPPS_LINK_DOWN) and not (port.config & ofp.OFPPC_PORT_DOWN)
