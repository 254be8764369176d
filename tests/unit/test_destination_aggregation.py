"""Table 2 aggregated by default routes (``controller/network/destinations.py``) changes no
path: every host pair's walk through the fake flow tables equals the least-latency path a
networkx oracle finds, before and after links fail, and an address no host has never loops.
Random networks get link latencies that are distinct powers of two, so every path has its own
latency and the least-latency path is unique: the walk must be exactly that path."""

from __future__ import annotations

import ipaddress
from typing import Any

import networkx as nx
import pytest
from fakeoftable import FakeNetwork, apply_and_confirm, ipv4, running
from hypothesis import given
from hypothesis import strategies as st
from oracles import examples

from controller.network.core import ControllerCore
from controller.network.destinations import (
    DEFAULT_ROUTE_COOKIE,
    covering_prefix,
    default_routes,
)
from controller.network.flows import TABLE_DESTINATIONS
from controller.topology.files import load_topology_argument
from controller.topology.loader import topology_from_dict
from controller.topology.model import Topology


def _connected_pairs(draw: st.DrawFn, n: int, extra: int, parallel: bool
                     ) -> list[tuple[int, int]]:
    """The ends of a random spanning tree of ``n`` switches and up to ``extra`` more links
    (parallel ones only if ``parallel``)."""
    pairs = [(draw(st.integers(0, v - 1)), v) for v in range(1, n)]
    for _ in range(draw(st.integers(0, extra))):
        a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        if a != b and (parallel or ((a, b) not in pairs and (b, a) not in pairs)):
            pairs.append((a, b))
    return pairs


@st.composite
def sparse_networks(draw: st.DrawFn) -> tuple[Topology, list[int]]:
    """A random connected network of 4-14 switches (a random spanning tree and a few more
    links: sparse, as carrier maps are, so most switches have a default route), one host per
    switch, link latencies distinct powers of two, and a few links to cut in turn."""
    n = draw(st.integers(4, 14))
    pairs = _connected_pairs(draw, n, 4, parallel=False)
    exponents = draw(st.permutations(range(len(pairs))))
    doc = {
        "name": "sparse",
        "nodes": [{"name": f"s{i}"} for i in range(n)],
        "links": [{"a": f"s{a}", "b": f"s{b}", "latency_ms": 2.0 ** e / 64}
                  for (a, b), e in zip(pairs, exponents, strict=True)],
    }
    cuts = draw(st.lists(st.integers(0, len(pairs) - 1), min_size=1, max_size=3, unique=True))
    return topology_from_dict(doc), cuts


def _graph(t: Topology, down: set[int]) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(n.name for n in t.nodes)
    for i, lk in enumerate(t.links):
        if i not in down:
            g.add_edge(lk.a, lk.b, latency_ms=lk.latency_ms)
    return g


def _unused_address(t: Topology) -> str:
    """An address inside the hosts' block that no host has."""
    used = {h.ip for h in t.hosts}
    net, _ = covering_prefix(int(ipaddress.IPv4Address(a)) for a in used) or ("10.0.0.0", 8)
    base = [int(x) for x in net.split(".")]
    for last in range(1, 255):
        ip = ".".join(map(str, base[:3] + [last]))
        if ip not in used:
            return ip
    raise AssertionError("no free address in the block")


def _check_walks(core: ControllerCore, net: FakeNetwork, t: Topology, down: set[int]) -> None:
    g = _graph(t, down)
    names = core.wiring.dpid_node
    for hs in t.hosts:
        for hd in t.hosts:
            if hs.name == hd.name:
                continue
            tr = net.trace(hs.name, ipv4(hs.ip, hd.ip))
            assert not tr.loop, (hs.name, hd.name, tr)
            if not nx.has_path(g, hs.node, hd.node):
                assert tr.delivered == [], (hs.name, hd.name, tr)
                continue
            want = nx.dijkstra_path(g, hd.node, hs.node, weight="latency_ms")[::-1]
            assert tr.delivered == [hd.name], (hs.name, hd.name, tr)
            assert [names[d] for d in tr.dpids()] == want, (hs.name, hd.name)
        stray = net.trace(hs.name, ipv4(hs.ip, _unused_address(t)))
        assert not stray.loop and not stray.delivered, (hs.name, stray)


def _cut(core: ControllerCore, net: FakeNetwork, t: Topology, i: int, now: float) -> None:
    net.set_link(i, False)
    for node, port in zip((t.links[i].a, t.links[i].b), core.wiring.link_ports[i], strict=True):
        apply_and_confirm(core, net, core.port_status(core.wiring.node_dpid[node], port, False,
                                                      now), now)


@given(sparse_networks())
@examples(40)
def test_aggregated_walks_equal_the_least_latency_paths(case: Any) -> None:
    t, cuts = case
    core, net = running(t, load_intents=False)
    _check_walks(core, net, t, set())
    down: set[int] = set()
    for k, i in enumerate(cuts):
        _cut(core, net, t, i, 2.0 + k)
        down.add(i)
        _check_walks(core, net, t, down)


