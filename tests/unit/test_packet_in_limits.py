"""Packet-in meters and host-learning limits (pure: fake switches, a fake clock).

The plan holds one meter per kind of packet-in on every switch, at the configured rates in
packets/s, and the classifier and table-miss flows point at them; learning stops at a full
port and for an address that moves too often, and every refusal is counted."""

from __future__ import annotations

import pytest
from fakeoftable import apply_and_confirm, flow_entries, running
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from test_core_incremental import arp_from

from controller.network.flows import (
    ARP_METER_ID,
    ETH_TYPE_ARP,
    ETH_TYPE_LLDP,
    LLDP_METER_ID,
    PACKET_IN_METER_ID,
    PORT_CONTROLLER,
    TABLE_CLASSIFIER,
    TABLE_DESTINATIONS,
)
from controller.network.limits import ControlPlaneLimits, HostGuard
from controller.topology.model import IntentSpec, Topology

METERED = ControlPlaneLimits(packet_in_pps=1000, packet_in_control_pps=2000)


def garp(mac: str, ip: str) -> bytes:
    """A gratuitous ARP request (sender and target address alike)."""
    return arp_from(mac, ip, ip)


def to_controller_meter(flow: object) -> int | None:
    """The meter a flow to the controller passes (None: none); fails if it does not go to
    the controller."""
    insts = flow.instructions  # type: ignore[attr-defined]
    meters = [i.meter_id for i in insts if isinstance(i, parser.OFPInstructionMeter)]
    outs = [a.port for i in insts if isinstance(i, parser.OFPInstructionActions)
            for a in i.actions]
    assert outs == [PORT_CONTROLLER], outs
    return meters[0] if meters else None


def test_every_switch_meters_its_packet_ins_at_the_configured_rates(diamond: Topology) -> None:
    core, net = running(diamond, limits=METERED)
    want = {LLDP_METER_ID: 2000, ARP_METER_ID: 2000, PACKET_IN_METER_ID: 1000}
    for dpid, sw in net.switches.items():
        assert core.meter_plan()[dpid] == {m: (r, True) for m, r in want.items()}
        assert sw.meters == want  # the fake switch holds them, rates as sent
        by_kind = {}
        for f in sw.flows():
            if f.table_id == TABLE_CLASSIFIER and f.match.get("eth_type") in (ETH_TYPE_LLDP,
                                                                           ETH_TYPE_ARP):
                by_kind[f.match["eth_type"]] = to_controller_meter(f)
            elif f.table_id == TABLE_DESTINATIONS and not f.match:
                by_kind["miss"] = to_controller_meter(f)
        assert by_kind == {ETH_TYPE_LLDP: LLDP_METER_ID, ETH_TYPE_ARP: ARP_METER_ID,
                           "miss": PACKET_IN_METER_ID}
        assert not sw.errors
        # read back, the flows equal the plan: a reconcile keeps them as they are
        assert set(flow_entries(net, dpid)) == set(core.wanted_plan().entries(dpid))


def test_packet_in_meter_mods_are_in_packets_per_second_and_re_added_on_reconnect(
        diamond: Topology) -> None:
    core, net = running(diamond, limits=METERED)
    s1 = core.wiring.node_dpid["s1"]
    apply_and_confirm(core, net, core.switch_connected(
        s1, dict.fromkeys(core.wiring.ports_of(s1), True), 3.0), 3.0)
    change = core.reconcile(s1, flow_entries(net, s1), 3.0)
    mods = [m for m in change.phase0[s1] if isinstance(m, parser.OFPMeterMod)]
    # the switch's meters are unknown after a reconnect: ADD then MODIFY each, before flows
    assert [(m.meter_id, m.command) for m in mods] == [
        (mid, cmd) for mid in sorted((LLDP_METER_ID, ARP_METER_ID, PACKET_IN_METER_ID))
        for cmd in (ofp.OFPMC_ADD, ofp.OFPMC_MODIFY)]
    assert change.phase0[s1][:len(mods)] == mods
    for m in mods:
        assert m.flags == ofp.OFPMF_PKTPS | ofp.OFPMF_BURST
        assert m.bands[0].type == ofp.OFPMBT_DROP
        assert m.bands[0].burst_size == m.bands[0].rate // 10
    assert not change.adds.get(s1) and not change.deletes.get(s1)  # flows untouched


def test_policed_intents_keep_their_meters_beside_the_packet_in_meters(
        diamond: Topology) -> None:
    core, net = running(diamond, limits=METERED, load_intents=False)
    spec = IntentSpec("h1", "h2", max_latency_ms=3, min_bandwidth_mbps=20, police=True,
                      priority=200)
    intent, change = core.add_intent(spec, 2.0, admit=True)
    apply_and_confirm(core, net, change, 2.0)
    s1 = core.wiring.node_dpid["s1"]
    assert net.switches[s1].meters[intent.id] == 20_000
    assert core.meter_plan()[s1][intent.id] == (20_000, False)
    apply_and_confirm(core, net, core.remove_intent(intent.id, 3.0), 3.0)
    assert set(net.switches[s1].meters) == {LLDP_METER_ID, ARP_METER_ID, PACKET_IN_METER_ID}


