"""Compute steering in the controller without switches: the anycast NAT flows (ports checked
hop by hop against the wiring), their round trip through OpenFlow messages, proxy ARP for the
anycast address, and the flows following assignments through Steering."""

from __future__ import annotations

from pathlib import Path

from os_ken.lib.packet import arp, ethernet, packet
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import openflow
from controller.placement import Service
from controller.routing import OWNER_ANYCAST, TABLE_INTENTS, flow, make_cookie
from controller.service import ControllerService
from controller.steering import ANYCAST_MAC, ANYCAST_PRIORITY, Steering, anycast_flows
from controller.topology import load_topology

NATIONAL = Path(__file__).resolve().parents[2] / "topologies" / "national.yaml"
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
    flows = anycast_flows(st, [(client.name, client.ip, ANYCAST_IP, site_host.name, "svc",
                                tuple(p.nodes), tuple(p.links))])
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
