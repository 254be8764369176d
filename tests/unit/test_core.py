"""ControllerCore: reconciliation, make-before-break, restart adoption, ARP, LLDP, hosts."""

from __future__ import annotations

import logging

import pytest
from fakeoftable import FakeNetwork, apply_and_confirm, flow_entries, ipv4, running
from os_ken.lib.packet import arp, ethernet, packet
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.errors import NotFound
from controller.network import openflow, packets
from controller.network.change import ChangeKind
from controller.network.core import ControllerCore
from controller.network.flows import (
    OWNER_DESTINATION,
    OWNER_ID_BITS,
    TABLE_DESTINATIONS,
    cookie_owner,
    flow,
    make_cookie,
)
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import IntentSpec, Match, Topology


def dp(core: ControllerCore, node: str) -> int:
    return core.wiring.node_dpid[node]


def names(core: ControllerCore, dpids: list[int]) -> list[str]:
    return [core.wiring.dpid_node[d] for d in dpids]


def arp_request(src_mac: str, src_ip: str, dst_ip: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=src_mac, ethertype=0x0806))
    pkt.add_protocol(
        arp.arp(
            opcode=arp.ARP_REQUEST,
            src_mac=src_mac,
            src_ip=src_ip,
            dst_mac="00:00:00:00:00:00",
            dst_ip=dst_ip,
        )
    )
    pkt.serialize()
    return bytes(pkt.data)


# --- reconciliation --------------------------------------------------------------------------


def test_reconcile_deletes_strays_adds_missing_keeps_identical(diamond: Topology) -> None:
    core, net = running(diamond)
    s2 = dp(core, "s2")
    before = flow_entries(net, s2)
    # identical table: nothing to send
    assert core.reconcile(s2, before, 5.0).empty
    # a stray with our (intent) cookie, and a planned flow gone missing
    stray = flow(
        1, 300, {"eth_type": 0x0800, "ipv4_dst": "10.9.9.9"}, (("output", 2),), make_cookie(3, 99)
    )
    net.apply(s2, [openflow.flowmod_add(stray)])
    victim = next(e for e in before if e.table_id == TABLE_DESTINATIONS and e.priority > 0)
    net.apply(s2, [openflow.flowmod_delete_strict(victim)])
    change = core.reconcile(s2, flow_entries(net, s2), 6.0)
    assert change.adds == {s2: (victim,)}
    assert change.deletes == {s2: (stray,)}
    assert list(change.phase0) == [s2] and list(change.phase2) == [s2]
    apply_and_confirm(core, net, change, 6.0)
    assert sorted(flow_entries(net, s2)) == sorted(before)
    assert core.reconcile(s2, flow_entries(net, s2), 7.0).empty


def test_reconcile_replaces_a_changed_flow_in_place(diamond: Topology) -> None:
    core, net = running(diamond)
    s1 = dp(core, "s1")
    entry = next(e for e in flow_entries(net, s1) if cookie_owner(e.cookie)[0] == "intent")
    wrong = flow(entry.table_id, entry.priority, dict(entry.match), (("output", 99),), entry.cookie)
    net.apply(s1, [openflow.flowmod_add(wrong)])
    change = core.reconcile(s1, flow_entries(net, s1), 5.0)
    assert change.adds == {s1: (entry,)} and change.phase2 == {}


def test_restarted_controller_adopts_the_flows_without_churn(diamond: Topology) -> None:
    core, net = running(diamond)
    tables = {d: sorted(flow_entries(net, d)) for d in net.switches}
    fresh = ControllerCore(diamond, now=100.0)
    for dpid in sorted(net.switches):
        ports = dict.fromkeys(core.wiring.ports_of(dpid), True)
        assert fresh.switch_connected(dpid, ports, 100.5).empty
        assert fresh.reconcile(dpid, flow_entries(net, dpid), 100.5).empty
    assert {d: sorted(flow_entries(net, d)) for d in net.switches} == tables
    assert fresh.tick(200.0).empty  # grace over, every switch is there: nothing moves


def test_first_switch_alone_does_not_tear_down_routes_during_grace(diamond: Topology) -> None:
    core, net = running(diamond)
    fresh = ControllerCore(diamond, now=0.0, startup_grace_s=10.0)
    s1 = dp(core, "s1")
    fresh.switch_connected(s1, dict.fromkeys(core.wiring.ports_of(s1), True), 1.0)
    assert fresh.reconcile(s1, flow_entries(net, s1), 1.0).empty
    # after the grace period the switches that never came are down: s1 loses its routes
    change = fresh.tick(11.0)
    assert change.deletes.get(s1)