def test_zero_rates_mean_no_meters(diamond: Topology) -> None:
    core, net = running(diamond, limits=ControlPlaneLimits(packet_in_pps=0,
                                                           packet_in_control_pps=500))
    for sw in net.switches.values():
        assert sw.meters == {LLDP_METER_ID: 500, ARP_METER_ID: 500}
        miss = [f for f in sw.flows() if f.table_id == TABLE_DESTINATIONS and not f.match]
        assert [to_controller_meter(f) for f in miss] == [None]


def _learn(core: object, dpid: int, port: int, mac: str, ip: str, now: float) -> str:
    return core.state.learn_host(mac, ip, dpid, port, now)  # type: ignore[attr-defined]


def test_a_full_port_learns_no_more_hosts_and_counts_each_refusal(diamond: Topology) -> None:
    core, _ = running(diamond, limits=ControlPlaneLimits(max_hosts_per_port=3))
    st = core.state
    s2 = core.wiring.node_dpid["s2"]
    got = [_learn(core, s2, 9, f"02:aa:00:00:00:{i:02x}", f"10.0.9.{i}", 5.0 + i)
           for i in range(1, 6)]
    assert got == ["new", "new", "new", "refused", "refused"]
    assert sorted(h.ip for h in st.hosts.values() if h.source == "learned") == \
        ["10.0.9.1", "10.0.9.2", "10.0.9.3"]
    assert st.host_guard.refused == {"port_full": 2, "banned": 0}
    # one event for the two refusals (rate-limited per port), naming the port and reason
    events = [e for e in st.events if e["kind"] == "host_refused"]
    assert [(e["dpid"], e["port_no"], e["reason"], e["refused"]) for e in events] == \
        [(s2, 9, "port_full", 1)]
    # another port is not affected; a known host stays known; one that changes its address
    # takes its own place (no refusal)
    assert _learn(core, s2, 10, "02:bb:00:00:00:01", "10.0.10.1", 20.0) == "new"
    assert _learn(core, s2, 9, "02:aa:00:00:00:01", "10.0.9.1", 21.0) == "known"
    assert _learn(core, s2, 9, "02:aa:00:00:00:01", "10.0.9.41", 22.0) == "new"
    assert "learned-10.0.9.1" not in st.hosts
    # the next event on the port comes once the interval is over, with the count since the
    # last (the refusal at 10 s and this one)
    assert _learn(core, s2, 9, "02:aa:00:00:00:07", "10.0.9.7", 23.0) == "refused"
    assert _learn(core, s2, 9, "02:aa:00:00:00:08", "10.0.9.8", 24.0) == "refused"
    events = [e for e in st.events if e["kind"] == "host_refused"]
    assert [(e["time"], e["refused"], e["ip"]) for e in events] == \
        [(9.0, 1, "10.0.9.4"), (23.0, 2, "10.0.9.7")]
    assert st.host_guard.refused["port_full"] == 4


def test_a_refused_host_changes_no_flow(diamond: Topology) -> None:
    core, net = running(diamond, limits=ControlPlaneLimits(max_hosts_per_port=1))
    s2 = core.wiring.node_dpid["s2"]
    res = core.packet_in(s2, 9, garp("02:aa:00:00:00:01", "10.0.9.1"), 5.0)
    assert res.change is not None
    apply_and_confirm(core, net, res.change, 5.0)
    before = core.installed_plan()
    for i in range(2, 50):
        assert core.packet_in(s2, 9, garp(f"02:aa:00:00:00:{i:02x}", f"10.0.9.{i}"),
                              6.0).change is None
    assert core.installed_plan() == before
    assert core.state.host_guard.refused["port_full"] == 48


def test_conflicts_with_file_hosts_are_bounded_per_port_too(diamond: Topology) -> None:
    """A file host's port flooded with other addresses: a bounded number of conflicts is
    recorded; the rest are refused (the record and the event log stay bounded)."""
    core, _ = running(diamond, limits=ControlPlaneLimits(max_hosts_per_port=4))
    st = core.state
    dpid, port = core.wiring.node_dpid["s1"], core.wiring.host_port["h1"][1]
    got = [_learn(core, dpid, port, f"02:cc:00:00:00:{i:02x}", f"10.0.66.{i}", 5.0)
           for i in range(1, 31)]
    assert got.count("conflict") == 4 and got.count("refused") == 26
    assert len(st.host_conflicts) == 4
    assert len([e for e in st.events if e["kind"] == "host_conflict"]) == 4
    assert st.host_guard.refused["port_full"] == 26


