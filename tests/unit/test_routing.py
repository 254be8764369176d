"""Path choice, fallback and destination forwarding, checked by tracing packets through the fake
flow tables (not by reading the router's own answer)."""

from __future__ import annotations

from typing import Any

import networkx as nx
import pytest
from fakeoftable import FakeNetwork, apply_and_confirm, ipv4, running
from hypothesis import given
from hypothesis import strategies as st
from oracles import examples

from controller.network.core import ControllerCore
from controller.network.flows import TABLE_INTENTS, cookie_owner
from controller.topology.loader import topology_from_dict
from controller.topology.model import IntentSpec, Match, Topology


def switches_of(core: ControllerCore, trace_dpids: list[int]) -> list[str]:
    names = core.wiring.dpid_node
    return [names[d] for d in trace_dpids]


def link_down(
    core: ControllerCore, net: FakeNetwork, a: str, b: str, now: float, up: bool = False
) -> None:
    """Cut (or restore) the link a-b: the fake wire first, then both port-status events."""
    t = core.state.topology
    (i,) = [i for i, lk in enumerate(t.links) if {lk.a, lk.b} == {a, b}]
    net.set_link(i, up)
    pa, pb = core.wiring.link_ports[i]
    for node, port in ((t.links[i].a, pa), (t.links[i].b, pb)):
        apply_and_confirm(
            core, net, core.port_status(core.wiring.node_dpid[node], port, up, now), now
        )


def h(t: Topology, name: str) -> str:
    return t.host(name).ip


def test_tight_bound_takes_the_fast_path(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    intent, change = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3.0), 2.0)
    apply_and_confirm(core, net, change, 2.0)
    tr = net.trace("h1", ipv4(h(diamond, "h1"), h(diamond, "h2")))
    assert tr.delivered == ["h2"] and not tr.loop
    assert switches_of(core, tr.dpids()) == ["s1", "s2", "s4"]
    assert intent.state == "installed"
    # the hop at s1 came from the intent's flow (table 1), not destination forwarding
    s1 = core.wiring.node_dpid["s1"]
    owners = {
        cookie_owner(f.cookie)
        for f in net.flows(s1)
        if f.table_id == TABLE_INTENTS and f.match.get("ipv4_src") == h(diamond, "h1")
    }
    assert owners == {("intent", intent.id)}


def test_loose_bound_takes_the_cheap_path(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    _, change = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=15.0), 2.0)
    apply_and_confirm(core, net, change, 2.0)
    tr = net.trace("h1", ipv4(h(diamond, "h1"), h(diamond, "h2")))
    assert tr.delivered == ["h2"]
    assert switches_of(core, tr.dpids()) == ["s1", "s3", "s4"]
    # other traffic between the same hosts is not the intent's: least latency via s2
    tr = net.trace("h2", ipv4(h(diamond, "h2"), h(diamond, "h1")))
    assert switches_of(core, tr.dpids()) == ["s4", "s2", "s1"]


def test_match_narrows_the_intent(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    spec = IntentSpec("h1", "h2", max_latency_ms=15.0, match=Match(ip_proto=17, dst_port=5004))
    apply_and_confirm(core, net, core.add_intent(spec, 2.0)[1], 2.0)
    src, dst = h(diamond, "h1"), h(diamond, "h2")
    video = net.trace("h1", ipv4(src, dst, ip_proto=17, udp_dst=5004))
    other = net.trace("h1", ipv4(src, dst, ip_proto=17, udp_dst=53))
    assert switches_of(core, video.dpids()) == ["s1", "s3", "s4"]
    assert switches_of(core, other.dpids()) == ["s1", "s2", "s4"]


def test_infeasible_bound_is_reported_and_traffic_goes_best_effort(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    intent, change = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=1.0), 2.0)
    apply_and_confirm(core, net, change, 2.0)
    assert intent.state == "infeasible"
    assert "max_latency_ms 1.0" in intent.reason and "2.00 ms" in intent.reason
    assert "s1-s2-s4" in intent.reason
    tr = net.trace("h1", ipv4(h(diamond, "h1"), h(diamond, "h2")))
    assert tr.delivered == ["h2"]
    assert switches_of(core, tr.dpids()) == ["s1", "s2", "s4"]  # least latency, table 2
    # the intent keeps one flow, at the ingress, that hands its traffic to table 2
    mine = [
        (d, f)
        for d in net.switches
        for f in net.flows(d)
        if cookie_owner(f.cookie) == ("intent", intent.id)
    ]
    assert len(mine) == 1 and mine[0][0] == core.wiring.node_dpid["s1"]
    (inst,) = mine[0][1].instructions
    assert inst.table_id == 2


