"""OpenFlow roles of a cluster member, on the wire: the os-ken app and the service with fake
datapaths (no switches). A member writes to a switch only while the switch has confirmed it as
master on the current connection; it still reads, learns and plans for the others; on
takeover it reconciles against the same plan (nothing sent for a complete switch). The
switches' answers (role replies, stale generations, writes refused as not master) are fed in
as Open vSwitch sends them."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from os_ken.controller.handler import MAIN_DISPATCHER
from os_ken.lib.packet import arp, ethernet, packet
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from test_app_fake_datapath import _Ev, _FakeDatapath
from waiting import wait_until

from controller.errors import BadRequest, NotFound
from controller.network import openflow
from controller.network.app import CpnApp
from controller.network.counters import PROCESS_REGISTRY
from controller.network.flows import FlowEntry
from controller.network.service import ControllerService
from controller.network.views import RoleEvent
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import IntentSpec, Match

DIAMOND = topology_file("diamond")
DPIDS = (1, 2, 3, 4)
WRITES = frozenset({ofp.OFPT_FLOW_MOD, ofp.OFPT_PACKET_OUT, ofp.OFPT_GROUP_MOD,
                    ofp.OFPT_METER_MOD, ofp.OFPT_EXPERIMENTER})
"""message types that change a switch (bundle controls are experimenter messages)"""
CROSSING = IntentSpec("h1", "h2", max_latency_ms=50.0, match=Match(ip_proto=6, dst_port=80))
"""h1 hangs off s1 and h2 off s4: every path crosses both"""


# --- the wire ----------------------------------------------------------------------------------

def _split(buf: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, xid, message) of each OpenFlow message in ``buf``; a bundle-add yields the
    message it carries, so a FlowMod is seen whether it was bundled or not."""
    i = 0
    while i < len(buf):
        _, typ, length, xid = struct.unpack_from("!BBHI", buf, i)
        msg = buf[i:i + length]
        i += length
        if typ == ofp.OFPT_EXPERIMENTER and \
                struct.unpack_from("!I", msg, 12)[0] == ofp.ONF_ET_BUNDLE_ADD_MESSAGE:
            yield from _split(msg[24:])
        else:
            yield typ, xid, msg


def wire(dp: _FakeDatapath, since: int = 0) -> list[tuple[int, int, bytes]]:
    """Every message sent to ``dp``, from the ``since``-th on."""
    return [m for buf in dp.sent for m in _split(buf)][since:]


def writes(dp: _FakeDatapath, since: int = 0) -> list[tuple[int, int, bytes]]:
    return [m for m in wire(dp, since) if m[0] in WRITES]


def flowmods(dp: _FakeDatapath, since: int = 0) -> list[bytes]:
    return [m for t, _, m in wire(dp, since) if t == ofp.OFPT_FLOW_MOD]


def role_requests(dp: _FakeDatapath, since: int = 0) -> list[tuple[str, int] | None]:
    return [openflow.role_request_of(m) for t, _, m in wire(dp, since)
            if t == ofp.OFPT_ROLE_REQUEST]


def types(dp: _FakeDatapath, since: int = 0) -> list[int]:
    return [t for t, _, _ in wire(dp, since)]


def without_xid(msg: bytes) -> bytes:
    return msg[:4] + msg[8:]


def as_stats(e: FlowEntry) -> Any:
    """The flow-stats entry a switch holding ``e`` reports."""
    fm = openflow.flowmod_add(e)
    stat = parser.OFPFlowStats(table_id=e.table_id, duration_sec=1, duration_nsec=0,
                               priority=e.priority, idle_timeout=0, hard_timeout=0, flags=0,
                               cookie=e.cookie, packet_count=0, byte_count=0,
                               match=fm.match, instructions=fm.instructions)
    assert openflow.flowstats_to_entry(stat) == e  # the fake switch reports it faithfully
    return stat


# --- a member and its switches -------------------------------------------------------------------

