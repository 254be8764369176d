"""Tunnel heads: the intents from one switch to one host enter by one head, so a cut that
moves them costs one FlowMod at their ingress, and the heads are a function of the intents
and their routes (a fresh core computes the same ones)."""

from __future__ import annotations

from fakeoftable import apply_and_confirm, ipv4, running

from controller.network.core import ControllerCore
from controller.network.flows import TABLE_HEADS, cookie_owner
from controller.topology.model import IntentSpec, Match, Topology


def dp(core: ControllerCore, node: str) -> int:
    return core.wiring.node_dpid[node]


def tcp(port: int, bound_ms: float) -> IntentSpec:
    """An intent from h2 to h1 for one TCP port (above "cheap", which takes all their
    traffic at the default priority)."""
    return IntentSpec("h2", "h1", max_latency_ms=bound_ms,
                      match=Match(ip_proto=6, dst_port=port), priority=10)


def _link(t: Topology, a: str, b: str) -> int:
    return next(i for i, lk in enumerate(t.links) if {lk.a, lk.b} == {a, b})


def _cut(core: ControllerCore, t: Topology, net: object, a: str, b: str, up: bool,
         now: float) -> list[object]:
    """Both ends report link a-b down (or up); the changes, not yet applied."""
    i = _link(t, a, b)
    net.set_link(i, up)  # type: ignore[attr-defined]
    return [core.port_status(dp(core, n), core.wiring.link_port(i, n), up, now) for n in (a, b)]


def test_a_cut_moves_the_intents_of_a_city_pair_with_one_flowmod(diamond: Topology) -> None:
    core, net = running(diamond)
    h1, h2 = diamond.host("h1"), diamond.host("h2")
    # 20 intents from h2 to h1 (one TCP port each) ride s4-s3-s1 with "cheap" (id 2)
    specs = [tcp(p, 15.0) for p in range(5000, 5020)]
    added, change = core.add_intents(specs, 2.0)
    apply_and_confirm(core, net, change, 2.0)
    cheap = next(x for x in core.intents() if x.name == "cheap")
    group = [cheap, *added]
    assert {x.path for x in group} == {("s4", "s3", "s1")}
    assert {x.mpls_label for x in group} == {cheap.mpls_label}  # one head for all 21
    head = cheap.mpls_label
    assert core.router.tunnels()[head] == sorted(x.id for x in group)
    s4 = [f for f in net.flows(dp(core, "s4")) if f.table_id == TABLE_HEADS]
    assert len(s4) == 1 and s4[0].cookie == (5 << 56) | head
    # the cut: the head is modified (one FlowMod at s4), no intent's flow is touched
    changes = _cut(core, diamond, net, "s1", "s3", False, 3.0)
    msgs = [m for c in changes for ph in (c.phase0, c.phase1)  # type: ignore[attr-defined]
            for ms in ph.values() for m in ms[:-1]]
    owners = [cookie_owner(m.cookie) for m in msgs]
    assert not [o for o in owners if o is not None and o[0] == "intent"], owners
    assert owners.count(("tunnel", head)) == 1
    assert [m.table_id for m in msgs if cookie_owner(m.cookie) == ("tunnel", head)] == \
        [TABLE_HEADS]
    for c in changes:
        apply_and_confirm(core, net, c, 3.0)
    assert {x.path for x in group} == {("s4", "s2", "s1")}
    assert {x.mpls_label for x in group} == {head}
    for x in group:
        m = x.spec.match
        fields = ipv4(h2.ip, h1.ip, **({} if m is None else {"ip_proto": 6, "tcp_dst": m.dst_port}))
        tr = net.trace("h2", fields)
        assert tr.delivered == ["h1"] and [core.wiring.dpid_node[d] for d in tr.dpids()] == \
            ["s4", "s2", "s1"], (x.id, tr)
    # and back: again one head FlowMod (in phase 1: the detour works, so the way back waits
    # for the tunnel it goes to)
    changes = _cut(core, diamond, net, "s1", "s3", True, 4.0)
    phase1 = [cookie_owner(m.cookie) for c in changes
              for ms in c.phase1.values() for m in ms[:-1]]  # type: ignore[attr-defined]
    assert phase1 == [("tunnel", head)]
    for c in changes:
        apply_and_confirm(core, net, c, 4.0)
    assert {x.path for x in group} == {("s4", "s3", "s1")}


def test_a_head_serves_two_or_more_intents_of_a_pair_on_one_path(diamond: Topology) -> None:
    """A tight bound takes the fast path: that intent pushes its tunnel's label itself (a
    head for one intent would be one flow more and no message less); so does an intent
    alone with its pair; when the lowest-numbered intent of a pair leaves, the head follows
    the next one; and the plan is the one a fresh core computes."""
    core, net = running(diamond)
    cheap = next(x for x in core.intents() if x.name == "cheap")
    assert cheap.mpls_label == cheap.mpls_labels[0]  # alone: no head
    assert not [f for f in net.flows(dp(core, "s4")) if f.table_id == TABLE_HEADS]
    loose = []
    for port in (7, 9):
        x, change = core.add_intent(tcp(port, 15.0), 2.0)
        apply_and_confirm(core, net, change, 2.0)
        loose.append(x)
    tight, change = core.add_intent(tcp(8, 3.0), 2.0)
    apply_and_confirm(core, net, change, 2.0)
    assert tight.path == ("s4", "s2", "s1") and {x.path for x in loose} == {cheap.path}
    head = cheap.mpls_label
    assert {x.mpls_label for x in loose} == {head} != {cheap.mpls_labels[0]}
    assert tight.mpls_label == tight.mpls_labels[0]
    assert [f.cookie for f in net.flows(dp(core, "s4")) if f.table_id == TABLE_HEADS] == \
        [(5 << 56) | head]
    # "cheap" (id 2) goes: the head now follows loose[0], the next lowest id, on the same
    # path, so nothing but cheap's own flow changes at s4
    change = core.remove_intent(cheap.id, 3.0)
    assert {cookie_owner(e.cookie) for es in change.deletes.values() for e in es} == \
        {("intent", cheap.id)}
    assert not change.adds
    apply_and_confirm(core, net, change, 3.0)
    # loose[1] goes: loose[0] is alone on the head, which goes; it pushes the tunnel's label
    change = core.remove_intent(loose[1].id, 3.0)
    apply_and_confirm(core, net, change, 3.0)
    assert loose[0].mpls_label == loose[0].mpls_labels[0]
    assert not [f for f in net.flows(dp(core, "s4")) if f.table_id == TABLE_HEADS]
    fresh, _ = running(diamond)
    fresh.router.table.incremental = False
    for x in sorted(core.intents(), key=lambda x: x.id):
        if x.id > 2:
            fresh.add_intent(x.spec, 3.0, intent_id=x.id)
    fresh.remove_intent(cheap.id, 3.0)
    mine, theirs = core.wanted_plan(), fresh.wanted_plan()
    assert {d: sorted(mine.entries(d) ^ theirs.entries(d)) for d in mine.flows
            if mine.entries(d) != theirs.entries(d)} == {}
    assert [(x.id, x.mpls_label, x.mpls_labels) for x in core.intents()] == \
        [(x.id, x.mpls_label, x.mpls_labels) for x in fresh.intents()]
