"""Policing with OpenFlow 1.3 meters: the meter comes before the flow that uses it and goes
after it; the ingress flow alone carries it; reconnects re-add it idempotently."""

from __future__ import annotations

import pytest
from fakeoftable import apply_and_confirm, flow_entries, ipv4, running
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.errors import TopologyError
from controller.network import openflow
from controller.topology.model import IntentSpec, Topology

POLICED = IntentSpec("h1", "h2", max_latency_ms=3, min_bandwidth_mbps=20, police=True,
                     priority=200)


def meter_ids(flow: object) -> list[int]:
    return [i.meter_id for i in flow.instructions  # type: ignore[attr-defined]
            if isinstance(i, parser.OFPInstructionMeter)]


def test_policed_intent_meters_at_the_ingress_only_and_traffic_still_flows(
        diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    intent, change = core.add_intent(POLICED, 2.0, admit=True)
    s1 = core.wiring.node_dpid["s1"]
    msgs = change.phase0[s1]
    # the meter precedes the flow that uses it (the fake switch raises otherwise)
    assert isinstance(msgs[0], parser.OFPMeterMod) and msgs[0].command == ofp.OFPMC_ADD
    assert msgs[0].bands[0].rate == 20_000 and msgs[0].meter_id == intent.id
    apply_and_confirm(core, net, change, 2.0)
    assert intent.state == "installed"
    for node in ("s1", "s2", "s4"):
        sw = net.switches[core.wiring.node_dpid[node]]
        ids = [m for f in sw.flows() if f.cookie == (3 << 56 | intent.id) for m in meter_ids(f)]
        assert ids == ([intent.id] if node == "s1" else [])
        assert sw.meters == ({intent.id: 20_000} if node == "s1" else {})
    h1, h2 = core.state.hosts["h1"], core.state.hosts["h2"]
    tr = net.trace("h1", ipv4(h1.ip, h2.ip, ip_proto=17))
    assert [core.wiring.dpid_node[d] for d in tr.dpids()] == ["s1", "s2", "s4"]
    # flows read back (with the meter instruction) equal the plan: a reconcile keeps them
    assert set(flow_entries(net, s1)) == set(core.wanted_plan().entries(s1))


def test_meter_is_deleted_after_its_flows_and_reconnect_re_adds_it(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    intent, change = core.add_intent(POLICED, 2.0, admit=True)
    apply_and_confirm(core, net, change, 2.0)
    s1 = core.wiring.node_dpid["s1"]
    # reconnect: the core cannot know the switch's meters, sends ADD then MODIFY
    apply_and_confirm(core, net, core.switch_connected(
        s1, dict.fromkeys(core.wiring.ports_of(s1), True), 3.0), 3.0)
    change = core.reconcile(s1, flow_entries(net, s1), 3.0)
    mods = [m for m in change.phase0[s1] if isinstance(m, parser.OFPMeterMod)]
    assert [m.command for m in mods] == [ofp.OFPMC_ADD, ofp.OFPMC_MODIFY]
    assert not change.adds.get(s1) and not change.deletes.get(s1)  # flows untouched
    apply_and_confirm(core, net, change, 3.0)
    assert net.switches[s1].meters == {intent.id: 20_000}
    assert net.switches[s1].errors == [f"meter {intent.id} exists"]  # harmless, by design
    # a switch that lost the meter gets it back from the same pair
    net.switches[s1].meters.clear()
    net.switches[s1].errors.clear()
    change = core.reconcile(s1, flow_entries(net, s1), 4.0)
    apply_and_confirm(core, net, change, 4.0)
    assert net.switches[s1].meters == {intent.id: 20_000}
    # remove: flow deleted first, then the meter, in phase 2
    change = core.remove_intent(intent.id, 5.0)
    tail = change.phase2[s1]
    assert isinstance(tail[-2], parser.OFPMeterMod) and tail[-2].command == ofp.OFPMC_DELETE
    assert any(isinstance(m, parser.OFPFlowMod) for m in tail[:-2])
    apply_and_confirm(core, net, change, 5.0)
    assert net.switches[s1].meters == {}
    assert not any(meter_ids(f) for f in net.switches[s1].flows())


def test_degraded_policed_intent_loses_its_meter_and_gets_it_back(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    intent, change = core.add_intent(POLICED, 2.0, admit=True)
    apply_and_confirm(core, net, change, 2.0)
    s1, s2 = core.wiring.node_dpid["s1"], core.wiring.node_dpid["s2"]
    pa, pb = core.wiring.link_ports[0]  # s1-s2: the only path within 3 ms
    net.set_link(0, False)
    for dpid, port in ((s1, pa), (s2, pb)):
        apply_and_confirm(core, net, core.port_status(dpid, port, False, 3.0), 3.0)
    assert intent.state == "degraded" and net.switches[s1].meters == {}
    net.set_link(0, True)
    for dpid, port in ((s1, pa), (s2, pb)):
        apply_and_confirm(core, net, core.port_status(dpid, port, True, 4.0), 4.0)
    assert intent.state == "installed" and net.switches[s1].meters == {intent.id: 20_000}


def test_police_without_bandwidth_is_refused(diamond: Topology) -> None:
    core, _ = running(diamond, load_intents=False)
    with pytest.raises(TopologyError, match="police needs min_bandwidth_mbps"):
        core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3, police=True), 2.0)
    assert core.intents() == []


def test_meter_instruction_round_trips_through_flow_stats() -> None:
    from controller.network.flows import FlowEntry
    e = FlowEntry(1, 200, (("eth_type", 0x0800),), (("meter", 7), ("output", 2)), 3 << 56 | 7)
    fm = openflow.flowmod_add(e)
    assert isinstance(fm.instructions[0], parser.OFPInstructionMeter)
    stat = parser.OFPFlowStats(table_id=1, duration_sec=0, duration_nsec=0, priority=200,
                               idle_timeout=0, hard_timeout=0, flags=0, cookie=e.cookie,
                               packet_count=0, byte_count=0, match=fm.match,
                               instructions=fm.instructions)
    assert openflow.flowstats_to_entry(stat) == e
