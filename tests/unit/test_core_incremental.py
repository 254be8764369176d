"""The incremental plan: after any sequence of changes the core's plan equals a from-scratch
plan of a fresh core given the same network, intents and hosts; the fake switches hold exactly
that plan; traffic is delivered. Also the message fast paths (match, FlowMod copies) against
os-ken's own constructors, and the reconcile record."""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from types import SimpleNamespace
from typing import Any

import networkx as nx
import pytest
from fakeoftable import FakeNetwork, apply_and_confirm, bring_up, flow_entries, ipv4
from hypothesis import given
from hypothesis import strategies as st
from oracles import examples
from os_ken.lib.packet import arp, ethernet, packet
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.network import openflow
from controller.network.core import ControllerCore
from controller.network.flows import FlowEntry, FlowPlan
from controller.topology.files import topology_file
from controller.topology.loader import load_topology, topology_from_dict
from controller.topology.model import IntentSpec, Match, Topology

NOW = 2.0


def fresh_plan(core: ControllerCore) -> FlowPlan:
    """The plan a new core computes from scratch for ``core``'s network, hosts and intents."""
    st_ = core.state
    fresh = ControllerCore(st_.topology, load_intents=False, now=st_.started,
                           startup_grace_s=st_.startup_grace_s)
    for dpid, sw in st_.switches.items():
        if sw.ever_connected:
            fresh.state.switch_connected(dpid, dict(sw.ports or {}), NOW)
            if not sw.connected:
                fresh.state.switch_lost(dpid, NOW)
    for h in st_.hosts.values():
        if h.source == "learned":
            assert fresh.state.learn_host(h.mac, h.ip, h.dpid, h.port_no, NOW) == "new"
    for intent in core.intents():
        fresh.router.add(intent.spec, intent.id)
    fresh.router.route_all(NOW, "fresh")
    return fresh.router.plan()


def arp_from(mac: str, ip: str, target_ip: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=mac, ethertype=0x0806))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REQUEST, src_mac=mac, src_ip=ip,
                             dst_mac="00:00:00:00:00:00", dst_ip=target_ip))
    pkt.serialize()
    return bytes(pkt.data)


def check_exact(core: ControllerCore, net: FakeNetwork) -> None:
    """Incremental plan == fresh plan; every synced switch holds exactly the plan; the
    router's key index agrees with its flows."""
    wanted = core.wanted_plan()
    assert wanted == fresh_plan(core)
    installed = core.installed_plan()
    for dpid in net.switches:
        if core.synced(dpid):
            assert installed.entries(dpid) == wanted.entries(dpid)
            assert Counter(flow_entries(net, dpid)) == Counter(wanted.entries(dpid))
        keys = Counter(e.key for e in wanted.entries(dpid))
        assert dict(keys) == dict(core.router.wanted_keys(dpid))


