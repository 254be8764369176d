"""Fast reroute (``controller.network.bypass``): with a link dead in the switches and the
controller not told, every intent whose tunnel crossed it is still delivered, over the link's
bypass, by the switches alone; each bypass is the least-latency way around its link (networkx
oracle); the groups and hops are what a fresh controller computes; off, the same cut loses the
traffic (the test can fail)."""

from __future__ import annotations

import random

import networkx as nx
import pytest
from fakeoftable import FakeNetwork, apply_and_confirm, ipv4, running
from test_core_batch import random_specs, traffic

from controller.network.core import ControllerCore
from controller.network.flows import (
    BYPASS_GROUP_BASE,
    BYPASS_IP_GROUP_BASE,
    OWNER_BYPASS,
    OWNER_ID_BITS,
)
from controller.network.service import ControllerService
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import IntentSpec, Topology


@pytest.fixture(scope="module")
def national() -> Topology:
    return load_topology(topology_file("national"))


def _crossed(core: ControllerCore, topology: Topology) -> dict[int, list[int]]:
    """link index -> ids of the intents whose path crosses it (the topology file's and the
    test's)"""
    ends = {frozenset((lk.a, lk.b)): i for i, lk in enumerate(topology.links)}
    out: dict[int, list[int]] = {}
    for intent in core.intents():
        if intent.path is not None and intent.links is not None:
            for lid in intent.links:
                out.setdefault(core.state.link_index(lid), []).append(intent.id)
    assert ends  # the map has links
    return out


def _with_intents(topology: Topology, n: int, seed: int, **kw: object
                  ) -> tuple[ControllerCore, FakeNetwork, dict[int, IntentSpec]]:
    core, net = running(topology, startup_grace_s=0.0, load_intents=False, **kw)
    specs = random_specs(topology, random.Random(seed), n, 5000, set())
    added, change = core.add_intents(specs, 1.0)
    apply_and_confirm(core, net, change, 1.0)
    return core, net, {i.id: s for i, s in zip(added, specs, strict=True)}


def test_a_dead_link_is_bypassed_by_the_switches_alone(national: Topology) -> None:
    core, net, specs = _with_intents(national, 300, 1, fast_reroute=True)
    crossed = _crossed(core, national)
    busiest = sorted(crossed, key=lambda i: -len(crossed[i]))[:12]
    assert len(crossed[busiest[0]]) >= 20
    for i in busiest:
        net.set_link(i, False)  # the switches see the port down; the controller is not told
        pa, pb = core.wiring.link_ports[i]
        a, b = core.wiring.link_ends[i]
        da, db = core.wiring.node_dpid[a], core.wiring.node_dpid[b]
        groups = core.router.group_plan()
        # the first hop of each end's bypass: (dpid, port out)
        bypass_out = {(da, groups[da][BYPASS_GROUP_BASE + pa][1][1]),
                      (db, groups[db][BYPASS_GROUP_BASE + pb][1][1])}
        for iid in crossed[i]:
            spec = specs[iid]
            tr = net.trace(spec.src, traffic(national, spec))
            assert tr.delivered_to == spec.dst, (i, spec, tr)
            assert not tr.dead_links and not tr.dropped and not tr.loop, (i, spec, tr)
            assert set(tr.hops) & bypass_out, (i, spec, tr.hops)
        net.set_link(i, True)


def test_without_fast_reroute_the_same_cut_loses_the_traffic(national: Topology) -> None:
    core, net, specs = _with_intents(national, 300, 1)
    crossed = _crossed(core, national)
    i = max(crossed, key=lambda k: len(crossed[k]))
    net.set_link(i, False)
    lost = [iid for iid in crossed[i]
            if net.trace(specs[iid].src, traffic(national, specs[iid])).dead_links]
    assert lost == crossed[i]