def _table2_per_switch(core: ControllerCore) -> list[int]:
    core.router.refresh()
    return [sum(e.table_id == TABLE_DESTINATIONS for e in core.router.wanted(d))
            for d in sorted(core.wiring.node_dpid.values())]


def test_national_walks_and_fewer_flows(national: Topology) -> None:
    core, net = running(national, load_intents=False)
    _check_walks(core, net, national, set())
    per_switch = _table2_per_switch(core)
    hosts = len(national.hosts)
    # without defaults every switch holds one flow per host it can reach
    assert sum(per_switch) < 0.6 * hosts * len(per_switch), per_switch
    assert core.router.owner_plan.owner(DEFAULT_ROUTE_COOKIE)


def test_kdl_holds_a_fraction_of_the_per_host_flows() -> None:
    t = load_topology_argument("zoo:Kdl")
    core = ControllerCore(t, load_intents=False)
    per_switch = _table2_per_switch(core)
    assert len(per_switch) == 754
    # 754 flows per switch without aggregation
    assert sum(per_switch) / len(per_switch) < 754 / 5, sum(per_switch) / len(per_switch)


def test_default_routes_break_a_cycle_where_it_costs_least() -> None:
    # 1 and 2 send most hosts to each other: a loop for unknown addresses; 1 has fewer hosts
    # behind its default, so 1 keeps exact flows and no default
    counts = {1: {10: 3, 11: 1}, 2: {20: 5}, 3: {30: 2}}
    next_switch = {(1, 10): 2, (1, 11): 3, (2, 20): 1, (3, 30): 2}
    assert default_routes(counts, next_switch) == {2: 20, 3: 30}


def test_a_default_route_needs_two_hosts_and_ties_take_the_lowest_port() -> None:
    next_switch = {(1, 1): 2, (1, 2): 3, (2, 1): 4}
    assert default_routes({1: {1: 2, 2: 2}, 2: {1: 1}}, next_switch) == {1: 1}


@pytest.mark.parametrize(("addresses", "want"), [
    (["10.0.0.1"], ("10.0.0.1", 32)),
    (["10.0.0.1", "10.0.0.2"], ("10.0.0.0", 30)),
    (["10.0.1.7", "10.0.3.250"], ("10.0.0.0", 22)),
    (["10.0.0.1", "192.168.0.1"], ("0.0.0.0", 0)),
    ([], None),
])
def test_covering_prefix(addresses: list[str], want: tuple[str, int] | None) -> None:
    assert covering_prefix(int(ipaddress.IPv4Address(a)) for a in addresses) == want


@st.composite
def tied_networks(draw: st.DrawFn) -> tuple[Topology, list[int]]:
    """A random connected network of 3-9 switches whose latencies are quarters from 0 to 2,
    parallel links allowed: many equal-latency alternatives and zero-latency links, where
    which of the tied next hops the engine picks depends on its tie-break alone."""
    n = draw(st.integers(3, 9))
    pairs = _connected_pairs(draw, n, 6, parallel=True)
    doc = {
        "name": "tied",
        "nodes": [{"name": f"s{i}"} for i in range(n)],
        "links": [{"a": f"s{a}", "b": f"s{b}", "latency_ms": draw(st.integers(0, 8)) / 4}
                  for a, b in pairs],
    }
    # a link index to flip, or -1 - k: switch k's connection goes (or comes back)
    flips = draw(st.lists(st.integers(-n, len(pairs) - 1), min_size=1, max_size=8))
    return topology_from_dict(doc), flips


@given(tied_networks())
@examples(60)
def test_kept_trees_equal_fresh_trees_after_link_changes(case: Any) -> None:
    """A tree kept across a change of links or switches (not recomputed because the change
    cannot touch it, or extended by a switch that joined it as a leaf) is the tree a fresh
    reverse Dijkstra gives, ties included."""
    t, flips = case
    core, net = running(t, load_intents=False)
    dest = core.router.destinations
    st_ = core.state
    lost: set[int] = set()
    for k, i in enumerate(flips):
        now = 2.0 + k
        if i < 0:  # a switch lost, or connected again
            dpid = core.wiring.node_dpid[f"s{-1 - i}"]
            if dpid in lost:
                lost.discard(dpid)
                ports = {p: net.port_live(dpid, p) for p in core.wiring.ports_of(dpid)}
                apply_and_confirm(core, net, core.switch_connected(dpid, ports, now), now)
            else:
                lost.add(dpid)
                apply_and_confirm(core, net, core.switch_lost(dpid, now), now)
        else:
            up = not net.link_up[i]
            net.set_link(i, up)
            for node, port in zip((t.links[i].a, t.links[i].b), core.wiring.link_ports[i],
                                  strict=True):
                apply_and_confirm(core, net, core.port_status(core.wiring.node_dpid[node],
                                                              port, up, now), now)
        core.router.refresh()
        for root, kept in dest._trees.items():
            fresh = {core.wiring.node_dpid[u]: st_.out_port(u, lid)
                     for u, lid in st_.graph.shortest_path_tree(root, "latency").items()}
            assert kept == fresh, (root, k)
