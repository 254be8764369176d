"""The os-ken app and the service's live reads with a fake datapath and transport (no
switches, no root): the app collects every part of a multipart reply by xid, sends FlowMods
as one bundle and falls back when a switch refuses bundles; a live read waits bounded and
names the failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from controller.errors import NotFound
from controller.network.service import ControllerService, SwitchUnavailable
from controller.topology.files import topology_file
from controller.topology.loader import load_topology

DIAMOND = topology_file("diamond")


def _flow_stats(cookie: int, table_id: int = 0) -> Any:
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    return parser.OFPFlowStats(table_id=table_id, duration_sec=3, duration_nsec=500_000_000,
                               priority=10, idle_timeout=0, hard_timeout=0, flags=0,
                               cookie=cookie, packet_count=7, byte_count=700,
                               match=parser.OFPMatch(eth_type=0x0806), instructions=[])


class _FakeDatapath:
    """What CpnApp needs of an os-ken Datapath (sending, xids, the ports of the handshake);
    records what was sent. ``on_send`` (if set) sees each buffer after it is recorded, in
    the sending thread (a test answers barriers there)."""

    def __init__(self, dpid: int = 1, ports: Iterable[int] = ()) -> None:
        from os_ken.ofproto import ofproto_v1_3 as ofp
        from os_ken.ofproto import ofproto_v1_3_parser as parser

        self.ofproto, self.ofproto_parser = ofp, parser
        self.id = dpid
        self.is_active = True
        self.xid = 100
        self.sent: list[bytes] = []
        self.ports = {p: parser.OFPPort(port_no=p, hw_addr="02:00:00:00:00:01",
                                        name=f"p{p}".encode(), config=0, state=0, curr=0,
                                        advertised=0, supported=0, peer=0, curr_speed=0,
                                        max_speed=0) for p in ports}
        self.on_send: Callable[[bytes], None] | None = None

    def set_xid(self, msg: Any) -> int:
        self.xid += 1
        msg.set_xid(self.xid)
        return self.xid

    def send(self, buf: bytes) -> bool:
        self.sent.append(buf)
        if self.on_send is not None:
            self.on_send(buf)
        return self.is_active


@dataclass
class _Ev:
    msg: Any


def test_app_collects_every_part_of_a_multipart_reply_by_xid() -> None:
    from os_ken.ofproto import ofproto_v1_3 as ofp
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    from controller.network import openflow
    from controller.network.app import CpnApp

    service = ControllerService(load_topology(DIAMOND))
    app = CpnApp(cpn_service=service)
    dp = _FakeDatapath()
    done: list[list[Any]] = []
    reply = app.request(dp, openflow.flow_stats_request(), on_done=done.append)
    other = app.request(dp, openflow.flow_stats_request())
    assert reply is not None and other is not None and len(dp.sent) == 2
    xid = int.from_bytes(dp.sent[0][4:8], "big")

    def part(xid_: int, more: bool, cookies: list[int]) -> _Ev:
        msg = parser.OFPFlowStatsReply(dp, flags=ofp.OFPMPF_REPLY_MORE if more else 0,
                                       body=[_flow_stats(c) for c in cookies])
        msg.datapath, msg.xid = dp, xid_
        return _Ev(msg)

    app._multipart_reply(part(xid, True, [1, 2]))
    app._multipart_reply(part(9999, False, [66]))  # nobody asked: ignored
    assert not reply.wait(0) and not done
    app._multipart_reply(part(xid, False, [3]))
    assert reply.wait(0) and reply.error is None
    assert [s.cookie for s in reply.parts] == [1, 2, 3] and done == [reply.parts]
    assert not other.wait(0)
    app._fail_waiters(dp)  # the connection died: the other request fails at once
    assert other.wait(0) and other.error is not None and "lost" in other.error
    # in-counts are flushed to the Prometheus counters by the periodic thread
    assert app._in_counts == {"OFPFlowStatsReply": 3}


def test_app_sends_flowmods_as_one_bundle_and_falls_back_when_refused() -> None:
    """A list of FlowMods ending with a barrier goes out as open, one bundle-add per FlowMod
    (carrying exactly its bytes), commit, barrier. When the switch refuses the bundle, the
    FlowMods are sent again one by one with a new barrier, and the waiter completes only on
    that barrier's reply. One FlowMod alone is not bundled."""
    import struct

    from os_ken.ofproto import ofproto_v1_3 as ofp
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    from controller.network import openflow
    from controller.network.app import CpnApp
    from controller.network.flows import FlowEntry

    def entry(n: int) -> FlowEntry:
        return FlowEntry(1, 10, (("eth_type", 0x0800), ("ipv4_dst", f"10.0.0.{n}")),
                         (("output", n),), n)

    def split(buf: bytes) -> list[tuple[int, int, bytes]]:
        """(type, xid, whole message) of each OpenFlow message in ``buf``."""
        out, i = [], 0
        while i < len(buf):
            _, typ, length, xid = struct.unpack_from("!BBHI", buf, i)
            out.append((typ, xid, buf[i:i + length]))
            i += length
        return out

    service = ControllerService(load_topology(DIAMOND))
    app = CpnApp(cpn_service=service)
    dp = _FakeDatapath()
    mods = [openflow.flowmod_add(entry(n)) for n in (1, 2, 3)]
    waiter = app.send(dp, [*mods, openflow.barrier_request()])
    assert waiter is not None and len(dp.sent) == 1
    msgs = split(dp.sent[0])
    assert [t for t, _, _ in msgs] == [ofp.OFPT_EXPERIMENTER] * 5 + [ofp.OFPT_BARRIER_REQUEST]
    (bundle_id,) = struct.unpack_from("!I", msgs[0][2], 16)
    assert struct.unpack_from("!IHH", msgs[0][2], 16) == (bundle_id, ofp.ONF_BCT_OPEN_REQUEST,
                                                         openflow.BUNDLE_FLAGS)
    assert struct.unpack_from("!IHH", msgs[4][2], 16) == (
        bundle_id, ofp.ONF_BCT_COMMIT_REQUEST, openflow.BUNDLE_FLAGS)
    inner = [m[24:] for _, _, m in msgs[1:4]]
    assert inner == [bytes(m.buf) for m in mods]  # each FlowMod's own bytes, in order
    barrier_xid = msgs[5][1]

    # the switch refuses the second FlowMod, so the whole bundle
    err = parser.OFPErrorMsg(dp, type_=ofp.OFPET_BAD_ACTION, code=ofp.OFPBAC_BAD_OUT_PORT,
                             data=inner[1][:64])
    err.datapath, err.xid = dp, msgs[2][1]
    app._error(_Ev(err))
    assert len(dp.sent) == 2
    again = split(dp.sent[1])
    assert [m for _, _, m in again[:3]] == inner and again[3][0] == ofp.OFPT_BARRIER_REQUEST
    reply = parser.OFPBarrierReply(dp)
    reply.datapath, reply.xid = dp, barrier_xid
    app._barrier_reply(_Ev(reply))
    assert not waiter.wait(0)  # the old barrier only ended the refused bundle
    reply = parser.OFPBarrierReply(dp)
    reply.datapath, reply.xid = dp, again[3][1]
    app._barrier_reply(_Ev(reply))
    assert waiter.wait(0)
    # the commit's own error afterwards does not resend anything again
    err2 = parser.OFPErrorMsg(dp, type_=ofp.OFPET_EXPERIMENTER, code=0, data=b"")
    err2.datapath, err2.xid = dp, msgs[4][1]
    app._error(_Ev(err2))
    assert len(dp.sent) == 2

    # one FlowMod and its barrier: no bundle
    app.send(dp, [openflow.flowmod_add(entry(4)), openflow.barrier_request()])
    assert [t for t, _, _ in split(dp.sent[2])] == [ofp.OFPT_FLOW_MOD, ofp.OFPT_BARRIER_REQUEST]