# --- make-before-break ---------------------------------------------------------------------


def _check_phase_shapes(change: object) -> None:
    for name in ("phase0", "phase1"):
        for msgs in getattr(change, name).values():
            assert isinstance(msgs[-1], parser.OFPBarrierRequest)
            # the adds, then (phase 0 only) deletes of destination flows, which a default
            # route made or moved before them takes over (destinations.py)
            n_adds = sum(m.command == ofp.OFPFC_ADD for m in msgs[:-1])
            assert all(m.command == ofp.OFPFC_ADD for m in msgs[:n_adds]), name
            early = msgs[n_adds:-1]
            assert not early or name == "phase0"
            assert all(m.command == ofp.OFPFC_DELETE_STRICT
                       and m.cookie >> OWNER_ID_BITS == OWNER_DESTINATION for m in early), name
    for msgs in change.phase2.values():  # type: ignore[attr-defined]
        assert isinstance(msgs[-1], parser.OFPBarrierRequest)
        assert all(m.command == ofp.OFPFC_DELETE_STRICT for m in msgs[:-1])


def _all_pairs_delivered(diamond: Topology, net: FakeNetwork) -> None:
    for a in diamond.hosts:
        for b in diamond.hosts:
            if a != b:
                assert net.trace(a.name, ipv4(a.ip, b.ip)).delivered == [b.name], (a, b)


def test_a_cut_moves_the_broken_intent_with_its_new_tunnel_in_one_round(
        diamond: Topology) -> None:
    core, net = running(diamond)
    h2, h1 = diamond.host("h2"), diamond.host("h1")
    fields = ipv4(h2.ip, h1.ip)  # the "cheap" intent: s4-s3-s1
    assert names(core, net.trace("h2", fields).dpids()) == ["s4", "s3", "s1"]
    i = next(i for i, lk in enumerate(diamond.links) if {lk.a, lk.b} == {"s1", "s3"})
    net.set_link(i, False)
    change = core.port_status(dp(core, "s3"), core.wiring.link_port(i, "s3"), False, 5.0)
    assert change.kind is ChangeKind.PORT_DOWN and change.kind.restoration
    assert change.intents  # the moved intent waits for this change
    _check_phase_shapes(change)
    # its old path is dead: nothing to keep it on, so its ingress flow goes in phase 0 with
    # the new tunnel (s2 forwards the label, s1 pops it) and phase 1 has nothing to wait for
    assert not change.phase1
    owners = {cookie_owner(m.cookie) for msgs in change.phase0.values() for m in msgs[:-1]}
    cheap = next(x for x in core.intents() if x.name == "cheap")
    assert ("intent", cheap.id) in owners and ("tunnel", cheap.mpls_label) in owners
    assert change.phase2, "the old path's flows must be removed in phase 2"
    net.apply_phase(change.phase0)
    tr = net.trace("h2", fields)
    assert tr.delivered == ["h1"] and names(core, tr.dpids()) == ["s4", "s2", "s1"]
    _all_pairs_delivered(diamond, net)
    assert cheap.state == "pending"
    net.apply_phase(change.phase2)
    assert core.confirm(change, 5.1) == [cheap] and cheap.state == "installed"
    assert not [f for f in net.flows(dp(core, "s3"))
                if cookie_owner(f.cookie) == ("intent", cheap.id)]


