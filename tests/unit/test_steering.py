"""Compute steering in the controller without switches: the anycast NAT flows (ports checked
hop by hop against the wiring), their round trip through OpenFlow messages, proxy ARP for the
anycast address, and the flows following assignments through Steering."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from os_ken.lib.packet import arp, ethernet, icmp, ipv4, packet
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.compute.anycast import FlowTuple, Service
from controller.compute.metrics import SiteMetrics
from controller.compute.steering import (
    ANYCAST_MAC,
    ANYCAST_PRIORITY,
    Steering,
    anycast_flows,
    idle_clients,
)
from controller.network import openflow
from controller.network.flows import OWNER_ANYCAST, TABLE_INTENTS, flow, make_cookie
from controller.network.service import ControllerService
from controller.topology.files import topology_file
from controller.topology.loader import load_topology

NATIONAL = topology_file("national")
ANYCAST_IP = "10.255.0.1"


def arp_request(src_mac: str, src_ip: str, dst_ip: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=src_mac, ethertype=0x0806))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=src_mac, src_ip=src_ip,
                             dst_mac="00:00:00:00:00:00", dst_ip=dst_ip))
    pkt.serialize()
    return bytes(pkt.data)


def anycast_entries(service: ControllerService) -> dict[str, set]:
    """switch name -> anycast flows in the core's wanted plan."""
    core = service.core
    out: dict[str, set] = {}
    for d, e in core.wanted_plan():
        if e.owner is not None and e.owner[0] == "anycast":
            out.setdefault(core.wiring.dpid_node[d], set()).add(e)
    return out


def test_set_field_flows_round_trip_through_openflow() -> None:
    entry = flow(TABLE_INTENTS, ANYCAST_PRIORITY,
                 {"eth_type": 0x0800, "ipv4_src": "10.0.0.51", "ipv4_dst": ANYCAST_IP},
                 (("set_field", ("ipv4_dst", "10.0.0.12")),
                  ("set_field", ("eth_dst", "02:00:0a:00:00:0c")), ("output", 3)),
                 make_cookie(OWNER_ANYCAST, 51))
    (fm, _barrier) = openflow.flowentry_to_msgs(adds=[entry])
    assert fm.command == ofp.OFPFC_ADD
    actions = fm.instructions[0].actions
    assert [type(a).__name__ for a in actions] == ["OFPActionSetField", "OFPActionSetField",
                                                   "OFPActionOutput"]
    buf = bytearray()
    fm.instructions[0].serialize(buf, 0)
    inst = parser.OFPInstructionActions.parser(bytes(buf), 0)
    buf = bytearray()
    fm.match.serialize(buf, 0)
    match = parser.OFPMatch.parser(bytes(buf), 0)
    stat = parser.OFPFlowStats(table_id=entry.table_id, duration_sec=0, duration_nsec=0,
                               priority=entry.priority, idle_timeout=0, hard_timeout=0,
                               flags=0, cookie=entry.cookie, packet_count=0, byte_count=0,
                               match=match, instructions=[inst])
    assert openflow.flowstats_to_entry(stat) == entry
    assert entry.owner == ("anycast", 51)


