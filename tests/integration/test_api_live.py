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
"""

from __future__ import annotations

import re
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

from controller.lab.network import LabNetwork
from controller.lab.ovs import run_command
from controller.network.flows import make_cookie
from controller.topology.wiring import port_plan

NODES = ("s1", "s2", "s3", "s4")


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
    # FlowMod, meter and group mod and barrier the app sent belongs to a Change (the
    # packet-in meters are a Change's too), and every barrier was answered
    def agree() -> str | None:
        m = live.metrics()
        flowmods, barriers = _of(m, "OFPFlowMod", "out"), _of(m, "OFPBarrierRequest", "out")
        tables = _of(m, "OFPMeterMod", "out") + _of(m, "OFPGroupMod", "out")
        changes = _metric(m, "cpn_change_messages_total")
        ok = (flowmods > 0 and barriers > 0 and flowmods + tables + barriers == changes
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