def test_live_traffic_moves_only_onto_a_confirmed_tunnel(diamond: Topology) -> None:
    """The link comes back: the cheap intent returns to s4-s3-s1 from a detour that works, so
    the new tunnel is made (phase 0) before the ingress pushes its label (phase 1), and the
    detour's flows go only after that (phase 2)."""
    core, net = running(diamond)
    h2, h1 = diamond.host("h2"), diamond.host("h1")
    fields = ipv4(h2.ip, h1.ip)
    i = next(i for i, lk in enumerate(diamond.links) if {lk.a, lk.b} == {"s1", "s3"})
    net.set_link(i, False)
    for node in ("s1", "s3"):
        apply_and_confirm(core, net, core.port_status(
            dp(core, node), core.wiring.link_port(i, node), False, 5.0), 5.0)
    assert names(core, net.trace("h2", fields).dpids()) == ["s4", "s2", "s1"]
    cheap = next(x for x in core.intents() if x.name == "cheap")
    detour_label = cheap.mpls_label
    net.set_link(i, True)
    apply_and_confirm(core, net, core.port_status(
        dp(core, "s1"), core.wiring.link_port(i, "s1"), True, 6.0), 6.0)
    change = core.port_status(dp(core, "s3"), core.wiring.link_port(i, "s3"), True, 6.1)
    _check_phase_shapes(change)
    assert cheap.path == ("s4", "s3", "s1") and cheap.state == "pending"
    # phase 1 is the ingress flow alone, pushing the label of the tunnel phase 0 makes
    assert list(change.phase1) == [dp(core, "s4")]
    (ingress,) = change.phase1[dp(core, "s4")][:-1]
    assert cookie_owner(ingress.cookie) == ("intent", cheap.id)
    tunnel_owners = {cookie_owner(m.cookie) for msgs in change.phase0.values()
                     for m in msgs[:-1]}
    assert ("tunnel", cheap.mpls_label) in tunnel_owners
    assert ("intent", cheap.id) not in tunnel_owners
    net.apply_phase(change.phase0)
    # until phase 1 moves the ingress flow, the traffic keeps the detour
    assert names(core, net.trace("h2", fields).dpids()) == ["s4", "s2", "s1"]
    net.apply_phase(change.phase1)
    tr = net.trace("h2", fields)
    assert tr.delivered == ["h1"] and names(core, tr.dpids()) == ["s4", "s3", "s1"]
    _all_pairs_delivered(diamond, net)
    net.apply_phase(change.phase2)
    assert core.confirm(change, 6.2) == [cheap] and cheap.state == "installed"
    assert detour_label is not None and detour_label != cheap.mpls_label
    assert not [f for f in net.flows(dp(core, "s2"))
                if cookie_owner(f.cookie) == ("tunnel", detour_label)]


def test_confirm_of_an_older_change_does_not_install_a_newer_route(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    intent, first = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=15.0), 2.0)
    i = next(i for i, lk in enumerate(diamond.links) if {lk.a, lk.b} == {"s1", "s3"})
    second = core.port_status(dp(core, "s1"), core.wiring.link_port(i, "s1"), False, 2.1)
    assert intent.state == "pending"
    net.apply_change(first)
    assert core.confirm(first, 2.2) == [] and intent.state == "pending"
    net.apply_change(second)
    assert core.confirm(second, 2.3) == [intent]


# --- switches --------------------------------------------------------------------------------


def test_switch_loss_and_return(diamond: Topology) -> None:
    core, net = running(diamond)
    fast = next(x for x in core.intents() if x.name == "fast")
    s2 = dp(core, "s2")
    change = core.switch_lost(s2, 5.0)
    assert change.kind is ChangeKind.SWITCH_LOST and change.kind.restoration
    assert s2 not in change.dpids
    apply_and_confirm(core, net, change, 5.0)
    assert fast.state == "degraded"
    # s2 restarts empty
    net.switches[s2].tables = {t: [] for t in net.switches[s2].tables}
    apply_and_confirm(
        core,
        net,
        back := core.switch_connected(s2, dict.fromkeys(core.wiring.ports_of(s2), True), 6.0),
        6.0,
    )
    assert back.kind is ChangeKind.SWITCH_CONNECTED and not back.kind.restoration
    assert fast.state == "pending"  # routed again, s2 not yet reconciled
    change = core.reconcile(s2, flow_entries(net, s2), 6.1)
    assert change.adds[s2] and not change.deletes
    apply_and_confirm(core, net, change, 6.1)
    assert fast.state == "installed"
    h1, h2 = diamond.host("h1"), diamond.host("h2")
    assert names(core, net.trace("h1", ipv4(h1.ip, h2.ip)).dpids()) == ["s1", "s2", "s4"]


def test_ports_down_at_connect_are_not_used(diamond: Topology) -> None:
    core = ControllerCore(diamond, startup_grace_s=0)
    net = FakeNetwork(core.wiring)
    for dpid in sorted(net.switches):
        ports = dict.fromkeys(core.wiring.ports_of(dpid), True)
        if dpid == dp(core, "s2"):
            ports[2] = False  # s2-s4
        apply_and_confirm(core, net, core.switch_connected(dpid, ports, 1.0), 1.0)
        apply_and_confirm(core, net, core.reconcile(dpid, [], 1.0), 1.0)
    fast = next(x for x in core.intents() if x.name == "fast")
    assert fast.state == "infeasible" and "10.00 ms" in fast.reason