class Member:
    """A service and its os-ken app with fake datapaths that answer barriers at once
    (except for the dpids in ``hold``), and whatever else the test feeds in."""

    def __init__(self, roles: bool) -> None:
        self.service = ControllerService(load_topology(DIAMOND), roles=roles,
                                         startup_grace_s=0, port_stats_interval_s=0,
                                         gc_reclaim_interval_s=0, barrier_timeout_s=5.0)
        self.app = CpnApp(cpn_service=self.service)
        self.service.start(self.app)
        self.events: list[RoleEvent] = []
        self.service.role_listeners.append(self.events.append)
        self.dps: dict[int, _FakeDatapath] = {}
        self.hold: set[int] = set()
        self.held: list[tuple[_FakeDatapath, int]] = []
        self._answered: set[tuple[int, int]] = set()

    def _barriers(self, dp: _FakeDatapath, buf: bytes) -> None:
        for typ, xid, _ in _split(buf):
            if typ == ofp.OFPT_BARRIER_REQUEST:
                if dp.id in self.hold:
                    self.held.append((dp, xid))
                else:
                    self.barrier_reply(dp, xid)

    def barrier_reply(self, dp: _FakeDatapath, xid: int) -> None:
        msg = parser.OFPBarrierReply(dp)
        msg.datapath, msg.xid = dp, xid
        self.app._barrier_reply(_Ev(msg))

    def release(self) -> None:
        self.hold.clear()
        held, self.held = self.held, []
        for dp, xid in held:
            self.barrier_reply(dp, xid)

    def connect(self, dpid: int, flows: Sequence[FlowEntry] | None = ()) -> _FakeDatapath:
        """Connect a (new) datapath for ``dpid``; answer its flow-stats read with ``flows``
        (None: leave it unanswered)."""
        dp = _FakeDatapath(dpid, self.service.wiring.ports_of(dpid))
        dp.on_send = lambda buf: self._barriers(dp, buf)
        self.dps[dpid] = dp
        self.app._state_change(SimpleNamespace(datapath=dp, state=MAIN_DISPATCHER))
        if flows is not None:
            self.answer_flow_stats(dp, flows)
        return dp

    def unanswered_reads(self, dp: _FakeDatapath) -> list[int]:
        return [xid for t, xid, m in wire(dp) if t == ofp.OFPT_MULTIPART_REQUEST
                and struct.unpack_from("!H", m, 8)[0] == ofp.OFPMP_FLOW
                and (id(dp), xid) not in self._answered]

    def answer_flow_stats(self, dp: _FakeDatapath, flows: Sequence[FlowEntry]) -> None:
        (xid,) = self.unanswered_reads(dp)
        self._answered.add((id(dp), xid))
        msg = parser.OFPFlowStatsReply(dp, flags=0, body=[as_stats(e) for e in flows])
        msg.datapath, msg.xid = dp, xid
        self.app._multipart_reply(_Ev(msg))

    def role_reply(self, dp: _FakeDatapath, role: str, generation_id: int) -> None:
        msg = parser.OFPRoleReply(dp, role=openflow.ROLES[role], generation_id=generation_id)
        msg.datapath, msg.xid = dp, 1
        self.app._role_reply(_Ev(msg))

    def error(self, dp: _FakeDatapath, type_: int, code: int, data: bytes,
              xid: int = 1) -> None:
        msg = parser.OFPErrorMsg(dp, type_=type_, code=code, data=data)
        msg.datapath, msg.xid = dp, xid
        self.app._error(_Ev(msg))

    def plan(self, dpid: int) -> list[FlowEntry]:
        return self.service.plan_flows(dpid)[1]

    def master(self, dpid: int, generation_id: int) -> _FakeDatapath:
        """Take switch ``dpid`` over: want it, the switch confirms, it is read (holding the
        plan) and reconciled."""
        dp = self.dps[dpid]
        self.service.want_role(dpid, True, generation_id)
        self.role_reply(dp, "master", generation_id)
        assert self.service.may_write(dpid)
        self.answer_flow_stats(dp, self.plan(dpid))
        self.idle()
        return dp

    def idle(self) -> None:
        assert self.service.wait_idle(5.0), "the sender did not finish"


@pytest.fixture
def member() -> Iterator[Member]:
    m = Member(roles=True)
    yield m
    m.service.stop()


@pytest.fixture
def standalone() -> Iterator[Member]:
    m = Member(roles=False)
    yield m
    m.service.stop()


def _connect_all(m: Member) -> None:
    for dpid in DPIDS:
        m.connect(dpid)
    m.idle()


def _arp_request(src_mac: str, src_ip: str, dst_ip: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=src_mac, ethertype=0x0806))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=src_mac, src_ip=src_ip,
                             dst_mac="00:00:00:00:00:00", dst_ip=dst_ip))
    pkt.serialize()
    return bytes(pkt.data)


def _counted(msg_type: str, direction: str) -> float:
    value = PROCESS_REGISTRY.get_sample_value("cpn_openflow_messages_total",
                                              {"type": msg_type, "direction": direction})
    return value or 0.0


