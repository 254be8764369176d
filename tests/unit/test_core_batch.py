"""A batch of new intents on the national backbone, applied phase by phase to fake switches:
the traffic of every intent is delivered at every step (never sent to a label a switch on
its way lacks), and the batch's phases are exactly the plan's difference, split as
make-before-break requires. The fake switches (``fakeoftable``) read the OpenFlow messages,
not the controller's flow model; the split is checked against the flows themselves."""

from __future__ import annotations

import itertools
import random

import pytest
from fakeoftable import FakeNetwork, apply_and_confirm, ipv4, running

from controller.network.core import ControllerCore
from controller.network.flows import (
    OWNER_ID_BITS,
    OWNER_ID_MASK,
    OWNER_INTENT,
    OWNER_TUNNEL,
    diff_entries,
)
from controller.network.intents import intent_match, intent_match_items
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import IntentSpec, Match, Topology


@pytest.fixture(scope="module")
def national() -> Topology:
    return load_topology(topology_file("national"))


def random_specs(topology: Topology, rng: random.Random, n: int, port0: int,
                 used: set[tuple[str, str]]) -> list[IntentSpec]:
    """``n`` intents between random hosts with bounds the network meets (the benchmarks'
    workload): a pair's first intent (not in ``used`` yet) takes all its traffic, the next
    ones a TCP port each, at a higher priority."""
    graph, _ = topology.to_graph()
    hosts = list(topology.hosts)
    out = []
    port = itertools.count(port0)
    while len(out) < n:
        a, b = rng.sample(hosts, 2)
        if a.node == b.node:
            continue
        best = graph.shortest_path(a.node, b.node)
        assert best is not None
        bound = round(best.latency_ms * rng.uniform(1.3, 2.5) + 1.0, 2)
        match, priority = None, 100
        if (a.name, b.name) in used:
            match, priority = Match(ip_proto=6, dst_port=next(port)), 200
        used.add((a.name, b.name))
        out.append(IntentSpec(src=a.name, dst=b.name, max_latency_ms=bound, match=match,
                              priority=priority))
    return out


def traffic(topology: Topology, spec: IntentSpec) -> dict[str, object]:
    fields = ipv4(topology.host(spec.src).ip, topology.host(spec.dst).ip)
    if spec.match is not None:
        fields.update(ip_proto=6, tcp_dst=spec.match.dst_port)
    return fields


def assert_delivered(topology: Topology, net: FakeNetwork, specs: list[IntentSpec]) -> None:
    for spec in specs:
        tr = net.trace(spec.src, traffic(topology, spec))
        assert tr.delivered_to == spec.dst, (spec, tr)
        assert not tr.dropped and not tr.to_controller and not tr.loop, (spec, tr)


def kind(cookie: int) -> int:
    return cookie >> OWNER_ID_BITS


def test_a_batch_delivers_at_every_step_and_its_phases_are_the_plans_difference(
        national: Topology) -> None:
    core, net = running(national, startup_grace_s=0.0)
    rng = random.Random(7)
    used = {(i.src, i.dst) for i in national.intents}  # the file's own intents are there
    now = 2.0
    # intents already there: the batch finds some of its tunnels made, others not
    apply_and_confirm(core, net, core.add_intents(
        random_specs(national, rng, 60, 20000, used), now)[1], now)
    for k in range(3):
        specs = random_specs(national, rng, 300, 30000 + 1000 * k, used)
        before = core.installed_plan()
        added, change = core.add_intents(specs, now)
        after = core.wanted_plan()
        # the batch's flows are the plan's difference, every one in exactly one phase
        for dpid in set(before.flows) | set(after.flows):
            d = diff_entries(before.entries(dpid), after.entries(dpid))
            assert sorted(change.adds.get(dpid, ())) == list(d.adds)
            assert sorted(change.deletes.get(dpid, ())) == list(d.deletes)
        made = {e.cookie & OWNER_ID_MASK for es in change.adds.values() for e in es
                if kind(e.cookie) == OWNER_TUNNEL}
        late = {m.cookie & OWNER_ID_MASK for msgs in change.phase1.values()
                for m in msgs[:-1]}
        riders = {i.id for i in added if i.mpls_label in made}
        # phase 1 holds the ingress flows onto the tunnels this change makes, and only them
        assert late == riders
        assert all(kind(m.cookie) == OWNER_INTENT for msgs in change.phase1.values()
                   for m in msgs[:-1])
        assert not change.phase2
        # the worst order within phase 0: the ingress switches apply it before the others;
        # no packet may carry a label a switch on its way does not know yet
        ingress = {core.wiring.node_dpid[i.path[0]] for i in added if i.path}
        net.apply_phase({d: m for d, m in change.phase0.items() if d in ingress})
        assert_delivered(national, net, specs)
        net.apply_phase({d: m for d, m in change.phase0.items() if d not in ingress})
        assert_delivered(national, net, specs)
        net.apply_phase(change.phase1)
        assert_delivered(national, net, specs)
        core.confirm(change, now)
        for intent, spec in zip(added, specs, strict=True):
            assert intent.state == "installed"
            tr = net.trace(spec.src, traffic(national, spec))
            assert [core.wiring.dpid_node[d] for d in dict.fromkeys(tr.dpids())] == \
                list(intent.path)


def test_match_items_are_the_match_sorted_by_field_name() -> None:
    """``intent_match_items`` builds the items in order without a sort: the same as the
    match dict's items sorted, for every combination of fields."""
    values = itertools.product((None, 1, 6, 17), (None, 80), (None, 443), (None, 46))
    for proto, src_port, dst_port, dscp in values:
        for match in (None, Match(ip_proto=proto, src_port=src_port, dst_port=dst_port,
                                  dscp=dscp)):
            spec = IntentSpec(src="a", dst="b", max_latency_ms=5.0, match=match)
            assert intent_match_items(spec, "10.0.0.1", "10.0.0.2") == \
                tuple(sorted(intent_match(spec, "10.0.0.1", "10.0.0.2").items()))


def test_a_batch_plans_as_a_full_routing_does(national: Topology) -> None:
    """The batch (its routes by the shortcut, its flows through the one-loop refresh) ends
    in the plan a core routing every intent in full computes from scratch."""
    rng = random.Random(11)
    specs = random_specs(national, rng, 400, 40000, {(i.src, i.dst) for i in national.intents})
    core = ControllerCore(national, now=0.0, startup_grace_s=0.0)
    core.add_intents(specs[:100], 1.0)
    core.add_intents(specs[100:], 1.0)
    fresh = ControllerCore(national, now=0.0, startup_grace_s=0.0)
    fresh.router.table.incremental = False
    fresh.add_intents(specs, 1.0)
    assert core.wanted_plan() == fresh.wanted_plan()
    assert [(i.path, i.mpls_labels) for i in core.intents()] == \
        [(i.path, i.mpls_labels) for i in fresh.intents()]