# --- packets ---------------------------------------------------------------------------------


def test_proxy_arp_reply_carries_the_target_mac(diamond: Topology) -> None:
    core, _ = running(diamond)
    h1, h2 = diamond.host("h1"), diamond.host("h2")
    s1, port = dp(core, "s1"), core.wiring.host_port["h1"][1]
    res = core.packet_in(s1, port, arp_request(h1.mac, h1.ip, h2.ip), 5.0)
    assert res.change is None
    ((dpid, msg),) = res.messages
    assert dpid == s1 and [a.port for a in msg.actions] == [port]
    reply = packet.Packet(msg.data).get_protocol(arp.arp)
    assert reply.opcode == arp.ARP_REPLY
    assert (reply.src_mac, reply.src_ip) == (h2.mac, h2.ip)
    assert (reply.dst_mac, reply.dst_ip) == (h1.mac, h1.ip)
    # an unknown target gets nothing (no flooding)
    assert core.packet_in(s1, port, arp_request(h1.mac, h1.ip, "10.77.0.1"), 5.0).messages == []


def test_learned_host_gets_destination_flows(diamond: Topology) -> None:
    core, net = running(diamond)
    s2 = dp(core, "s2")
    res = core.packet_in(s2, 9, arp_request("02:aa:00:00:00:09", "10.0.9.9", "10.0.0.1"), 5.0)
    assert res.change is not None and res.messages  # learned, and answered
    apply_and_confirm(core, net, res.change, 5.0)
    h1 = diamond.host("h1")
    tr = net.trace("h1", ipv4(h1.ip, "10.0.9.9"))
    assert names(core, tr.dpids()) == ["s1", "s2"] and tr.hops[-1] == (s2, 9)
    assert core.state.hosts["learned-10.0.9.9"].port_no == 9
    # hearing it again changes nothing
    again = core.packet_in(s2, 9, arp_request("02:aa:00:00:00:09", "10.0.9.9", "10.0.0.1"), 6.0)
    assert again.change is None


def test_host_conflicting_with_the_file_is_reported_not_used(diamond: Topology) -> None:
    core, net = running(diamond)
    h2 = diamond.host("h2")
    s2 = dp(core, "s2")
    res = core.packet_in(s2, 9, arp_request("02:bb:00:00:00:01", h2.ip, "10.0.0.1"), 5.0)
    assert res.change is None
    assert [e for e in core.state.events if e["kind"] == "host_conflict"]
    assert core.state.host_conflicts
    h1 = diamond.host("h1")
    assert net.trace("h1", ipv4(h1.ip, h2.ip)).delivered == ["h2"]
    assert core.state.host_by_ip(h2.ip).node == "s4"


def test_ipv4_packet_in_learns_the_source(diamond: Topology) -> None:
    core, _ = running(diamond)
    pkt = packet.Packet()
    from os_ken.lib.packet import ipv4 as ipv4_pkt

    pkt.add_protocol(
        ethernet.ethernet(dst="02:00:0a:00:00:01", src="02:cc:00:00:00:07", ethertype=0x0800)
    )
    pkt.add_protocol(ipv4_pkt.ipv4(src="10.0.7.7", dst="10.0.0.1", proto=17))
    pkt.serialize()
    res = core.packet_in(dp(core, "s3"), 7, bytes(pkt.data), 5.0)
    assert res.change is not None
    assert core.state.hosts["learned-10.0.7.7"].node == "s3"
    # the same packet on a link port is transit, not a host
    res = core.packet_in(dp(core, "s3"), 1, bytes(pkt.data), 5.0)
    assert res.change is None