def test_nat_flows_follow_the_path_port_by_port() -> None:
    service = ControllerService(load_topology(NATIONAL))
    st = service.core.state
    topo = service.topology
    g = st.graph
    client, site_host = topo.host("h-city-lanzhou"), topo.host("h-dc-tianfu")
    p = g.shortest_path(client.node, site_host.node, weight="latency")
    assert p is not None and len(p.nodes) >= 3
    steered = FlowTuple(client_ip=client.ip, anycast_ip=ANYCAST_IP, site_ip=site_host.ip,
                        site_mac=site_host.mac, site_node=site_host.node, path=tuple(p.nodes),
                        client_host=client.name, site_host=site_host.name,
                        link_ids=tuple(p.links))
    with service.network() as net:
        flows = anycast_flows(net, [steered])
    cookie = make_cookie(OWNER_ANYCAST, int.from_bytes(bytes(
        int(x) for x in client.ip.split(".")), "big"))
    assert set(flows) == {cookie}
    per = flows[cookie]
    wiring = st.wiring
    assert {wiring.dpid_node[d] for d in per} == set(p.nodes)
    # walk the forward direction by following each output port to its peer
    node, hop = p.nodes[0], 0
    dst = ANYCAST_IP
    while True:
        d = wiring.node_dpid[node]
        fwd = [e for e in per[d] if dict(e.match).get("ipv4_src") == client.ip
               and dict(e.match)["ipv4_dst"] == dst]
        assert len(fwd) == 1, (node, per[d])
        instr = fwd[0].instructions
        if hop == 0:
            assert instr[:2] == (("set_field", ("ipv4_dst", site_host.ip)),
                                 ("set_field", ("eth_dst", site_host.mac)))
            dst = site_host.ip
        port = dict(instr)["output"]
        peer = wiring.peer(d, port)
        if peer is not None and len(peer) == 2:
            assert peer[1] == site_host.name and node == p.nodes[-1]
            break
        assert peer is not None
        node = wiring.dpid_node[peer[2]]
        hop += 1
        assert node == p.nodes[hop]
    # the way back: at the client's switch only, source rewritten, out of the client's port
    first = wiring.node_dpid[p.nodes[0]]
    (back,) = [e for e in per[first] if dict(e.match)["ipv4_src"] == site_host.ip]
    assert dict(back.match)["ipv4_dst"] == client.ip
    assert back.instructions[0] == ("set_field", ("ipv4_src", ANYCAST_IP))
    assert wiring.peer(first, back.instructions[1][1]) == ("host", client.name)
    assert all(e.priority == ANYCAST_PRIORITY and e.table_id == TABLE_INTENTS
               for es in per.values() for e in es)


def test_steering_installs_moves_and_removes_nat_flows_and_proxy_arp() -> None:
    service = ControllerService(load_topology(NATIONAL))
    steering = Steering(service)
    topo = service.topology
    client = topo.host("h-city-lanzhou")
    assert anycast_entries(service) == {}
    steering.add_service(Service("infer", ANYCAST_IP, "intelligent", 0.01, 5.0))
    a = steering.assign("infer", client.name)
    got = anycast_entries(service)
    assert set(got) == set(a["path"])
    assert sum(len(v) for v in got.values()) == len(a["path"]) + 1  # forward + the way back

    core = service.core
    node, port = core.wiring.host_port[client.name]
    dpid = core.wiring.node_dpid[node]
    res = core.packet_in(dpid, port, arp_request(client.mac, client.ip, ANYCAST_IP), 5.0)
    ((_, msg),) = res.messages
    reply = packet.Packet(msg.data).get_protocol(arp.arp)
    assert (reply.src_mac, reply.src_ip) == (ANYCAST_MAC, ANYCAST_IP)

    _, moves = steering.update_site(a["site_id"], {"state": "down"})
    assert len(moves) == 1 and moves[0].to_site not in (None, a["site_id"])
    new_path = steering.assignments("infer")[0]["path"]
    assert set(anycast_entries(service)) == set(new_path) != set(a["path"])

    steering.remove_service("infer")
    assert anycast_entries(service) == {}
    res = core.packet_in(dpid, port, arp_request(client.mac, client.ip, ANYCAST_IP), 6.0)
    assert res.messages == []


# -- automatic steering: first packet, topology changes -------------------------------------------

class FakeTransport:
    """Records what the service sends (packet-outs); every handle is alive."""

    def __init__(self) -> None:
        self.sent: list[tuple[object, object]] = []

    def send(self, handle: object, msgs: list[object]) -> None:
        self.sent.extend((handle, m) for m in msgs)

    def alive(self, handle: object) -> bool:
        return True

    def request(self, handle: object, msg: object) -> None:
        return None