def check_traffic(core: ControllerCore, net: FakeNetwork, t: Topology) -> None:
    """With every switch connected: every pair of hosts joined by usable links is delivered
    without loops, and every installed intent's traffic follows its path."""
    if not all(sw.connected for sw in core.state.switches.values()):
        return
    g = nx.MultiGraph()
    g.add_nodes_from(n.name for n in t.nodes)
    for i, lk in enumerate(t.links):
        if net.link_up[i] and core.state.link_up[i]:
            g.add_edge(lk.a, lk.b)
    hosts = [h for h in core.state.hosts.values() if h.source == "file"]  # wired in the fake
    for hs in hosts:
        for hd in hosts:
            if hs is not hd and nx.has_path(g, hs.node, hd.node):
                tr = net.trace(hs.name, ipv4(hs.ip, hd.ip, ip_proto=17))
                assert tr.delivered == [hd.name] and not tr.loop, (hs.name, hd.name, tr)
    # whole-traffic intents: per pair the highest priority one holding flows decides
    top: dict[tuple[str, str], Any] = {}
    for intent in core.intents():
        spec = intent.spec
        if spec.match is None and "same traffic" not in intent.reason:
            best = top.get((spec.src, spec.dst))
            if best is None or spec.priority > best.spec.priority:
                top[(spec.src, spec.dst)] = intent
    for (src, dst), intent in top.items():
        if intent.state == "installed" and core.state.hosts[src].source == "file":
            hs, hd = core.state.hosts[src], core.state.hosts[dst]
            tr = net.trace(hs.name, ipv4(hs.ip, hd.ip, ip_proto=1))
            nodes = [core.wiring.dpid_node[d] for d in tr.dpids()]
            assert nodes == list(intent.path), (intent, tr)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Topology, list[tuple[Any, ...]]]:
    """A random connected multigraph (3-6 switches) and a sequence of operations."""
    n = draw(st.integers(3, 6))
    quarter = st.integers(0, 16).map(lambda q: q / 4)
    links = [(draw(st.integers(0, v - 1)), v) for v in range(1, n)]
    for _ in range(draw(st.integers(0, 5))):
        a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        if a != b:
            links.append((a, b))
    doc = {
        "name": "random",
        "nodes": [{"name": f"s{i}"} for i in range(n)],
        "links": [{"a": f"s{a}", "b": f"s{b}", "latency_ms": draw(quarter),
                   "cost": draw(quarter), "bandwidth_mbps": draw(st.sampled_from([100, 1000]))}
                  for a, b in links],
    }
    intent = st.tuples(st.just("add"), st.integers(0, n - 1), st.integers(0, n - 1),
                       st.integers(1, 40).map(lambda q: q / 4),
                       st.sampled_from([0.0, 0.0, 60.0]), st.sampled_from([None, 6, 17]),
                       st.sampled_from([0, 100]))
    op = st.one_of(
        intent,
        st.tuples(st.just("batch"), st.lists(intent, min_size=1, max_size=4)),
        st.tuples(st.just("remove"), st.integers(0, 20)),
        st.tuples(st.just("link"), st.integers(0, len(links) - 1)),
        st.tuples(st.just("link"), st.integers(0, len(links) - 1)),
        st.tuples(st.just("switch"), st.integers(0, n - 1)),
        st.tuples(st.just("flows_removed"), st.integers(0, n - 1)),
        st.tuples(st.just("learn"), st.integers(0, n - 1), st.integers(0, 2), st.integers(0, 1)),
        st.tuples(st.just("learn"), st.integers(0, n - 1), st.integers(0, 2), st.integers(0, 1)),
        st.tuples(st.just("to_learned"), st.integers(0, n - 1), st.integers(0, 2),
                  st.integers(1, 40).map(lambda q: q / 4)),
        st.tuples(st.just("tick"), st.just(0)),
    )
    return topology_from_dict(doc), draw(st.lists(op, min_size=1, max_size=12))


def _spec(op: tuple[Any, ...]) -> IntentSpec:
    _, a, b, bound, bw, proto, prio = op
    # a protocol's intent sits above the whole-traffic ones (same priority would overlap)
    return IntentSpec(f"h-s{a}", f"h-s{b}", max_latency_ms=bound, min_bandwidth_mbps=bw,
                      match=Match(ip_proto=proto) if proto else None,
                      priority=prio + (300 if proto else 100))