def test_lldp_verifies_links_and_reports_surprises(diamond: Topology) -> None:
    core, net = running(diamond)
    now = 5.0
    # deliver every probe across the fake wires
    for dpid, msg in core.lldp_probes(now):
        (port,) = [a.port for a in msg.actions]
        peer = core.wiring.peer(dpid, port)
        if peer is not None and peer[0] == "link":
            res = core.packet_in(peer[2], peer[3], msg.data, now)
            assert res.change is None and res.messages == []
    report = core.state.link_report(now + 1)
    assert len(report["verified"]) == len(diamond.links)
    assert report["missing"] == [] and report["unexpected"] == []
    assert len(core.state.link_report(now + 60)["missing"]) == len(diamond.links)
    # s1's probe from port 1 (to s2) shows up at s3 port 1: s1-s3 is miswired -> not used
    res = core.packet_in(dp(core, "s3"), 1, packets.lldp_probe(dp(core, "s1"), 1), now)
    report = core.state.link_report(now)
    assert len(report["unexpected"]) == 1 and report["unexpected"][0]["dst_dpid"] == dp(core, "s3")
    assert res.change is not None
    apply_and_confirm(core, net, res.change, now)
    cheap = next(x for x in core.intents() if x.name == "cheap")
    assert "s3" not in cheap.path
    h2, h1 = diamond.host("h2"), diamond.host("h1")
    assert names(core, net.trace("h2", ipv4(h2.ip, h1.ip)).dpids()) == ["s4", "s2", "s1"]


def test_lldp_probes_cover_live_ports(diamond: Topology) -> None:
    core, _ = running(diamond)
    probes = core.lldp_probes(1.0)
    sent = sorted((d, m.actions[0].port) for d, m in probes)
    expected = sorted(
        (d, p) for d in core.wiring.node_dpid.values() for p in core.wiring.ports_of(d)
        if core.wiring.is_link_port(d, p)  # host-facing ports get none
    )
    assert sent == expected
    for d, m in probes:
        assert packets.parse_lldp(m.data) == packets.LldpProbe(d, m.actions[0].port)


# --- intents API -----------------------------------------------------------------------------


def test_intent_ids_are_stable_and_bad_input_changes_nothing(diamond: Topology) -> None:
    core, net = running(diamond)
    assert [(i.id, i.name) for i in core.intents()] == [(1, "fast"), (2, "cheap")]
    plan = core.installed_plan()
    with pytest.raises(NotFound):
        core.add_intent(IntentSpec("h1", "nope", max_latency_ms=5.0), 3.0)
    with pytest.raises(NotFound):
        core.remove_intent(42, 3.0)
    assert [i.id for i in core.intents()] == [1, 2] and core.installed_plan() == plan
    # the same traffic at the same priority as "cheap" (id 2): refused with a reason
    dup, change = core.add_intent(IntentSpec("h2", "h1", max_latency_ms=5.0), 3.0)
    assert dup.id == 3 and dup.state == "infeasible" and "intent 2" in dup.reason
    apply_and_confirm(core, net, core.remove_intent(3, 3.0), 3.0)
    intent, change = core.add_intent(
        IntentSpec("h2", "h1", max_latency_ms=5.0, match=Match(ip_proto=6)), 3.0, intent_id=17
    )
    assert intent.id == 17
    apply_and_confirm(core, net, change, 3.0)
    assert intent.state == "installed"
    s4 = dp(core, "s4")
    assert [f for f in net.flows(s4) if f.cookie == make_cookie(3, 17)]  # its ingress flow
    # its tunnel: a segment at s2 (its own) that swaps to the segment at s1, which it shares
    # with "cheap" (id 2, s4-s3-s1): both end at h1's port
    assert intent.path == ("s4", "s2", "s1")
    own, shared = intent.mpls_labels
    assert intent.mpls_label == own
    assert core.router.tunnels()[own] == [17] and core.router.tunnels()[shared] == [2, 17]
    cheap = core.intent(2)
    assert cheap.mpls_labels[-1] == shared
    assert [f for f in net.flows(dp(core, "s2")) if f.cookie == make_cookie(5, own)]
    assert [f for f in net.flows(dp(core, "s1")) if f.cookie == make_cookie(5, shared)]
    apply_and_confirm(core, net, core.remove_intent(17, 4.0), 4.0)
    # its flows and its own segment are gone from every switch; the shared one stays
    assert not [f for d in net.switches for f in net.flows(d)
                if f.cookie in (make_cookie(3, 17), make_cookie(5, own))]
    assert own not in core.router.tunnels() and core.router.tunnels()[shared] == [2]
    assert [f for f in net.flows(dp(core, "s1")) if f.cookie == make_cookie(5, shared)]


def test_every_planned_flow_names_its_owner(diamond: Topology) -> None:
    core, _ = running(diamond)
    kinds = {0: {"pipeline"}, 1: {"intent", "tunnel", "pipeline"},
             2: {"destination", "pipeline"}, 3: {"tunnel"}}
    for _, entry in core.wanted_plan():
        owner = cookie_owner(entry.cookie)
        assert owner is not None and owner[0] in kinds[entry.table_id]