def ping_frame(src_mac: str, src_ip: str, dst_ip: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=ANYCAST_MAC, src=src_mac, ethertype=0x0800))
    pkt.add_protocol(ipv4.ipv4(src=src_ip, dst=dst_ip, proto=1))
    pkt.add_protocol(icmp.icmp(type_=icmp.ICMP_ECHO_REQUEST,
                               data=icmp.echo(id_=7, seq=1, data=b"x" * 16)))
    pkt.serialize()
    return bytes(pkt.data)


def wired(topo_path: Path = NATIONAL) -> tuple[ControllerService, Steering, FakeTransport]:
    service = ControllerService(load_topology(topo_path))
    transport = FakeTransport()
    service._transport = transport  # packet-outs only: no sender, Changes stay in the core
    return service, Steering(service), transport


def connect(service: ControllerService, node: str) -> tuple[int, str]:
    """Connect ``node``'s switch (every port live) with a fake handle: (dpid, handle)."""
    dpid = service.core.wiring.node_dpid[node]
    ports = {p: True for p in service.core.wiring.ports_of(dpid)}
    handle = f"dp-{node}"
    assert service.switch_connected(dpid, ports, handle)
    return dpid, handle


def test_first_packet_to_the_anycast_address_assigns_the_client_and_reinjects_it() -> None:
    service, steering, transport = wired()
    steering.add_service(Service("infer", ANYCAST_IP, "intelligent", 0.01, 5.0))
    client = service.topology.host("h-dcp-chengdu")
    node, port = service.core.wiring.host_port[client.name]
    dpid, handle = connect(service, node)
    # the policy's choice, made by the pure layer on a copy of the same state
    with service.lock:
        expected = steering.scheduler.select(client.node, 10_000, "intelligent", 5.0,
                                             need_host=True).site.id
    frame = ping_frame(client.mac, client.ip, ANYCAST_IP)
    service.packet_in(dpid, port, frame)
    assert steering.idle(10)
    (a,) = steering.assignments("infer")
    assert (a["client_host"], a["site_id"]) == (client.name, expected)
    assert set(anycast_entries(service)) == set(a["path"])
    (sent_to, out), = transport.sent
    assert sent_to is handle and out.data == frame and out.in_port == port
    assert [x.port for x in out.actions] == [ofp.OFPP_TABLE]
    # the next packet of the same client (flows on their way): nothing new, no re-injection
    service.packet_in(dpid, port, frame)
    assert steering.idle(10)
    assert len(transport.sent) == 1 and steering.assignments("infer") == [a]


def test_packets_that_are_not_a_clients_first_packet_change_nothing() -> None:
    service, steering, transport = wired()
    steering.add_service(Service("infer", ANYCAST_IP, "intelligent", 0.01, 5.0))
    client = service.topology.host("h-dcp-chengdu")
    node, port = service.core.wiring.host_port[client.name]
    dpid, _ = connect(service, node)
    other = service.topology.host("h-dc-tianfu")
    # to a host's address (not anycast); from the wrong port; from an unknown address
    service.packet_in(dpid, port, ping_frame(client.mac, client.ip, other.ip))
    service.packet_in(dpid, port + 100, ping_frame(client.mac, client.ip, ANYCAST_IP))
    service.packet_in(dpid, port, ping_frame("02:99:00:00:00:01", "10.9.9.9", ANYCAST_IP))
    assert steering.idle(10)
    assert steering.assignments("infer") == [] and transport.sent == []
    assert anycast_entries(service) == {}


def test_a_lost_site_switch_moves_its_clients_automatically() -> None:
    service, steering, _ = wired()
    steering.add_service(Service("infer", ANYCAST_IP, "intelligent", 0.01, 5.0))
    client = service.topology.host("h-dcp-chengdu")
    a = steering.assign("infer", client.name)
    site_node = a["site_node"]
    dpid, handle = connect(service, site_node)
    with service.lock:
        expected = steering.scheduler.select(client.node, 10_000, "intelligent", 5.0,
                                             need_host=True, exclude=(a["site_id"],))
    service.switch_lost(dpid, handle)
    assert steering.idle(10)
    (b,) = steering.assignments("infer")
    assert b["site_id"] == expected.site.id != a["site_id"]
    assert site_node not in b["path"] and b["latency_ms"] <= 5.0
    assert set(anycast_entries(service)) == set(b["path"])
    (log_entry,) = steering.moves_log
    assert log_entry["moves"][0]["to_site"] == b["site_id"]