# --- the message builders ------------------------------------------------------------------------

def test_role_request_and_set_async_bytes() -> None:
    dp = _FakeDatapath()
    msg = openflow.role_request("master", 6)
    msg.datapath = dp
    dp.set_xid(msg)
    msg.serialize()
    buf = bytes(msg.buf)
    assert struct.unpack("!BBHI", buf[:8])[:3] == (ofp.OFP_VERSION, ofp.OFPT_ROLE_REQUEST, 24)
    assert struct.unpack("!I4xQ", buf[8:]) == (ofp.OFPCR_ROLE_MASTER, 6)
    assert openflow.role_request_of(buf) == ("master", 6)
    assert openflow.role_request_of(buf[:20]) is None  # truncated
    assert openflow.role_name(ofp.OFPCR_ROLE_SLAVE) == "slave"
    assert openflow.role_name(99) == "unknown"
    assert "STALE" in openflow.role_error_text(ofp.OFPRRFC_STALE)
    with pytest.raises(ValueError):
        openflow.role_request("boss", 1)
    with pytest.raises(ValueError):
        openflow.role_request("slave", 1 << 64)


# --- standalone: as before -----------------------------------------------------------------------

def test_standalone_sends_no_role_request_and_writes_every_connected_switch(
        standalone: Member) -> None:
    m = standalone
    _connect_all(m)
    for dpid in DPIDS:
        dp = m.dps[dpid]
        assert ofp.OFPT_ROLE_REQUEST not in types(dp)
        assert ofp.OFPT_SET_ASYNC not in types(dp)
        assert flowmods(dp), f"s{dpid} holds the plan's flows"
        assert m.service.may_write(dpid)
    view = m.service.roles()[1]
    assert (view.wanted, view.role, view.writable) == (None, "unknown", True)
    before = len(wire(m.dps[1]))
    assert m.service.send_packet(1, openflow.packet_out(1, b"\x00" * 60))
    assert types(m.dps[1], before) == [ofp.OFPT_PACKET_OUT]
    assert m.service.add_intent(CROSSING).state == "installed"
    assert flowmods(m.dps[1], before)


# --- a member: what a standby does and does not do ----------------------------------------------

def test_member_configures_async_first_and_writes_nothing_it_does_not_master(
        member: Member) -> None:
    m = member
    _connect_all(m)
    for dpid in DPIDS:
        dp = m.dps[dpid]
        # async configuration first, then the flow-table read; no role request (none wanted)
        assert types(dp)[:2] == [ofp.OFPT_SET_ASYNC, ofp.OFPT_MULTIPART_REQUEST]
        (set_async,) = [msg for t, _, msg in wire(dp) if t == ofp.OFPT_SET_ASYNC]
        pin = 1 << ofp.OFPR_NO_MATCH | 1 << ofp.OFPR_ACTION
        status = 1 << ofp.OFPPR_ADD | 1 << ofp.OFPPR_DELETE | 1 << ofp.OFPPR_MODIFY
        removed = (1 << ofp.OFPRR_IDLE_TIMEOUT | 1 << ofp.OFPRR_HARD_TIMEOUT
                   | 1 << ofp.OFPRR_DELETE | 1 << ofp.OFPRR_GROUP_DELETE)
        # (master or equal, slave) per kind: a slave still gets packet-ins and port status
        assert struct.unpack("!6I", set_async[8:]) == (pin, pin, status, status, removed, 0)
        assert role_requests(dp) == []
        assert not m.service.may_write(dpid)
    # the plan was computed for every switch (flows for all four) and became the view
    assert all(m.plan(d) for d in DPIDS)
    assert all(v.synced for v in m.service.switch_views())
    # an intent across s1 and s4: changes computed, confirmed from the plan, nothing sent
    intent = m.service.add_intent(CROSSING)
    assert intent.state == "installed"
    assert any(r.messages for r in m.service.change_records())
    for dpid in DPIDS:
        assert writes(m.dps[dpid]) == [], f"s{dpid} was written by a standby"
    # no packet-outs: neither probes nor packets nor proxy-ARP answers
    out = m.service.periodic(probes=True) + m.service.lldp_due()
    assert out and all(isinstance(msg, parser.OFPEchoRequest) for _, msg in out)
    assert not m.service.send_packet(1, openflow.packet_out(1, b"\x00" * 60))
    seen: list[int] = []
    m.service.packet_listeners.append(lambda dpid, port, data: seen.append(dpid))
    h1_port = m.service.wiring.host_port["h1"][1]
    ask = _arp_request("02:00:0a:00:00:01", "10.0.0.1", "10.0.0.2")
    assert m.service.packet_in(1, h1_port, ask) == []
    assert seen == []  # steering acts on the master only
    m.idle()
    for dpid in DPIDS:
        assert writes(m.dps[dpid]) == []
    view = m.service.roles()[1]
    assert (view.wanted, view.role, view.writable, view.generation_id) == (
        None, "unknown", False, None)