def run_op(core: ControllerCore, net: FakeNetwork, t: Topology, op: tuple[Any, ...],
           now: float) -> None:
    kind = op[0]
    changes: list[Any] = []
    if kind == "add":
        if op[1] != op[2]:
            changes.append(core.add_intent(_spec(op), now)[1])
    elif kind == "batch":
        specs = [_spec(o) for o in op[1] if o[1] != o[2]]
        if specs:
            changes.append(core.add_intents(specs, now)[1])
    elif kind == "to_learned":
        learned = sorted(n for n, h in core.state.hosts.items() if h.source == "learned")
        if learned:
            spec = IntentSpec(f"h-s{op[1]}", learned[op[2] % len(learned)],
                              max_latency_ms=op[3], priority=50)
            if not any(i.spec == spec for i in core.intents()):
                changes.append(core.add_intent(spec, now)[1])
    elif kind == "remove":
        ids = sorted(i.id for i in core.intents())
        if ids:
            changes.append(core.remove_intent(ids[op[1] % len(ids)], now))
    elif kind == "link":
        i = op[1]
        up = not net.link_up[i]
        net.set_link(i, up)
        pa, pb = core.wiring.link_ports[i]
        for node, port in ((t.links[i].a, pa), (t.links[i].b, pb)):
            dpid = core.wiring.node_dpid[node]
            if core.state.switches[dpid].connected:
                changes.append(core.port_status(dpid, port, up, now))
    elif kind == "switch":
        dpid = core.wiring.node_dpid[f"s{op[1]}"]
        if core.state.switches[dpid].connected:
            changes.append(core.switch_lost(dpid, now))
        else:
            ports = {p: True for p in core.wiring.ports_of(dpid)}
            for i, (pa, pb) in enumerate(core.wiring.link_ports):
                a, b = core.wiring.link_ends[i]
                if not net.link_up[i]:
                    if core.wiring.node_dpid[a] == dpid:
                        ports[pa] = False
                    if core.wiring.node_dpid[b] == dpid:
                        ports[pb] = False
            changes.append(core.switch_connected(dpid, ports, now))
            # the app applies the connect change before the reconcile read
            for c in changes:
                apply_and_confirm(core, net, c, now)
            changes = [core.reconcile(dpid, flow_entries(net, dpid), now)]
    elif kind == "flows_removed":
        dpid = core.wiring.node_dpid[f"s{op[1]}"]
        sw = net.switches[dpid]
        gone = [f for f in sw.flows() if f.table_id == 1 and f.priority > 0]
        for table in sw.tables.values():
            table[:] = [f for f in table if f not in gone]
        entries = [FlowEntry(f.table_id, f.priority, tuple(sorted(f.match.items())), (),
                             f.cookie) for f in gone]
        changes.append(core.flows_removed(dpid, entries, now))
    elif kind == "learn":
        dpid = core.wiring.node_dpid[f"s{op[1]}"]
        # the same host may show up at another switch: it moves
        ip, mac = f"10.9.0.{op[2] + 1}", f"02:00:09:00:00:{op[2] + 1:02x}"
        port_no = 40 + 2 * op[2] + op[3]  # another port on the same switch: moved too
        result = core.packet_in(dpid, port_no, arp_from(mac, ip, "10.0.0.1"), now)
        if result.change is not None:
            changes.append(result.change)
    elif kind == "tick":
        changes.append(core.tick(now + 100.0))
    for c in changes:
        apply_and_confirm(core, net, c, now)


@given(scenarios())
@examples(150)
def test_incremental_plan_equals_a_fresh_plan(case: tuple[Topology, list[tuple[Any, ...]]]
                                              ) -> None:
    t, ops = case
    core = ControllerCore(t, load_intents=False)
    net = FakeNetwork(core.wiring)
    bring_up(core, net)
    check_exact(core, net)
    now = NOW
    for op in ops:
        run_op(core, net, t, op, now)
        check_exact(core, net)
        check_traffic(core, net, t)
        now += 1.0


def test_national_cut_and_return_equals_fresh_and_moves_only_crossing_intents() -> None:
    t = load_topology(topology_file("national"))
    core = ControllerCore(t)
    net = FakeNetwork(core.wiring)
    bring_up(core, net)
    # the link most intents use
    use: Counter[frozenset[str]] = Counter()
    for i in core.intents():
        for hop in zip(i.path or (), (i.path or ())[1:], strict=False):
            use[frozenset(hop)] += 1
    pair = use.most_common(1)[0][0]
    k = next(k for k, lk in enumerate(t.links) if frozenset((lk.a, lk.b)) == pair)
    before = {i.id: i.path for i in core.intents()}
    run_op(core, net, t, ("link", k), NOW)
    check_exact(core, net)
    moved = {i.id for i in core.intents() if i.path != before[i.id]}
    assert moved and all(pair <= set(before[i] or ()) for i in moved)
    run_op(core, net, t, ("link", k), NOW + 1)
    check_exact(core, net)
    assert {i.id: i.path for i in core.intents()} == before