def test_drop_fallback_drops_at_the_ingress(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False, fallback="drop")
    intent, change = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=1.0), 2.0)
    apply_and_confirm(core, net, change, 2.0)
    assert intent.state == "infeasible"
    tr = net.trace("h1", ipv4(h(diamond, "h1"), h(diamond, "h2")))
    assert tr.delivered == [] and tr.dropped == [core.wiring.node_dpid["s1"]]
    # other traffic is untouched
    assert net.trace("h2", ipv4(h(diamond, "h2"), h(diamond, "h1"))).delivered == ["h1"]


def test_fast_intent_degrades_when_its_link_fails_and_returns(diamond: Topology) -> None:
    core, net = running(diamond)  # file intents: fast (h1->h2, 3 ms) and cheap (h2->h1, 15 ms)
    fast = next(i for i in core.intents() if i.name == "fast")
    assert fast.state == "installed"
    link_down(core, net, "s2", "s4", 3.0)
    assert fast.state == "degraded"
    assert "max_latency_ms 3.0" in fast.reason and "10.00 ms" in fast.reason
    tr = net.trace("h1", ipv4(h(diamond, "h1"), h(diamond, "h2")))
    assert tr.delivered == ["h2"] and not tr.dead_links  # best effort over s3
    assert switches_of(core, tr.dpids()) == ["s1", "s3", "s4"]
    link_down(core, net, "s2", "s4", 4.0, up=True)
    assert fast.state == "installed"
    tr = net.trace("h1", ipv4(h(diamond, "h1"), h(diamond, "h2")))
    assert switches_of(core, tr.dpids()) == ["s1", "s2", "s4"]
    causes = [(c.old_path, c.new_path) for c in fast.history]
    assert causes[-2:] == [(("s1", "s2", "s4"), None), (None, ("s1", "s2", "s4"))]


def test_intent_reroutes_when_the_bound_allows_and_moves_back(diamond: Topology) -> None:
    core, net = running(diamond)
    cheap = next(i for i in core.intents() if i.name == "cheap")  # h2 -> h1, 15 ms
    fields = ipv4(h(diamond, "h2"), h(diamond, "h1"))
    assert switches_of(core, net.trace("h2", fields).dpids()) == ["s4", "s3", "s1"]
    link_down(core, net, "s1", "s3", 3.0)
    assert cheap.state == "installed"
    tr = net.trace("h2", fields)
    assert tr.delivered == ["h1"] and switches_of(core, tr.dpids()) == ["s4", "s2", "s1"]
    link_down(core, net, "s1", "s3", 4.0, up=True)
    assert switches_of(core, net.trace("h2", fields).dpids()) == ["s4", "s3", "s1"]
    assert [c.new_path for c in cheap.history][-2:] == [("s4", "s2", "s1"), ("s4", "s3", "s1")]