def test_a_flowmod_refused_alone_fails_its_barrier_waiter() -> None:
    """A FlowMod the switch refuses on its own (after its bundle was refused and it was sent
    again alone, or sent alone in the first place) is answered by an error before the barrier
    reply: that barrier's waiter reports the refusal instead of success, so no change through
    the switch is confirmed; the next barrier is not affected by it."""
    import struct

    from os_ken.ofproto import ofproto_v1_3 as ofp
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    from controller.network import openflow
    from controller.network.app import CpnApp
    from controller.network.flows import FlowEntry

    def entry(n: int) -> FlowEntry:
        return FlowEntry(1, 10, (("eth_type", 0x0800), ("ipv4_dst", f"10.0.0.{n}")),
                         (("output", n),), n)

    def barrier_reply(xid: int) -> _Ev:
        reply = parser.OFPBarrierReply(dp)
        reply.datapath, reply.xid = dp, xid
        return _Ev(reply)

    def last_xid() -> int:
        return int(struct.unpack_from("!I", dp.sent[-1], len(dp.sent[-1]) - 4)[0])

    app = CpnApp(cpn_service=ControllerService(load_topology(DIAMOND)))
    dp = _FakeDatapath()
    mod = openflow.flowmod_add(entry(1))
    waiter = app.send(dp, [mod, openflow.barrier_request()])
    assert waiter is not None
    table_full = parser.OFPErrorMsg(dp, type_=ofp.OFPET_FLOW_MOD_FAILED,
                                    code=ofp.OFPFMFC_TABLE_FULL, data=bytes(mod.buf)[:64])
    table_full.datapath, table_full.xid = dp, mod.xid
    app._error(_Ev(table_full))
    app._barrier_reply(barrier_reply(last_xid()))
    assert not waiter.wait(0) and waiter.event.is_set()
    assert waiter.error is not None and f"code {ofp.OFPFMFC_TABLE_FULL}" in waiter.error
    # the next change's barrier is answered cleanly
    ok = app.send(dp, [openflow.flowmod_add(entry(2)), openflow.barrier_request()])
    assert ok is not None
    app._barrier_reply(barrier_reply(last_xid()))
    assert ok.wait(0) and ok.error is None
    # a meter or group mod refused by design (ADD of one that exists) is not a refusal
    meter_exists = parser.OFPErrorMsg(dp, type_=ofp.OFPET_METER_MOD_FAILED,
                                      code=ofp.OFPMMFC_METER_EXISTS,
                                      data=bytes([ofp.OFP_VERSION, ofp.OFPT_METER_MOD]) + b"\0" * 6)
    meter_exists.datapath, meter_exists.xid = dp, 7
    third = app.send(dp, [openflow.flowmod_add(entry(3)), openflow.barrier_request()])
    assert third is not None
    app._error(_Ev(meter_exists))
    app._barrier_reply(barrier_reply(last_xid()))
    assert third.wait(0)