def test_a_link_cut_isolating_the_site_moves_its_clients_automatically() -> None:
    service, steering, _ = wired()
    steering.add_service(Service("infer", ANYCAST_IP, "intelligent", 0.01, 5.0))
    client = service.topology.host("h-dcp-chengdu")
    a = steering.assign("infer", client.name)
    site_node = a["site_node"]
    dpid, handle = connect(service, site_node)
    wiring = service.core.wiring
    link_ports = [p for p in wiring.ports_of(dpid) if wiring.is_link_port(dpid, p)]
    assert link_ports
    for p in link_ports:  # every link of the site's switch: the site is cut off
        service.port_status(dpid, p, False, handle)
    assert steering.idle(10)
    (b,) = steering.assignments("infer")
    assert b["site_id"] != a["site_id"] and site_node not in b["path"]
    assert set(anycast_entries(service)) == set(b["path"])


# -- SLA monitoring of assignments -----------------------------------------------------------

def link_index(service: ControllerService, a: str, b: str) -> int:
    return next(i for i, lk in enumerate(service.topology.links) if {lk.a, lk.b} == {a, b})


def test_an_assignment_over_its_bound_raises_the_event_and_comes_back() -> None:
    service = ControllerService(load_topology(NATIONAL))
    steering = Steering(service, sla_samples=2, sla_alpha=1.0)
    steering.add_service(Service("infer", ANYCAST_IP, "intelligent", 0.01, 5.0))
    a = steering.assign("infer", "h-city-lanzhou")
    assert steering.assignments("infer")[0]["sla"] is None          # not sampled yet
    assert steering.sla_tick(0.0) == []
    [row] = steering.assignments("infer")
    assert row["sla"]["state"] == "ok"
    assert row["sla"]["measured_ms"] == pytest.approx(a["latency_ms"], abs=1e-3)
    # an external probe reports 9 ms on the path's first link, both ways: over the 5 ms bound
    first = link_index(service, a["path"][0], a["path"][1])
    slow = {"a_to_b": {"delay_ms": 9.0}, "b_to_a": {"delay_ms": 9.0}}
    service.configure_measurements(delay_source="external", measurement_max_age_s=1e9,
                                   sla_interval_s=1.0, sla_samples=2, sla_ewma_alpha=1.0,
                                   sla_reroute=False)
    service.set_link_measurement(first, slow)
    assert steering.sla_tick(1.0) == []                             # one sample is not enough
    [ev] = steering.sla_tick(2.0)
    assert ev["kind"] == "sla_violation" and ev["client"] == "h-city-lanzhou"
    assert ev["site"] == a["site_id"] and ev["bound_ms"] == 5.0 and ev["measured_ms"] > 9.0
    [row] = steering.assignments("infer")
    assert row["sla"]["state"] == "violated" and row["sla"]["violations"] == 1
    assert any(e["kind"] == "sla_violation" and e.get("client") == "h-city-lanzhou"
               for e in service.events())
    service.set_link_measurement(first, {"a_to_b": {"delay_ms": 0.1}, "b_to_a": {"delay_ms": 0.1}})
    steering.sla_tick(3.0)
    [ev] = steering.sla_tick(4.0)
    assert ev["kind"] == "sla_restored"
    assert steering.assignments("infer")[0]["sla"]["state"] == "ok"
    # under cats the site's reported compute delay counts against the (end-to-end) bound
    steering.remove_service("infer")
    steering.add_service(Service("cats", ANYCAST_IP, "intelligent", 0.01, 30.0, policy="cats"))
    for s in steering.registry.sites():
        steering.registry.set_metrics(s.id, SiteMetrics(
            utilisation=0.1, compute_delay_ms=2.0, free_capacity=None, healthy=True,
            received_at=time.monotonic()))
    c = steering.assign("cats", "h-city-lanzhou")
    steering.sla_tick(5.0)
    [row] = steering.assignments("cats")
    assert row["sla"]["measured_ms"] == pytest.approx(c["latency_ms"] + 2.0, abs=1e-3)
    assert row["sla"]["bound_ms"] == 30.0


