"""Live reads and OpenFlow message metrics, on real OVS in Mininet with the controller as a
subprocess (``python -m controller.main`` with its REST API) on the diamond topology.

* ``GET /switches/{dpid}/flows`` reads the switch itself: the same flows ``ovs-ofctl
  dump-flows`` shows (parsed independently), including one the controller never heard of.
* ``GET /switches/{dpid}/ports`` reads port descriptions and counters from the switch: port
  names as OVS has them, counters that grow by at least what a ping sent, in step with
  ``ovs-ofctl dump-ports``.
* ``/metrics`` counts OpenFlow messages by type and direction, in agreement with the
  controller's own Change records, and packet-ins per switch at least as many as the switch's
  ARP-to-controller flow counted.
* Unknown switch: 404; a disconnected switch: 503 with ``source=switch``, the controller's
  view with ``switch_error`` otherwise.

The first tests need no switches: the app's collection of multipart replies by xid and the
service's bounded wait, with a fake datapath and transport.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from harness import (
    DIAMOND,
    ControllerProcess,
    controller_and_lab,
    fast_ping,
    flows_of,
    ping_result,
)
from waiting import wait_until, wait_until_stable

from controller.errors import NotFound
from controller.lab.network import LabNetwork
from controller.lab.ovs import run_command
from controller.network.flows import make_cookie
from controller.network.service import ControllerService, SwitchUnavailable
from controller.topology.loader import load_topology
from controller.topology.wiring import port_plan

NODES = ("s1", "s2", "s3", "s4")
"""How long to wait for another helper's lab to finish before failing (bounded)."""


# --- no switches: the app's part collection and the service's bounded wait -----------------

def _flow_stats(cookie: int, table_id: int = 0) -> Any:
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    return parser.OFPFlowStats(table_id=table_id, duration_sec=3, duration_nsec=500_000_000,
                               priority=10, idle_timeout=0, hard_timeout=0, flags=0,
                               cookie=cookie, packet_count=7, byte_count=700,
                               match=parser.OFPMatch(eth_type=0x0806), instructions=[])


class _FakeDatapath:
    """What CpnApp.request needs of an os-ken Datapath; records what was sent."""

    def __init__(self) -> None:
        from os_ken.ofproto import ofproto_v1_3 as ofp
        from os_ken.ofproto import ofproto_v1_3_parser as parser

        self.ofproto, self.ofproto_parser = ofp, parser
        self.id = 1
        self.is_active = True
        self.xid = 100
        self.sent: list[bytes] = []

    def set_xid(self, msg: Any) -> int:
        self.xid += 1
        msg.set_xid(self.xid)
        return self.xid

    def send(self, buf: bytes) -> bool:
        self.sent.append(buf)
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


# --- the lab -------------------------------------------------------------------------------

@dataclass
class Live:
    ctl: ControllerProcess
    lab: LabNetwork

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.ctl.api_port}/api/v1{path}", params=params,
                         timeout=15.0)

    def json(self, path: str, **params: Any) -> Any:
        r = self.get(path, **params)
        assert r.status_code == 200, r.text
        return r.json()

    def metrics(self) -> str:
        r = httpx.get(f"http://127.0.0.1:{self.ctl.api_port}/metrics", timeout=15.0)
        assert r.status_code == 200, r.text
        return r.text

    def ofctl(self, *args: str) -> str:
        res = run_command(["ovs-ofctl", "-O", "OpenFlow13", *args])
        assert res.returncode == 0, res.stderr
        return res.stdout