def test_writable_only_after_a_master_reply_for_the_current_connection(member: Member) -> None:
    m = member
    _connect_all(m)
    dp = m.dps[1]
    with pytest.raises(NotFound):
        m.service.want_role(0x99, True, 1)
    with pytest.raises(BadRequest):
        m.service.want_role(1, True, -1)

    mark = len(wire(dp))
    m.service.want_role(1, True, 5)
    assert role_requests(dp, mark) == [("master", 5)]
    assert not m.service.may_write(1)
    assert m.service.roles()[1].wanted == "master"
    # an answer to an older request (generation 4) does not count
    m.role_reply(dp, "master", 4)
    assert not m.service.may_write(1)
    # the switch reconnects: the wanted role is asked again on the new connection
    new = m.connect(1, flows=None)
    assert types(new)[:3] == [ofp.OFPT_SET_ASYNC, ofp.OFPT_ROLE_REQUEST,
                              ofp.OFPT_MULTIPART_REQUEST]
    assert role_requests(new) == [("master", 5)]
    m.answer_flow_stats(new, m.plan(1))
    m.idle()
    # a reply on the old connection does not make the new one writable
    m.role_reply(dp, "master", 5)
    assert not m.service.may_write(1)
    # demoted before the answer came: the late MASTER reply does not count either
    m.service.want_role(1, False, 6)
    assert role_requests(new)[-1] == ("slave", 6)
    m.role_reply(new, "master", 5)
    assert not m.service.may_write(1)
    m.role_reply(new, "slave", 6)
    assert m.service.roles()[1].role == "slave" and not m.service.may_write(1)
    assert writes(new) == []

    m.events.clear()
    m.service.want_role(1, True, 7)
    assert role_requests(new)[-1] == ("master", 7)
    reads = len(m.unanswered_reads(new))
    m.role_reply(new, "master", 7)
    assert m.service.may_write(1)
    (event,) = m.events
    assert (event.dpid, event.role, event.generation_id, event.error) == (1, "master", 7, None)
    assert event.requested_at is not None and event.answered_at >= event.requested_at
    view = m.service.roles()[1]
    assert (view.wanted, view.role, view.generation_id, view.writable, view.error) == (
        "master", "master", 7, True, None)
    assert view.since is not None
    # taken over: the flow table is read again, to reconcile against the plan
    assert len(m.unanswered_reads(new)) == reads + 1
    # asking again for what is in effect sends nothing
    mark = len(wire(new))
    m.service.want_role(1, True, 7)
    assert wire(new, mark) == []


def test_takeover_of_a_switch_holding_the_plan_sends_no_flowmod(member: Member) -> None:
    m = member
    _connect_all(m)
    m.service.add_intent(CROSSING)
    dp = m.dps[1]
    mark = len(wire(dp))
    m.service.want_role(1, True, 3)
    m.role_reply(dp, "master", 3)
    m.answer_flow_stats(dp, m.plan(1))  # what the previous master installed
    m.idle()
    assert flowmods(dp, mark) == []
    assert writes(dp, mark) == []
    # and from now on the member writes it: a new intent's flows reach s1 (not s2..s4)
    marks = {d: len(wire(m.dps[d])) for d in DPIDS}
    spec = IntentSpec("h1", "h2", max_latency_ms=50.0, match=Match(ip_proto=17, dst_port=53))
    assert m.service.add_intent(spec).state == "installed"
    assert flowmods(dp, marks[1])
    assert all(writes(m.dps[d], marks[d]) == [] for d in (2, 3, 4))