def test_a_member_that_loses_the_race_to_seed_the_file_sites_seeds_what_is_missing(
        tmp_path: Path) -> None:
    """Members of a cluster starting together seed the topology file's compute sites: the
    write of the one that loses the race raises StaleWrite. It reads what the winner wrote
    and seeds only what is still missing, instead of failing its start."""
    from controller.errors import StaleWrite
    from controller.store import open_store

    store = open_store(tmp_path)
    service = ControllerService(load_topology(NATIONAL))
    file_sites = [s.id for s in service.topology.compute_sites]
    assert len(file_sites) >= 2
    real_write = store.write_compute
    writes: list[list[str]] = []

    def racing_write(**kw: object) -> int:
        sites = kw.get("sites") or {}
        writes.append(sorted(sites))  # type: ignore[arg-type]
        if len(writes) == 1:
            # the other member wins: it seeds the first site in the meantime
            first = file_sites[0]
            real_write(sites={first: sites[first]})  # type: ignore[index]
            raise StaleWrite("the compute records changed at revision 2", revision=2)
        return real_write(**kw)  # type: ignore[arg-type]

    store.write_compute = racing_write  # type: ignore[method-assign]
    try:
        steering = Steering(service, store)
        try:
            assert len(writes) == 2 and writes[0] == sorted(file_sites)
            assert writes[1] == sorted(set(file_sites) - {file_sites[0]})
            assert sorted(s["id"] for s in store.compute_state()["sites"]) == \
                sorted(file_sites)
            assert {s["id"] for s in steering.sites()} >= set(file_sites)
        finally:
            steering.close()
    finally:
        store.close()


def test_a_client_is_idle_only_after_move_idle_s_without_a_packet() -> None:
    """Looks every 0.5 s with move_idle_s 1.5: a client whose counter keeps moving is never
    idle; one that stops is idle from the first look 1.5 s after the look that last saw it
    move (not at the first quiet look: a client waiting for a slow answer sends nothing for
    a while); a client first seen is active; a client gone is forgotten."""
    counts = {"a": [1, 2, 3, 4, 5, 6, 7, 8], "b": [1, 2, 3, 3, 3, 3, 3, 3],
              "c": [None, None, None, 9, 9, 9, 9, 9]}
    before: dict[str, int] = {}
    active: dict[str, float] = {}
    idle_at: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    for k in range(8):
        now = 100.0 + 0.5 * k
        seen = {ip: c[k] for ip, c in counts.items() if c[k] is not None}
        idle, active = idle_clients(seen, before, active, now, 1.5)
        before = seen
        for ip in idle:
            idle_at[ip].append(now)
    assert idle_at["a"] == []
    assert idle_at["b"] == [102.5, 103.0, 103.5]  # last moved at the 101.0 look
    assert idle_at["c"] == [103.0, 103.5]  # first seen at 101.5
    # with move_idle_s 0, a client is idle at the first look that finds its count unchanged
    idle, _ = idle_clients({"b": 3, "c": 9}, {"b": 3, "c": 8}, {"b": 101.0}, 101.5, 0.0)
    assert idle == {"b"}
    # a client no longer seen drops out of the record
    _, active = idle_clients({"a": 1}, {"a": 1, "b": 3}, {"a": 0.0, "b": 0.0}, 5.0, 1.0)
    assert active == {"a": 0.0}