def test_events_are_bounded(diamond: Topology) -> None:
    core, _ = running(diamond)
    for k in range(3000):
        core.state.record("noise", float(k))
    assert len(core.state.events) == 1000 and core.state.events[-1]["time"] == 2999.0


def test_flows_removed_behind_our_back_are_restored(diamond: Topology) -> None:
    core, net = running(diamond)
    s2 = dp(core, "s2")
    before = sorted(flow_entries(net, s2))
    # someone runs `ovs-ofctl del-flows` on s2: the switch reports every flow removed
    removed = [
        openflow.flowremoved_to_entry(
            parser.OFPFlowRemoved(
                None,
                cookie=f.cookie,
                priority=f.priority,
                reason=ofp.OFPRR_DELETE,
                table_id=f.table_id,
                match=parser.OFPMatch(**f.match),
            )
        )
        for f in net.flows(s2)
    ]
    # what `ovs-ofctl del-flows` sends: a non-strict delete of every flow in every table
    net.apply(s2, [openflow.flowmod(command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL,
                                    priority=0, match=parser.OFPMatch(), cookie=0,
                                    cookie_mask=0)])
    assert net.flows(s2) == []
    change = core.flows_removed(s2, removed, 5.0)
    assert not change.phase2 and len(change.adds[s2]) == len(before)
    apply_and_confirm(core, net, change, 5.0)
    assert sorted(flow_entries(net, s2)) == before
    # removals the controller caused itself are ignored
    old = core.installed_plan().entries(s2)
    assert core.flows_removed(
        s2,
        [
            openflow.flowremoved_to_entry(
                parser.OFPFlowRemoved(
                    None,
                    cookie=make_cookie(3, 99),
                    priority=5,
                    reason=ofp.OFPRR_DELETE,
                    table_id=1,
                    match=parser.OFPMatch(eth_type=0x0800),
                )
            )
        ],
        6.0,
    ).empty
    assert core.installed_plan().entries(s2) == old


def test_a_late_report_of_our_own_delete_is_told_by_the_flows_age(diamond: Topology) -> None:
    """A flow-removed report whose flow the switch installed before the controller last
    added that flow is of the older flow (the controller's own delete, reported after a
    later change put the flow back): ignored. A flow installed since is restored."""
    core, net = running(diamond)
    s2 = dp(core, "s2")
    flows = net.flows(s2)
    reports = [
        openflow.flowremoved_to_entry(parser.OFPFlowRemoved(
            None, cookie=f.cookie, priority=f.priority, reason=ofp.OFPRR_DELETE,
            table_id=f.table_id, match=parser.OFPMatch(**f.match)))
        for f in flows
    ]
    # every flow of s2 was added by the start-up change at 1.0 (see running())
    older = {e: 1.0 - 0.5 for e in reports}  # installed before it: some earlier flow's report
    assert core.flows_removed(s2, reports, 9.0, installed_at=older).empty
    since = {e: 1.0 for e in reports}  # the flow the start-up change added: believed
    change = core.flows_removed(s2, reports, 9.0, installed_at=since)
    assert len(change.adds[s2]) == len(flows)
    # a report without its flow's age is believed, as before
    apply_and_confirm(core, net, change, 9.0)
    assert len(core.flows_removed(s2, reports[:1], 9.5).adds[s2]) == 1