@pytest.fixture(scope="module")
def live(lab_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with controller_and_lab(lab_env, DIAMOND, tmp_path_factory.mktemp("ctl-live"),
                            startup_grace_s=5.0, lab_timeout_s=60,
                            synced_timeout_s=30) as (ctl, lab):
        yield Live(ctl, lab)


def _triples(flows: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    return sorted((int(f["cookie"], 16), f["table_id"], f["priority"]) for f in flows)


def test_live_flows_are_exactly_the_switch_table(live: Live) -> None:
    for node in NODES:
        body = live.json(f"/switches/{node}/flows", source="switch")
        assert body["source"] == "switch" and body["switch"] == node
        want = sorted((f.cookie, f.table, f.priority) for f in flows_of(live.lab, node))
        assert len(want) > 5
        assert _triples(body["flows"]) == want, node
        assert all(isinstance(f["packets"], int) and f["duration_s"] >= 0
                   for f in body["flows"])
        assert live.json(f"/switches/{node}/flows")["source"] == "switch"  # auto: live
        # synced, nothing foreign: the controller's confirmed view is the same table
        plan = live.json(f"/switches/{node}/flows", source="controller")
        assert plan["plan"] == "installed" and _triples(plan["flows"]) == want

    # a flow added behind the controller's back is on the switch, not in the plan
    bridge = live.lab.plan.switch("s2")
    live.ofctl("add-flow", bridge,
               "table=5,priority=7,cookie=0xbeef,ip,nw_dst=10.9.9.9,actions=drop")
    try:
        body = live.json("/switches/s2/flows", source="switch")
        foreign = [f for f in body["flows"] if int(f["cookie"], 16) == 0xBEEF]
        assert len(foreign) == 1, body["flows"]
        assert (foreign[0]["table_id"], foreign[0]["priority"]) == (5, 7)
        assert foreign[0]["match"].get("ipv4_dst") == "10.9.9.9"
        assert foreign[0]["owner"] is None
        plan = live.json("/switches/s2/flows", source="controller")
        assert 0xBEEF not in {int(f["cookie"], 16) for f in plan["flows"]}
        assert _triples(body["flows"]) == sorted(
            (f.cookie, f.table, f.priority) for f in flows_of(live.lab, "s2"))
    finally:
        live.ofctl("del-flows", bridge, "cookie=0xbeef/-1")
    body = live.json("/switches/s2/flows", source="switch")
    assert 0xBEEF not in {int(f["cookie"], 16) for f in body["flows"]}


_DUMP_PORT = re.compile(r"port\s+(\d+):\s*rx pkts=(\d+), bytes=(\d+).*?tx pkts=(\d+), "
                        r"bytes=(\d+)", re.S)


def _ofctl_port(live: Live, node: str, port_no: int) -> tuple[int, int]:
    """(rx packets, tx packets) of one port as ``ovs-ofctl dump-ports`` reports them."""
    out = live.ofctl("dump-ports", live.lab.plan.switch(node), str(port_no))
    m = _DUMP_PORT.search(out)
    assert m is not None and int(m.group(1)) == port_no, out
    return int(m.group(2)), int(m.group(4))


def test_live_port_counters_grow_after_a_ping(live: Live) -> None:
    topo = live.lab.topology
    wiring = port_plan(topo)
    node, host_port = wiring.host_port["h1"]
    assert node == "s1"

    def ports() -> dict[int, dict[str, Any]]:
        body = live.json(f"/switches/{node}/ports")
        assert body["source"] == "switch" and body["switch_error"] is None, body
        return {p["port_no"]: p for p in body["ports"]}

    before = ports()
    ifaces = {port: iface for iface, port in
              live.lab.plan.switch_interfaces()[live.lab.plan.switch(node)]}
    assert {p: row["name"] for p, row in before.items()} == ifaces
    assert all(row["link_up"] and row["admin_up"] and row["counters"] is not None
               for row in before.values())
    assert before[host_port]["expected"] == {"kind": "host", "host": "h1"}

    n = 30
    sent, received, out = ping_result(fast_ping(live.lab, "h1", "h2", n), 20)
    assert sent == n and received >= n - 3, out

    def grown() -> dict[int, dict[str, Any]] | None:
        now = ports()
        c0, c1 = before[host_port]["counters"], now[host_port]["counters"]
        return now if (c1["rx_packets"] - c0["rx_packets"] >= sent
                       and c1["tx_packets"] - c0["tx_packets"] >= received) else None

    after = wait_until(grown, 5, "s1's host port counters grew by the ping")
    c0, c1 = before[host_port]["counters"], after[host_port]["counters"]
    # 98-byte frames (84-byte IP datagram + Ethernet header) each way
    assert c1["rx_bytes"] - c0["rx_bytes"] >= 98 * sent
    assert c1["tx_bytes"] - c0["tx_bytes"] >= 98 * received
    assert c1["duration_s"] >= c0["duration_s"]
    # in step with OVS's own report: ours before <= ovs-ofctl's <= ours after
    rx, tx = _ofctl_port(live, node, host_port)
    final = ports()[host_port]["counters"]
    assert c1["rx_packets"] <= rx <= final["rx_packets"]
    assert c1["tx_packets"] <= tx <= final["tx_packets"]


def _metric(text: str, name: str, **labels: str) -> float:
    """A sample's value (0 when absent); label order as prometheus-client writes it."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    sample = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(f"{sample} "):
            return float(line.split()[-1])
    return 0.0


def _of(text: str, msg_type: str, direction: str) -> float:
    return _metric(text, "cpn_openflow_messages_total", direction=direction, type=msg_type)


def test_metrics_count_openflow_messages_and_packet_ins(live: Live) -> None:
    arp_cookie = make_cookie(1, 2)  # pipeline flow 2: ARP -> controller (docs/controller.md)

    def arp_packets() -> int:
        return sum(f.n_packets for f in flows_of(live.lab, "s1") if f.cookie == arp_cookie)

    def settled_arp() -> int:
        # OVS pushes datapath counts to OpenFlow flows about every second
        return wait_until_stable(arp_packets, gap_s=1.1, timeout_s=5.5)

    arp0 = settled_arp()
    m0 = live.metrics()
    h1, h2_ip = live.lab.host("h1"), live.lab.topology.host("h2").ip
    n = 5
    for _ in range(n):  # each flush makes h1 ask for h2's MAC again: one ARP request each
        h1.cmd(f"ip neigh flush all; ping -n -c 1 -W 1 {h2_ip} >/dev/null")
    arp_delta = settled_arp() - arp0
    assert arp_delta >= n
    m1 = live.metrics()
    pi_delta = (_metric(m1, "cpn_packet_ins_total", dpid="0x1")
                - _metric(m0, "cpn_packet_ins_total", dpid="0x1"))
    # every ARP the flow sent up is a packet-in counted for s1 (LLDP probes add more)
    assert pi_delta >= arp_delta, (pi_delta, arp_delta)
    assert _of(m1, "OFPPacketIn", "in") - _of(m0, "OFPPacketIn", "in") >= arp_delta
    # proxy ARP answers each request with a packet-out
    assert _of(m1, "OFPPacketOut", "out") - _of(m0, "OFPPacketOut", "out") >= n

    # at rest, the app's counts agree with the controller's own Change records: every
    # FlowMod and barrier the app sent belongs to a Change, and every barrier was answered
    def agree() -> str | None:
        m = live.metrics()
        flowmods, barriers = _of(m, "OFPFlowMod", "out"), _of(m, "OFPBarrierRequest", "out")
        changes = _metric(m, "cpn_change_messages_total")
        ok = (flowmods > 0 and barriers > 0 and flowmods + barriers == changes
              and _of(m, "OFPBarrierReply", "in") == barriers)
        return m if ok else None

    m = wait_until(agree, 10, "OpenFlow counters in agreement with the Change records",
                   detail=lambda: "\n".join(ln for ln in live.metrics().splitlines()
                                          if ln.startswith(("cpn_openflow", "cpn_change"))))
    # one flow-stats request per switch at connect (plus the live reads), each answered
    assert _of(m, "OFPFlowStatsRequest", "out") >= len(NODES)
    assert _of(m, "OFPFlowStatsReply", "in") >= _of(m, "OFPFlowStatsRequest", "out")
    assert _of(m, "OFPPortStatsReply", "in") >= 1  # the port test's reads


def test_unknown_switch_404_and_a_disconnected_switch(live: Live) -> None:
    for path in ("/switches/0x63/flows", "/switches/0x63/ports"):
        for source in ("auto", "switch"):
            r = live.get(path, source=source)
            assert r.status_code == 404 and r.json()["error"] == "not_found", r.text
    bridge = live.lab.plan.switch("s3")
    res = run_command(["ovs-vsctl", "--timeout=10", "del-controller", bridge])
    assert res.returncode == 0, res.stderr
    wait_until(lambda: live.json("/health")["switches_connected"] == len(NODES) - 1, 15,
               "s3 seen as disconnected")
    r = live.get("/switches/s3/flows", source="switch")
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "switch_unavailable" and "not connected" in r.json()["detail"]
    assert live.get("/switches/s3/ports", source="switch").status_code == 503
    body = live.json("/switches/s3/flows")
    assert body["source"] == "controller" and "not connected" in body["switch_error"]
    ports = live.json("/switches/s3/ports")
    assert ports["source"] == "controller" and not ports["connected"]
    assert all(p["counters"] is None for p in ports["ports"])
    # the others still answer live
    assert live.json("/switches/s1/flows")["source"] == "switch"