def _best_effort_across(topology: Topology, net: FakeNetwork, ends: set[tuple[int, int]]
                        ) -> list[tuple[str, str]]:
    """The host pairs whose plain IPv4 packets leave by one of ``ends`` ((dpid, port))."""
    hosts = [h.name for h in topology.hosts]
    out = []
    for a in hosts:
        for b in hosts:
            if a != b:
                tr = net.trace(a, ipv4(topology.host(a).ip, topology.host(b).ip))
                assert tr.delivered_to == b, (a, b, tr)
                if ends & set(tr.hops):
                    out.append((a, b))
    return out


@pytest.mark.parametrize("fast_reroute", [True, False])
def test_best_effort_traffic_takes_the_bypass_too(national: Topology,
                                                  fast_reroute: bool) -> None:
    """Plain IPv4 on the destination flows (no intents at all): across each of 8 links, every
    host pair whose packets crossed it is delivered over the link's IPv4 bypass with the link
    dead and the controller not told; without fast reroute the same cut loses every one."""
    core, net = running(national, startup_grace_s=0.0, load_intents=False,
                        fast_reroute=fast_reroute)
    checked = 0
    for i in range(0, len(national.links), max(1, len(national.links) // 8))[:8]:
        a, b = core.wiring.link_ends[i]
        pa, pb = core.wiring.link_ports[i]
        da, db = core.wiring.node_dpid[a], core.wiring.node_dpid[b]
        pairs = _best_effort_across(national, net, {(da, pa), (db, pb)})
        groups = core.router.group_plan()
        net.set_link(i, False)
        for src, dst in pairs:
            tr = net.trace(src, ipv4(national.host(src).ip, national.host(dst).ip))
            if not fast_reroute:
                assert tr.dead_links and tr.delivered_to is None, (i, src, dst, tr)
                continue
            assert tr.delivered_to == dst, (i, src, dst, tr)
            assert not tr.dead_links and not tr.dropped and not tr.loop, (i, src, dst, tr)
            firsts = {(da, groups[da][BYPASS_IP_GROUP_BASE + pa][-1][1]),
                      (db, groups[db][BYPASS_IP_GROUP_BASE + pb][-1][1])}
            assert set(tr.hops) & firsts, (i, src, dst, tr.hops)
        checked += len(pairs)
        net.set_link(i, True)
    assert checked >= 50


def test_each_bypass_is_the_least_latency_way_around_its_link(national: Topology) -> None:
    core, _net = running(national, startup_grace_s=0.0, fast_reroute=True)
    g = nx.MultiGraph()
    for i, lk in enumerate(national.links):
        g.add_edge(lk.a, lk.b, key=i, latency=lk.latency_ms)
    groups = core.router.group_plan()
    checked = 0
    for i, lk in enumerate(national.links):
        h = g.copy()
        h.remove_edge(lk.a, lk.b, key=i)
        for node, far, port in ((lk.a, lk.b, core.wiring.link_ports[i][0]),
                                (lk.b, lk.a, core.wiring.link_ports[i][1])):
            dpid = core.wiring.node_dpid[node]
            bypass = core.router.bypasses.bypass(dpid, port)
            buckets = groups[dpid][BYPASS_GROUP_BASE + port]
            assert buckets[0] == (port, port)
            if not nx.has_path(h, node, far):
                assert bypass is None and len(buckets) == 1, (lk, bypass)
                continue
            want = nx.shortest_path_length(h, node, far, weight="latency")
            assert bypass is not None and bypass.path[0] == node and bypass.path[-1] == far
            assert bypass.latency_ms == pytest.approx(want, abs=1e-9), (lk, bypass.path)
            assert len(buckets) == 2 and buckets[1][0] != port
            assert len(bypass.labels) == len(bypass.path) - 1  # every switch after the first
            checked += 1
    assert checked > 150


def test_after_the_cut_and_the_repair_the_plan_is_a_fresh_controllers(
        national: Topology) -> None:
    core, net, specs = _with_intents(national, 200, 2, fast_reroute=True)
    crossed = _crossed(core, national)
    i = max(crossed, key=lambda k: len(crossed[k]))
    a, b = core.wiring.link_ends[i]
    pa, pb = core.wiring.link_ports[i]
    da, db = core.wiring.node_dpid[a], core.wiring.node_dpid[b]
    before = core.router.group_plan()
    for up in (False, True):
        net.set_link(i, up)
        for dpid, port in ((da, pa), (db, pb)):
            apply_and_confirm(core, net, core.port_status(dpid, port, up, 2.0), 2.0)
        for spec in specs.values():
            tr = net.trace(spec.src, traffic(national, spec))
            assert tr.delivered_to == spec.dst and not tr.dead_links, (up, spec, tr)
        if not up:  # the bypasses that crossed the dead link moved off it
            ends = [(core.wiring.node_dpid[n], p) for k in range(len(national.links))
                    for n, p in zip(core.wiring.link_ends[k], core.wiring.link_ports[k],
                                    strict=True)]
            on_it = [bp for d, p in ends if (bp := core.router.bypasses.bypass(d, p))
                     is not None and i in bp.links]
            assert on_it == []
    assert core.router.group_plan() == before
    fresh, fresh_net = running(national, startup_grace_s=0.0, fast_reroute=True,
                               load_intents=False)
    added, change = fresh.add_intents(list(specs.values()), 3.0)
    apply_and_confirm(fresh, fresh_net, change, 3.0)
    assert fresh.router.group_plan() == core.router.group_plan()

    def bypass_flows(c: ControllerCore) -> dict[int, frozenset[object]]:
        plan = c.router.plan()
        return {d: frozenset(e for e in plan.entries(d)
                             if e.cookie >> OWNER_ID_BITS == OWNER_BYPASS)
                for d in c.state.dpids()}
    assert bypass_flows(fresh) == bypass_flows(core)
    assert sum(map(len, bypass_flows(core).values())) > 100


def test_the_links_show_their_bypasses(national: Topology) -> None:
    # within the start-up grace, switches not yet connected count as present: links up
    service = ControllerService(national, fast_reroute=True)
    service.core.router.refresh()
    views = service.link_states()
    off = ControllerService(national).link_states()
    assert all(v["bypass_a_to_b"] is None and v["bypass_b_to_a"] is None for v in off)
    shown = 0
    for i, v in enumerate(views):
        lk = national.links[i]
        for key, (a, b) in (("bypass_a_to_b", (lk.a, lk.b)), ("bypass_b_to_a", (lk.b, lk.a))):
            path = v[key]
            if path is not None:
                assert path[0] == a and path[-1] == b and len(path) >= 2, (lk, path)
                shown += 1
    assert shown > 150


def test_a_cut_moves_the_bypassed_traffic_make_before_break(national: Topology) -> None:
    """The controller's re-routing after a cut never drops what the bypass carries: after
    each phase of its changes every intent across the cut is still delivered. (Without fast
    reroute, traffic cut off by the failure moves in phase 0 together with its new tunnel:
    it has nothing to lose.)"""
    core, net, specs = _with_intents(national, 300, 3, fast_reroute=True)
    crossed = _crossed(core, national)
    i = max(crossed, key=lambda k: len(crossed[k]))
    net.set_link(i, False)
    moved_later = 0
    for dpid, port in zip((core.wiring.node_dpid[n] for n in core.wiring.link_ends[i]),
                          core.wiring.link_ports[i], strict=True):
        change = core.port_status(dpid, port, False, 2.0)
        moved_later += sum(map(len, change.phase1.values()))
        for phase in (change.phase0, change.phase1, change.phase2):
            # the switches of a phase take their messages in any order: one at a time here
            for d in sorted(phase, reverse=True):
                net.apply(d, phase[d])
                for iid in crossed[i]:
                    spec = specs[iid]
                    tr = net.trace(spec.src, traffic(national, spec))
                    assert tr.delivered_to == spec.dst and not tr.dead_links, (d, spec, tr)
        core.confirm(change, 2.0)
    assert moved_later > 0  # the ingress flows and heads waited for the new tunnels
    assert all(i not in map(core.state.link_index, core.intent(iid).links or ())
               for iid in crossed[i])  # and every one moved off the cut link