def test_add_intents_is_one_pass_and_all_or_nothing(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    specs = [
        IntentSpec("h1", "h2", max_latency_ms=3.0, match=Match(ip_proto=6, dst_port=p))
        for p in range(1000, 1010)
    ]
    with pytest.raises(NotFound):
        core.add_intents([*specs, IntentSpec("h1", "zz", max_latency_ms=3.0)], 2.0)
    assert core.intents() == []
    intents, change = core.add_intents(specs, 2.0)
    assert sorted(change.intents) == [i.id for i in intents]
    apply_and_confirm(core, net, change, 2.0)
    assert all(i.state == "installed" for i in intents)
    h1, h2 = diamond.host("h1"), diamond.host("h2")
    tr = net.trace("h1", ipv4(h1.ip, h2.ip, ip_proto=6, tcp_dst=1005))
    assert names(core, tr.dpids()) == ["s1", "s2", "s4"] and tr.delivered == ["h2"]


def test_reroute_and_install_lines_are_logged_once_sent(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    """The core does not log in the computing thread: a Change carries its reroute and
    install lines until ``emit_logs`` (the sender calls it); a big change logs one summary
    per kind at INFO and each intent at DEBUG."""
    from controller.network.change import LOG_EACH_MAX, Change

    small = Change(token=1, cause="port s1:1 down",
                   log_records=[("intent a (1): s1-s2 -> s1-s3-s2 (port s1:1 down)",
                                 {"intent": 1, "event": "reroute"})])
    with caplog.at_level(logging.INFO, logger="controller.network.core"):
        small.emit_logs()
        small.emit_logs()  # once only
    assert [r.getMessage() for r in caplog.records] == [
        "intent a (1): s1-s2 -> s1-s3-s2 (port s1:1 down)"]
    caplog.clear()
    n = LOG_EACH_MAX + 1
    big = Change(token=2, cause="port s1:1 up", log_records=[
        (f"intent i{k} ({k}): ...", {"intent": k, "event": ev})
        for ev in ("reroute", "installed") for k in range(1, n + 1)])
    with caplog.at_level(logging.INFO, logger="controller.network.core"):
        big.emit_logs()
    assert [r.getMessage() for r in caplog.records] == [
        f"change 2 (port s1:1 up): {n} intents rerouted (ids 1-{n}; each at DEBUG)",
        f"change 2 (port s1:1 up): {n} intents installed (ids 1-{n}; each at DEBUG)"]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="controller.network.core"):
        Change(token=3, cause="x", log_records=[
            (f"intent i{k} ({k}): ...", {"intent": k, "event": "reroute"})
            for k in range(1, n + 1)]).emit_logs()
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == n


def test_id_ranges_fold_runs() -> None:
    from controller.network.change import id_ranges as _id_ranges

    assert _id_ranges([]) == ""
    assert _id_ranges([5]) == "5"
    assert _id_ranges([1, 2, 3, 7]) == "1-3, 7"
    assert _id_ranges([10, 3, 1, 2, 2, 9, 12]) == "1-3, 9-10, 12"


def test_a_big_install_is_one_event_and_its_lines_are_formatted_only_when_logged(
        diamond: Topology, caplog: pytest.LogCaptureFixture) -> None:
    """The event log keeps the last 1,000 events: a change installing more intents than
    LOG_EACH_MAX records one ``intents_installed`` event (a small one, one event each), so a
    big batch does not push the link and switch events out."""
    from controller.network.change import LOG_EACH_MAX

    core, net = running(diamond, load_intents=False)
    _, change = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=15.0), 2.0)
    apply_and_confirm(core, net, change, 2.0)
    assert [e["kind"] for e in core.state.events][-1] == "intent_installed"
    n = LOG_EACH_MAX + 1
    specs = [IntentSpec("h1", "h2", max_latency_ms=15.0, priority=200,
                        match=Match(ip_proto=6, dst_port=1000 + k)) for k in range(n)]
    added, change = core.add_intents(specs, 3.0)
    link_events = sum(1 for e in core.state.events if e["kind"].startswith("link"))
    apply_and_confirm(core, net, change, 3.0)
    assert all(i.state == "installed" for i in added)
    last = list(core.state.events)[-1]
    assert last["kind"] == "intents_installed" and last["count"] == n
    assert last["intents"] == f"{added[0].id}-{added[-1].id}"
    assert sum(1 for e in core.state.events if e["kind"] == "intent_installed") == 1
    assert sum(1 for e in core.state.events if e["kind"].startswith("link")) == link_events
    # the per-intent install lines exist, formatted on demand (DEBUG)
    lines = [(str(m), x) for m, x in change.log_records]
    assert (f"intent {added[0].name} ({added[0].id}) installed on s1-s3-s4",
            {"intent": added[0].id, "event": "installed"}) in lines