class _FakeReply:
    def __init__(self) -> None:
        self.parts: list[Any] = []
        self.error: str | None = None
        self.event = threading.Event()
        self.cancelled = False

    def wait(self, timeout: float | None = None) -> bool:
        return self.event.wait(timeout)

    def cancel(self) -> None:
        self.cancelled = True


class _FakeTransport:
    """Answers flow-stats requests as told: ``parts`` (delivered from another thread after
    a short delay), ``error``, or ``silent``."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.replies: list[_FakeReply] = []

    def alive(self, handle: Any) -> bool:
        return True

    def send(self, handle: Any, msgs: Any) -> None:
        return None

    def request(self, handle: Any, msg: Any) -> _FakeReply:
        reply = _FakeReply()
        self.replies.append(reply)

        def answer() -> None:
            time.sleep(0.05)  # the scenario: the switch's answer arrives a little later
            if self.mode == "parts":
                reply.parts.extend([_flow_stats(5, 2), _flow_stats(4, 1)])
            elif self.mode == "error":
                reply.error = "the switch answered with OpenFlow error type 1 code 2"
            if self.mode != "silent":
                reply.event.set()

        threading.Thread(target=answer, daemon=True).start()
        return reply


@pytest.mark.parametrize("mode", ["parts", "error", "silent"])
def test_service_read_waits_bounded_and_names_the_failure(mode: str) -> None:
    service = ControllerService(load_topology(DIAMOND), startup_grace_s=0)
    transport = _FakeTransport(mode)
    with pytest.raises(SwitchUnavailable, match="not connected"):
        service.read_flows(1)  # before any switch connected
    service.start(transport)
    try:
        service.switch_connected(1, {1: True, 2: True, 3: True}, "handle-1")
        with pytest.raises(NotFound):
            service.read_flows(0x63)
        t0 = time.monotonic()
        if mode == "parts":
            stats = service.read_flow_stats(1, timeout_s=2.0)
            assert [(s.entry.table_id, s.entry.cookie) for s in stats] == [(1, 4), (2, 5)]
            assert stats[0].packets == 7 and stats[0].duration_s == pytest.approx(3.5)
        else:
            with pytest.raises(SwitchUnavailable) as exc:
                service.read_flows(1, timeout_s=0.4)
            assert exc.value.http_status == 503
            assert ("within 0.4 s" if mode == "silent" else "error type 1") in str(exc.value)
        assert time.monotonic() - t0 < 1.5
        assert all(r.cancelled for r in transport.replies)  # no waiter left behind
        with pytest.raises(ValueError):
            service.read_flows(1, timeout_s=0)
    finally:
        service.stop()