# --- message fast paths ------------------------------------------------------------------------

MATCHES = [
    {"eth_type": 0x0800, "ipv4_dst": "10.0.0.2"},
    {"eth_type": 0x0800, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2"},
    {"eth_type": 0x0800, "ipv4_src": "10.0.0.1", "ipv4_dst": "192.168.7.20", "ip_proto": 6,
     "tcp_dst": 80, "tcp_src": 1234, "ip_dscp": 46},
    {"eth_type": 0x0800, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2", "ip_proto": 17,
     "udp_src": 53, "udp_dst": 5353},
    {"eth_type": 0x88CC},
    {},
    {"in_port": 3, "eth_type": 0x0800, "ipv4_dst": "10.0.0.2"},
    {"eth_type": 0x0800, "eth_dst": "02:00:00:00:00:01"},  # not a fast field: the slow path
    {"eth_type": 0x0800, "ipv4_dst": ("10.0.0.0", "255.255.255.0")},  # masked: slow path
]


@pytest.mark.parametrize("match", MATCHES)
def test_fast_match_equals_os_kens(match: dict[str, Any]) -> None:
    entry = FlowEntry(1, 100, tuple(sorted(match.items())), (("output", 3),), 7)
    ours = openflow._match(entry.match)
    theirs = parser.OFPMatch(**match)
    assert ours._fields2 == theirs._fields2
    buf_a, buf_b = bytearray(), bytearray()
    ours.serialize(buf_a, 0)
    theirs.serialize(buf_b, 0)
    assert buf_a == buf_b


def test_flowmods_are_fresh_objects_with_os_kens_bytes() -> None:
    entry = FlowEntry(1, 100, (("eth_type", 0x0800), ("ipv4_dst", "10.0.0.2"),
                               ("ipv4_src", "10.0.0.1")), (("output", 3),), 7)
    a, b = openflow.flowmod_add(entry), openflow.flowmod_add(entry)
    assert a is not b
    slow = parser.OFPFlowMod(
        datapath=None, cookie=7, cookie_mask=0, table_id=1, command=ofp.OFPFC_ADD,
        idle_timeout=0, hard_timeout=0, priority=100, buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, flags=ofp.OFPFF_SEND_FLOW_REM,
        match=parser.OFPMatch(eth_type=0x0800, ipv4_src="10.0.0.1", ipv4_dst="10.0.0.2"),
        instructions=[parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionOutput(3, ofp.OFPCML_NO_BUFFER)])])
    dp = SimpleNamespace(ofproto=ofp, ofproto_parser=parser)
    for m, xid in ((a, 5), (b, 6), (slow, 5)):
        m.datapath = dp
        m.set_xid(xid)  # os-ken asserts a message is given an xid once: copies must be fresh
        m.serialize()
    assert bytes(a.buf) == bytes(slow.buf)
    assert bytes(b.buf)[8:] == bytes(slow.buf)[8:] and b.xid == 6 and a.xid == 5
    d = openflow.flowmod_delete_strict(entry)
    assert (d.command, d.cookie, d.cookie_mask) == (ofp.OFPFC_DELETE_STRICT, 7,
                                                    openflow.ALL_COOKIE_BITS)
    assert d.xid is None and d.datapath is None