def test_takeover_of_a_switch_missing_one_flow_sends_exactly_that_flow(
        member: Member) -> None:
    m = member
    _connect_all(m)
    dp = m.dps[4]
    plan = m.plan(4)
    missing = plan[len(plan) // 2]
    mark = len(wire(dp))
    m.service.want_role(4, True, 9)
    m.role_reply(dp, "master", 9)
    m.answer_flow_stats(dp, [e for e in plan if e != missing])
    m.idle()
    (sent,) = writes(dp, mark)
    expected = openflow.flowmod_add(missing)
    expected.datapath = dp
    dp.set_xid(expected)
    expected.serialize()
    assert sent[0] == ofp.OFPT_FLOW_MOD
    assert without_xid(sent[2]) == without_xid(bytes(expected.buf))


def test_a_wanted_master_is_asked_on_connect_and_the_first_read_reconciles(
        member: Member) -> None:
    """The role is known before the switch connects: async configuration, role request,
    read, in that order; the reply comes before the read's answer, so that one read
    reconciles (no second read) and sends what the switch lacks."""
    m = member
    m.service.want_role(2, True, 11)
    dp = m.connect(2, flows=None)
    assert types(dp) == [ofp.OFPT_SET_ASYNC, ofp.OFPT_ROLE_REQUEST,
                         ofp.OFPT_MULTIPART_REQUEST]
    assert role_requests(dp) == [("master", 11)]
    m.role_reply(dp, "master", 11)
    assert m.service.may_write(2)
    assert len(m.unanswered_reads(dp)) == 1  # the read on its way does it
    m.answer_flow_stats(dp, [])
    m.idle()
    sent = {without_xid(msg) for msg in flowmods(dp)}
    assert len(sent) == len(m.plan(2)) > 0


def test_a_queued_change_does_not_reach_a_switch_demoted_meanwhile(member: Member) -> None:
    m = member
    _connect_all(m)
    for dpid in DPIDS:
        m.master(dpid, 20 + dpid)
    # the sender is stuck in a change: s1 does not answer its barrier yet; and s4 does not
    # answer another change entering there
    m.hold.add(1)
    first = m.service.add_intent(CROSSING, timeout_s=0.05)
    wait_until(lambda: m.held, 5.0, "the change waiting for s1's barrier", poll_s=0.01)
    m.hold.add(4)
    blocker = m.service.add_intent(
        IntentSpec("h2", "h1", max_latency_ms=50.0, match=Match(ip_proto=17, dst_port=53)),
        timeout_s=0.05)
    wait_until(lambda: len(m.held) == 2, 5.0, "the change waiting for s4's barrier",
               poll_s=0.01)
    # queued behind them on those switches: an intent entering at s4 (h2's switch), then one
    # entering at s1
    second = m.service.add_intent(
        IntentSpec("h2", "h1", max_latency_ms=50.0, match=Match(ip_proto=6, dst_port=443)),
        timeout_s=0.05)
    third = m.service.add_intent(
        IntentSpec("h1", "h2", max_latency_ms=50.0, match=Match(ip_proto=6, dst_port=22)),
        timeout_s=0.05)
    assert first.state == blocker.state == second.state == third.state == "pending"
    dp4, dp1 = m.dps[4], m.dps[1]
    mark4 = len(wire(dp4))
    m.service.want_role(4, False, 30)  # writes stop before it returns
    assert not m.service.may_write(4)
    assert role_requests(dp4, mark4) == [("slave", 30)]
    mark4, mark1 = len(wire(dp4)), len(wire(dp1))
    m.release()
    wait_until(lambda: m.service.intent(third.id).state == "installed", 5.0,
               "the queued intents confirmed")
    m.idle()
    assert m.service.intent(second.id).state == "installed"  # from the plan
    assert wire(dp4, mark4) == []
    assert flowmods(dp1, mark1)  # while s1, still mastered here, got its flows


def test_a_stale_role_request_is_refused(member: Member) -> None:
    m = member
    _connect_all(m)
    dp = m.master(1, 5)
    m.events.clear()
    m.service.want_role(1, True, 6)
    (request,) = [msg for t, _, msg in wire(dp) if t == ofp.OFPT_ROLE_REQUEST][-1:]
    # another member holds generation 7: Open vSwitch answers type 11 code 0, with the
    # refused request in the data
    m.error(dp, ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE, request)
    assert not m.service.may_write(1)
    (event,) = m.events
    assert (event.role, event.generation_id) == ("refused", 6)
    assert event.error is not None and "STALE" in event.error
    view = m.service.roles()[1]
    assert view.error == event.error and not view.writable
    mark = len(wire(dp))
    m.service.add_intent(CROSSING)
    assert writes(dp, mark) == []


def test_a_write_refused_as_not_master_stops_writes(member: Member) -> None:
    m = member
    _connect_all(m)
    dp = m.master(1, 5)
    m.events.clear()
    # a bundle on its way when another member took the switch (generation 6)
    mods = [openflow.flowmod_add(FlowEntry(1, 10, (("eth_type", 0x0800),
                                                   ("ipv4_dst", f"10.9.0.{n}")),
                                           (("output", 1),), 7)) for n in (1, 2, 3)]
    m.hold.add(1)
    m.app.send(dp, [*mods, openflow.barrier_request()])
    mark = len(dp.sent)
    raw = []  # (type, xid) of the bundle as sent: open, three adds, commit, barrier
    at = 0
    while at < len(dp.sent[-1]):
        _, typ, length, xid = struct.unpack_from("!BBHI", dp.sent[-1], at)
        raw.append((typ, xid))
        at += length
    assert [t for t, _ in raw] == [ofp.OFPT_EXPERIMENTER] * 5 + [ofp.OFPT_BARRIER_REQUEST]
    open_xid, add_xid, commit_xid = raw[0][1], raw[1][1], raw[4][1]
    m.error(dp, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, b"", xid=open_xid)
    assert len(dp.sent) == mark  # not sent again one by one: the switch is not ours
    assert not m.service.may_write(1)
    (event,) = m.events
    assert (event.dpid, event.role, event.generation_id) == (1, "not_master", 5)
    assert event.error is not None and "IS_SLAVE" in event.error
    assert m.service.roles()[1].role == "slave"
    m.error(dp, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, b"", xid=add_xid)
    assert len(m.events) == 1  # the rest of the burst is the same news
    # the commit of a bundle that was never opened fails too: still nothing sent again
    m.error(dp, ofp.OFPET_EXPERIMENTER, 0, b"", xid=commit_xid)
    assert len(dp.sent) == mark
    m.release()
    before = len(wire(dp))
    m.service.add_intent(CROSSING)
    assert writes(dp, before) == []


def test_demote_all(member: Member) -> None:
    m = member
    _connect_all(m)
    m.master(1, 5)
    m.master(2, 6)
    m.service.want_role(3, False, 4)
    marks = {d: len(wire(m.dps[d])) for d in DPIDS}
    m.service.demote_all()
    assert not any(m.service.may_write(d) for d in DPIDS)
    # SLAVE with the last generation known per switch; s4 never had one
    assert [role_requests(m.dps[d], marks[d]) for d in DPIDS] == [
        [("slave", 5)], [("slave", 6)], [("slave", 4)], []]
    views = m.service.roles()
    assert [views[d].wanted for d in DPIDS] == ["slave"] * 4
    marks = {d: len(wire(m.dps[d])) for d in DPIDS}
    assert m.service.add_intent(CROSSING).state == "installed"
    assert all(writes(m.dps[d], marks[d]) == [] for d in DPIDS)


def test_the_master_answers_packets_and_probes_links(member: Member) -> None:
    m = member
    _connect_all(m)
    m.master(1, 5)
    seen: list[int] = []
    m.service.packet_listeners.append(lambda dpid, port, data: seen.append(dpid))
    h1_port = m.service.wiring.host_port["h1"][1]
    ask = _arp_request("02:00:0a:00:00:01", "10.0.0.1", "10.0.0.2")
    (answer,) = m.service.packet_in(1, h1_port, ask)  # proxy ARP from the master
    assert answer[0] is m.dps[1] and isinstance(answer[1], parser.OFPPacketOut)
    assert seen == [1]
    h2_port = m.service.wiring.host_port["h2"][1]
    back = _arp_request("02:00:0a:00:00:02", "10.0.0.2", "10.0.0.1")
    assert m.service.packet_in(4, h2_port, back) == []  # s4 is not mastered here
    assert seen == [1]
    probes = [(h, msg) for h, msg in m.service.lldp_due()
              if isinstance(msg, parser.OFPPacketOut)]
    assert probes and all(h is m.dps[1] for h, _ in probes)


def test_role_messages_are_counted(member: Member) -> None:
    m = member
    before = {k: _counted(*k) for k in [("OFPRoleRequest", "out"), ("OFPSetAsync", "out"),
                                        ("OFPRoleReply", "in"), ("OFPErrorMsg", "in")]}
    dp = m.connect(1)
    m.service.want_role(1, True, 2)
    m.role_reply(dp, "master", 2)
    m.error(dp, ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE, b"")
    m.app._flush_counts()  # the periodic thread's job
    after = {k: _counted(*k) for k in before}
    assert {k: after[k] - before[k] for k in before} == {
        ("OFPRoleRequest", "out"): 1, ("OFPSetAsync", "out"): 1,
        ("OFPRoleReply", "in"): 1, ("OFPErrorMsg", "in"): 1}