def test_an_intents_history_is_bounded_and_keeps_the_newest(diamond: Topology) -> None:
    from controller.network.intents import HISTORY_MAX

    core, net = running(diamond)
    cheap = next(x for x in core.intents() if x.name == "cheap")
    i = next(i for i, lk in enumerate(diamond.links) if {lk.a, lk.b} == {"s1", "s3"})
    port = core.wiring.link_port(i, "s3")
    now = 5.0
    for _ in range(HISTORY_MAX // 2 + 5):  # every flap moves the intent twice
        for up in (False, True):
            apply_and_confirm(core, net, core.port_status(dp(core, "s3"), port, up, now), now)
            now += 1.0
    assert len(cheap.history) == HISTORY_MAX
    last = cheap.history[-1]
    assert last.new_path == ("s4", "s3", "s1") and last.cause == f"port s3:{port} up"
    assert last.time == now - 1.0
    assert [h.time for h in cheap.history] == sorted(h.time for h in cheap.history)


def test_frozen_plans_are_handed_back_to_the_collector(diamond: Topology) -> None:
    """With ``freeze_gc`` (the service sets it) every object alive after a change leaves the
    collector's sight; the service's ``reclaim_garbage`` hands them back and collects, so a
    reference cycle caught by a freeze is freed then, not never."""
    import gc
    import weakref

    from controller.network.service import ControllerService

    class Node:
        other: object = None

    service = ControllerService(diamond)
    assert service.core.freeze_gc
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the cyclic collector frees it
        ref = weakref.ref(a)
        service.add_intent(IntentSpec("h1", "h2", max_latency_ms=15.0), timeout_s=0.1)
        assert gc.get_freeze_count() > 0
        del a, b
        gc.collect()
        assert ref() is not None, "a frozen cycle must survive a plain collection"
        ms = service.reclaim_garbage()
        assert ms is not None and ms >= 0.0
        assert gc.get_freeze_count() == 0
        assert ref() is None
    finally:
        gc.unfreeze()


def _arrive(core: ControllerCore, node: str, now: float) -> None:
    dpid = dp(core, node)
    core.switch_connected(dpid, dict.fromkeys(core.wiring.ports_of(dpid), True), now)


def test_the_grace_lasts_while_the_network_keeps_arriving(diamond: Topology) -> None:
    """Switches that arrive one after another each extend the grace: routes through the ones
    not there yet stay (no flow moves at the others); it ends startup_grace_s after the last
    first arrival, at the latest GRACE_MAX_FACTOR graces after the first."""
    core = ControllerCore(diamond, now=0.0, startup_grace_s=10.0)
    _arrive(core, "s1", 5.0)
    _arrive(core, "s2", 12.0)
    assert core.tick(14.0).empty and all(core.state.link_up)  # 10 s after start: still on
    assert core.tick(21.9).empty and all(core.state.link_up)
    change = core.tick(22.0)  # 10 s after s2's arrival: s3 and s4 never came
    assert not all(core.state.link_up)
    assert "startup_grace_over" in [e["kind"] for e in core.state.events]
    assert change.cause == "startup grace over"
    # the cap: arrivals every 9 s keep it open for at most 6 graces after the first
    national = load_topology(topology_file("national"))
    capped = ControllerCore(national, now=0.0, startup_grace_s=10.0)
    nodes = [n.name for n in national.nodes]
    for i, node in enumerate(nodes[:7]):  # at 1, 10, ..., 55
        _arrive(capped, node, 1.0 + 9.0 * i)
        capped.tick(1.0 + 9.0 * i + 4.5)
        assert all(capped.state.link_up), i
    capped.tick(60.9)
    assert all(capped.state.link_up)
    capped.tick(61.0)  # 60 s after the first arrival, 6 s after the last
    assert not all(capped.state.link_up)


def test_a_grace_that_ran_out_before_any_switch_opens_again_at_the_first(
        diamond: Topology) -> None:
    """The controller started long before its network: when the first switch comes the
    others count as present again (routes computed on the whole network), until the grace
    after the arrivals ends; with a grace of 0 nothing ever counts as present unseen."""
    core = ControllerCore(diamond, now=0.0, startup_grace_s=10.0)
    core.tick(10.0)
    assert not any(core.state.link_up)
    _arrive(core, "s1", 60.0)
    kinds = [e["kind"] for e in core.state.events]
    assert "startup_grace_reopened" in kinds
    assert all(core.state.link_up)
    _arrive(core, "s2", 61.0)
    core.tick(70.9)
    assert all(core.state.link_up)
    core.tick(71.0)
    assert not all(core.state.link_up)
    none = ControllerCore(diamond, now=0.0, startup_grace_s=0.0)
    _arrive(none, "s1", 60.0)
    assert not any(none.state.link_up)
    assert "startup_grace_reopened" not in [e["kind"] for e in none.state.events]