def test_bandwidth_is_reserved_and_reported(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    a, ch = core.add_intent(
        IntentSpec("h1", "h2", max_latency_ms=3.0, min_bandwidth_mbps=800, match=Match(ip_proto=6)),
        2.0,
    )
    apply_and_confirm(core, net, ch, 2.0)
    b, ch = core.add_intent(
        IntentSpec(
            "h1", "h2", max_latency_ms=3.0, min_bandwidth_mbps=800, match=Match(ip_proto=17)
        ),
        2.0,
    )
    apply_and_confirm(core, net, ch, 2.0)
    assert a.state == "installed" and b.state == "infeasible"
    assert "800 Mbps" in b.reason and "bottleneck" in b.reason and "200" in b.reason
    # a loose bound fits on the other path
    c, ch = core.add_intent(
        IntentSpec(
            "h1", "h2", max_latency_ms=12.0, min_bandwidth_mbps=800, match=Match(ip_proto=1)
        ),
        2.0,
    )
    apply_and_confirm(core, net, ch, 2.0)
    tr = net.trace("h1", ipv4(h(diamond, "h1"), h(diamond, "h2"), ip_proto=1))
    assert c.state == "installed" and switches_of(core, tr.dpids()) == ["s1", "s3", "s4"]


def test_disconnected_reason(diamond: Topology) -> None:
    core, net = running(diamond)
    link_down(core, net, "s2", "s4", 3.0)
    link_down(core, net, "s3", "s4", 3.0)
    fast = next(i for i in core.intents() if i.name == "fast")
    assert fast.reason == "no path: s1 and s4 are disconnected"


def _traced_latency_ms(core: ControllerCore, hops: list[tuple[int, int]]) -> float:
    total = 0.0
    for dpid, port in hops:
        peer = core.wiring.peer(dpid, port)
        if peer is not None and peer[0] == "link":
            total += core.state.topology.links[peer[1]].latency_ms
    return total


def _nx_graph(t: Topology) -> nx.Graph:
    g = nx.Graph()
    for lk in t.links:  # parallel links: the fastest one counts
        if not g.has_edge(lk.a, lk.b) or g[lk.a][lk.b]["latency_ms"] > lk.latency_ms:
            g.add_edge(lk.a, lk.b, latency_ms=lk.latency_ms)
    return g


def _check_all_pairs(t: Topology, srcs: list[str], dsts: list[str]) -> int:
    core, net = running(t, load_intents=False)
    g = _nx_graph(t)
    checked = 0
    for s in srcs:
        for d in dsts:
            if s == d:
                continue
            hs, hd = t.host(s), t.host(d)
            tr = net.trace(s, ipv4(hs.ip, hd.ip))
            assert tr.delivered == [d], (s, d, tr)
            assert not tr.loop and not tr.to_controller and not tr.dropped
            want = nx.shortest_path_length(g, hs.node, hd.node, weight="latency_ms")
            assert _traced_latency_ms(core, tr.hops) == pytest.approx(want, abs=1e-9), (s, d)
            checked += 1
    return checked


@pytest.mark.parametrize("name", ["triangle", "ring", "diamond"])
def test_destination_forwarding_reaches_every_host(name: str, shipped: Any) -> None:
    t = shipped(name)
    names = [x.name for x in t.hosts]
    assert _check_all_pairs(t, names, names) == len(names) * (len(names) - 1)


def test_national_cities_reach_clusters_on_least_latency_paths(national: Topology) -> None:
    t = national
    cities = [x.name for x in t.hosts if t.node(x.node).kind == "city"]
    clusters = [x.name for x in t.hosts if t.node(x.node).kind == "dc_cluster"]
    assert cities and clusters
    n = _check_all_pairs(t, cities, clusters)
    assert n == len(cities) * len(clusters)


def test_national_file_intents_are_routed_within_their_bounds(national: Topology) -> None:
    t = national
    core, net = running(t)
    g = _nx_graph(t)
    for intent in core.intents():
        spec = intent.spec
        src, dst = t.host(spec.src), t.host(spec.dst)
        best = nx.shortest_path_length(g, src.node, dst.node, weight="latency_ms")
        if best > spec.max_latency_ms + 1e-9:
            assert intent.state == "infeasible" and "below the best" in intent.reason
            continue
        assert intent.state == "installed", intent.reason
        fields = ipv4(src.ip, dst.ip)
        m = spec.match
        if m is not None and m.ip_proto is not None:
            fields["ip_proto"] = m.ip_proto
            proto = {6: "tcp", 17: "udp"}.get(m.ip_proto)
            if proto and m.src_port is not None:
                fields[f"{proto}_src"] = m.src_port
            if proto and m.dst_port is not None:
                fields[f"{proto}_dst"] = m.dst_port
        if m is not None and m.dscp is not None:
            fields["ip_dscp"] = m.dscp
        tr = net.trace(spec.src, fields)
        assert tr.delivered == [spec.dst]
        assert _traced_latency_ms(core, tr.hops) <= spec.max_latency_ms + 1e-9
        assert switches_of(core, tr.dpids()) == list(intent.path)


# --- property: random networks, random failures, checked against brute force -----------------


@st.composite
def networks(draw: st.DrawFn) -> tuple[Topology, list[tuple[int, int, float]], list[int]]:
    """A random connected multigraph (3-6 switches, parallel and zero-latency links allowed,
    dyadic values so sums are exact), intents (src, dst node index, bound) and a sequence of
    link indices to toggle."""
    n = draw(st.integers(3, 6))
    quarter = st.integers(0, 24).map(lambda q: q / 4)
    links = []
    for v in range(1, n):  # a random spanning tree keeps it connected at the start
        links.append((draw(st.integers(0, v - 1)), v))
    for _ in range(draw(st.integers(0, 5))):
        a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        if a != b:
            links.append((a, b))
    doc = {
        "name": "random",
        "nodes": [{"name": f"s{i}"} for i in range(n)],
        "links": [
            {"a": f"s{a}", "b": f"s{b}", "latency_ms": draw(quarter), "cost": draw(quarter)}
            for a, b in links
        ],
    }
    intents = [
        (
            draw(st.integers(0, n - 1)),
            draw(st.integers(0, n - 1)),
            draw(st.integers(1, 40).map(lambda q: q / 4)),
        )
        for _ in range(draw(st.integers(1, 4)))
    ]
    intents = [(a, b, bound) for a, b, bound in intents if a != b]
    # links go down, then come back in reverse order: moves off broken paths and moves of
    # live traffic back onto the better paths both happen
    downs = draw(st.lists(st.integers(0, len(links) - 1), min_size=1, max_size=3))
    toggles = downs + downs[::-1]
    return topology_from_dict(doc), intents, toggles


def _multigraph(t: Topology, up: list[bool]) -> nx.MultiGraph:
    g = nx.MultiGraph()
    g.add_nodes_from(n.name for n in t.nodes)
    for i, lk in enumerate(t.links):
        if up[i]:
            g.add_edge(lk.a, lk.b, key=i, latency_ms=lk.latency_ms, cost=lk.cost)
    return g


def _best_constrained_cost(g: nx.MultiGraph, a: str, b: str, bound: float) -> float | None:
    """Brute force: least cost among simple paths with latency <= bound."""
    best = None
    for path in nx.all_simple_edge_paths(g, a, b):
        lat = sum(g.edges[e]["latency_ms"] for e in path)
        cost = sum(g.edges[e]["cost"] for e in path)
        if lat <= bound + 1e-12 and (best is None or cost < best):
            best = cost
    return best


def _traced_cost(core: ControllerCore, hops: list[tuple[int, int]]) -> float:
    links = [core.wiring.link_peer(d, p) for d, p in hops]
    return sum(core.state.topology.links[lp[0]].cost for lp in links if lp is not None)


def _check_network(core: ControllerCore, net: FakeNetwork, t: Topology, intents: list[Any]) -> None:
    g = _multigraph(t, net.link_up)
    simple = nx.Graph()
    simple.add_nodes_from(g.nodes)
    for u, v, d in g.edges(data=True):
        if not simple.has_edge(u, v) or simple[u][v]["latency_ms"] > d["latency_ms"]:
            simple.add_edge(u, v, latency_ms=d["latency_ms"])
    # destination forwarding: every host reaches every host it is connected to, least latency
    for hs in t.hosts:
        for hd in t.hosts:
            if hs is hd:
                continue
            tr = net.trace(hs.name, ipv4(hs.ip, hd.ip))
            assert not tr.loop and not tr.dead_links
            if nx.has_path(simple, hs.node, hd.node):
                assert tr.delivered == [hd.name], (hs.name, hd.name, tr)
                want = nx.shortest_path_length(simple, hs.node, hd.node, weight="latency_ms")
                assert _traced_latency_ms(core, tr.hops) == pytest.approx(want, abs=1e-9)
            else:
                assert tr.delivered == []
    # intents: on an exact least-cost path within the bound, or reported and best effort
    for intent in intents:
        spec = intent.spec
        hs, hd = t.host(spec.src), t.host(spec.dst)
        best = _best_constrained_cost(g, hs.node, hd.node, spec.max_latency_ms)
        tr = net.trace(spec.src, ipv4(hs.ip, hd.ip, ip_proto=17))
        if best is None:
            assert intent.state in ("infeasible", "degraded") and intent.reason
        else:
            assert intent.state == "installed", intent.reason
            assert tr.delivered == [spec.dst]
            assert _traced_latency_ms(core, tr.hops) <= spec.max_latency_ms + 1e-9
            assert _traced_cost(core, tr.hops) == pytest.approx(best, abs=1e-9)


def _intent_packet(t: Topology, intent: Any) -> Any:
    hs, hd = t.host(intent.spec.src), t.host(intent.spec.dst)
    return ipv4(hs.ip, hd.ip, ip_proto=17)


@given(networks())
@examples(60)
def test_random_networks_with_failures_match_the_oracles(case: Any) -> None:
    t, specs, toggles = case
    core, net = running(t, load_intents=False)
    intents = []
    for a, b, bound in specs:
        intent, change = core.add_intent(
            IntentSpec(f"h-s{a}", f"h-s{b}", max_latency_ms=bound, match=Match(ip_proto=17)), 2.0
        )
        apply_and_confirm(core, net, change, 2.0)
        if "same traffic" not in intent.reason:  # a duplicate of an earlier one: not routed
            intents.append(intent)
    _check_network(core, net, t, intents)
    now = 3.0
    for i in toggles:
        up = not net.link_up[i]
        net.set_link(i, up)
        lk = t.links[i]
        pa, pb = core.wiring.link_ports[i]
        for node, port in ((lk.a, pa), (lk.b, pb)):
            labels = {x.id: x.mpls_label for x in intents}
            before_rides = {x.id: net.trace(x.spec.src, _intent_packet(t, x)) for x in intents}
            change = core.port_status(core.wiring.node_dpid[node], port, up, now)
            g = _multigraph(
                t, [a and b for a, b in zip(net.link_up, core.state.link_up, strict=True)]
            )
            packets = [(hs, hd, ipv4(hs.ip, hd.ip, ip_proto=proto))
                       for hs in t.hosts for hd in t.hosts if hs is not hd for proto in (6, 17)]
            # phase 1 holds only ingress flows onto a tunnel phase 0 makes (by its label or
            # by a head pointing at it), and such heads
            made = {cookie_owner(m.cookie)[1] for msgs in change.phase0.values()
                    for m in msgs[:-1] if cookie_owner(m.cookie)[0] == "tunnel"}
            head_target, first_segment = core.router.head_target, core.router.first_segment
            for msgs in change.phase1.values():
                for m in msgs[:-1]:
                    kind, oid = cookie_owner(m.cookie)
                    if kind == "intent":
                        label = core.intent(oid).mpls_label
                        assert label is not None and first_segment(label) in made, oid
                    else:
                        assert kind == "tunnel" and head_target(oid) in made, oid
            # make-before-break, switch by switch: the traffic of an intent that rode a
            # working tunnel is delivered after every single switch's update (phase 0 and
            # phase 1 reach switches in no particular order)
            live = [x for x in intents if labels[x.id] is not None
                    and before_rides[x.id].delivered == [x.spec.dst]]
            for phase in (change.phase0, change.phase1):
                for dpid in sorted(phase, reverse=now % 2 == 0):
                    net.apply(dpid, phase[dpid])
                    for x in live:
                        tr = net.trace(x.spec.src, _intent_packet(t, x))
                        assert tr.delivered == [x.spec.dst], (x.id, dpid, tr)
                # after phase 0 alone, and again after phase 1, every pair connected by links
                # that are up and known to be up (a link comes back when both ports report
                # up) is delivered: no blackhole, intent traffic included
                for hs, hd, pkt in packets:
                    if nx.has_path(g, hs.node, hd.node):
                        tr = net.trace(hs.name, pkt)
                        assert tr.delivered == [hd.name], (hs.name, hd.name, tr)
            net.apply_phase(change.phase2)
            core.confirm(change, now)
            now += 1.0
        _check_network(core, net, t, intents)