def test_an_address_that_moves_too_often_is_banned_for_a_while(diamond: Topology) -> None:
    lim = ControlPlaneLimits(host_move_limit=3, host_move_window_s=10.0, learn_ban_s=30.0)
    core, _ = running(diamond, limits=lim)
    st = core.state
    s2, s3 = core.wiring.node_dpid["s2"], core.wiring.node_dpid["s3"]
    mac, ip = "02:aa:00:00:00:09", "10.0.9.9"
    assert _learn(core, s2, 9, mac, ip, 0.0) == "new"
    where = [(s3, 9), (s2, 9), (s3, 9), (s2, 9)]
    got = [_learn(core, d, p, mac, ip, 1.0 + k) for k, (d, p) in enumerate(where)]
    # three moves within 10 s are allowed; the fourth starts the ban and is not learned
    assert got == ["moved", "moved", "moved", "refused"]
    assert st.hosts[f"learned-{ip}"].dpid == s3  # where the last allowed move took it
    assert [e["until"] for e in st.events if e["kind"] == "host_banned"] == [4.0 + 30.0]
    assert _learn(core, s2, 9, mac, ip, 20.0) == "refused"  # still banned
    assert st.host_guard.refused["banned"] == 2
    # after the ban, it is learned again, with a fresh count of moves
    assert _learn(core, s2, 9, mac, ip, 34.5) == "moved"
    assert _learn(core, s3, 9, mac, ip, 35.0) == "moved"


def test_moves_spread_beyond_the_window_are_never_banned(diamond: Topology) -> None:
    lim = ControlPlaneLimits(host_move_limit=2, host_move_window_s=5.0, learn_ban_s=30.0)
    core, _ = running(diamond, limits=lim)
    s2, s3 = core.wiring.node_dpid["s2"], core.wiring.node_dpid["s3"]
    assert _learn(core, s2, 9, "02:aa:00:00:00:09", "10.0.9.9", 0.0) == "new"
    got = [_learn(core, (s3, s2)[k % 2], 9, "02:aa:00:00:00:09", "10.0.9.9", 3.0 * (k + 1))
           for k in range(10)]
    assert got == ["moved"] * 10
    assert core.state.host_guard.refused == {"port_full": 0, "banned": 0}


def test_limits_off_learn_as_many_hosts_as_come() -> None:
    guard = HostGuard()
    assert not guard.port_full(10_000)
    assert not any(guard.moved("10.0.0.1", float(t)) for t in range(100))


@pytest.mark.parametrize("bad", [{"packet_in_pps": -1}, {"max_hosts_per_port": -2},
                                 {"host_move_window_s": 0.0}, {"learn_ban_s": -1.0}])
def test_bad_limits_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ControlPlaneLimits(**bad)  # type: ignore[arg-type]


def test_the_soak_derives_the_packet_in_meters_from_the_flows_read_back() -> None:
    from controller.lab.soak import packet_in_meters_wanted

    def api_flow(match: dict[str, int], insts: list[tuple[str, int]]) -> dict[str, object]:
        return {"match": match, "instructions": [{"type": k, "value": v} for k, v in insts]}

    ctl = PORT_CONTROLLER
    flows = [api_flow({"eth_type": ETH_TYPE_LLDP}, [("meter", 7), ("output", ctl)]),
             api_flow({"eth_type": ETH_TYPE_ARP}, [("meter", 8), ("output", ctl)]),
             api_flow({}, [("meter", 9), ("output", ctl)]),
             api_flow({"ipv4_dst": 5}, [("output", 3)])]
    assert packet_in_meters_wanted(flows, 1000, 2000) == {7: 2000, 8: 2000, 9: 1000}
    # a flow to the controller that skips its meter is reported (id -1 is on no switch)
    flows[2] = api_flow({}, [("output", ctl)])
    assert packet_in_meters_wanted(flows, 1000, 2000) == {7: 2000, 8: 2000, -1: 1000}
    assert packet_in_meters_wanted(flows, 0, 0) == {}


def test_the_lab_flood_frames_are_what_the_controller_reads_as_unknown_traffic() -> None:
    """``controller.lab.flood``: IPv4 from the host to random addresses of the destination
    net (valid headers), and every Nth frame a gratuitous ARP from a random address."""
    import ipaddress

    from controller.lab.flood import flood_frames
    from controller.network import packets

    frames = flood_frames("02:00:00:00:00:03", "10.0.0.3", garp_every=10, count=1000)
    arps = [packets.parse_arp(f) for f in frames if packets.eth_type_of(f) == ETH_TYPE_ARP]
    ipv4 = [f for f in frames if packets.eth_type_of(f) == 0x0800]
    assert len(arps) == 100 and len(ipv4) == 900
    assert all(packets.ipv4_header_ok(f) and packets.ipv4_src_of(f) == "10.0.0.3"
               for f in ipv4)
    dsts = {packets.ipv4_dst_of(f) for f in ipv4}
    assert len(dsts) > 800
    assert all(ipaddress.ip_address(d) in ipaddress.ip_network("10.200.0.0/16") for d in dsts)
    assert all(a is not None and a.src_ip == a.dst_ip and a.opcode == 1 for a in arps)
    assert len({a.src_mac for a in arps if a is not None}) == 100