def test_flow_entries_pickle_and_hash_by_value() -> None:
    e = FlowEntry(2, 100, (("eth_type", 0x0800), ("ipv4_dst", "10.0.0.9")),
                  (("output", 1),), 9)
    same = FlowEntry(2, 100, (("eth_type", 0x0800), ("ipv4_dst", "10.0.0.9")),
                     (("output", 1),), 9)
    other = FlowEntry(2, 100, (("eth_type", 0x0800), ("ipv4_dst", "10.0.0.9")),
                      (("output", 2),), 9)
    back = pickle.loads(pickle.dumps(e))
    assert e == same == back and hash(e) == hash(same) == hash(back)
    assert e != other and len({e, same, back, other}) == 2
    assert repr(e).startswith("FlowEntry(table_id=2") and "_hash" not in repr(e)


# --- reconciliation record ---------------------------------------------------------------------

def test_reconcile_reports_the_flows_read(caplog: pytest.LogCaptureFixture) -> None:
    t = load_topology(topology_file("diamond"))
    core = ControllerCore(t)
    net = FakeNetwork(core.wiring)
    bring_up(core, net)
    dpid = core.wiring.node_dpid["s2"]
    have = flow_entries(net, dpid)
    wanted = len(core.installed_plan().entries(dpid))
    strays = [FlowEntry(1, 7, (("eth_type", 0x0800), ("ipv4_dst", f"10.9.9.{k}")),
                        (("output", 1),), 0) for k in (1, 2)]
    changed = [e for e in have if e.table_id == 2 and e.priority == 100][0]
    moved = FlowEntry(changed.table_id, changed.priority, changed.match, (("output", 99),),
                      changed.cookie)
    # one flow lost, one changed, two strays: more flows read than wanted
    read = [e for e in have if e != changed][1:] + strays + [moved]
    apply_and_confirm(core, net, core.switch_connected(
        dpid, dict.fromkeys(core.wiring.ports_of(dpid), True), NOW), NOW)
    with caplog.at_level(logging.INFO, logger="controller.network.core"):
        change = core.reconcile(dpid, read, NOW)
    rec = [e for e in core.state.events if e["kind"] == "reconciled"][-1]
    assert rec["read"] == len(read) == wanted + 1
    assert (rec["added"], rec["deleted"]) == (2, 2)  # lost + changed; the strays
    assert rec["kept"] == len(read) - 3  # all but the strays and the changed one
    assert f"reconciled: {len(read)} flows read, 2 added, 2 deleted" in caplog.text
    assert set(change.deletes[dpid]) == set(strays)
    assert core.installed_plan().entries(dpid) == core.wanted_plan().entries(dpid)


def test_intent_to_a_learned_host_follows_it_to_another_port() -> None:
    """A host that moves to another port of the same switch keeps its intents' paths; only
    the last hop changes (no re-route marks the intent: the host change must)."""
    t = topology_from_dict({
        "name": "line", "nodes": [{"name": "s0"}, {"name": "s1"}],
        "links": [{"a": "s0", "b": "s1", "latency_ms": 1.0, "cost": 1.0}]})
    core = ControllerCore(t, load_intents=False)
    net = FakeNetwork(core.wiring)
    bring_up(core, net)
    run_op(core, net, t, ("learn", 1, 0, 0), NOW)
    run_op(core, net, t, ("to_learned", 0, 0, 5.0), NOW)
    (intent,) = core.intents()
    assert intent.state == "installed" and intent.path == ("s0", "s1")
    s1 = core.wiring.node_dpid["s1"]
    outs = {e.instructions for e in core.installed_plan().entries(s1)
            if e.table_id == 1 and e.priority > 0}
    assert outs == {(("pop_mpls", 0x0800), ("output", 40))}  # the tunnel's egress
    run_op(core, net, t, ("learn", 1, 0, 1), NOW + 1)
    check_exact(core, net)
    outs = {e.instructions for e in core.installed_plan().entries(s1)
            if e.table_id == 1 and e.priority > 0}
    assert outs == {(("pop_mpls", 0x0800), ("output", 41))}
    assert core.intent(intent.id).path == ("s0", "s1")
