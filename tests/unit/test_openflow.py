"""OpenFlow 1.3 builders: the messages carry the fields the pipeline needs."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from os_ken.lib.packet import arp, ethernet, packet
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.network import openflow, packets
from controller.network.flows import FlowEntry, cookie_owner, flow, make_cookie, pipeline_flows

ENTRY = flow(
    1,
    200,
    {
        "eth_type": 0x0800,
        "ipv4_src": "10.0.0.1",
        "ipv4_dst": "10.0.0.2",
        "ip_proto": 17,
        "udp_dst": 5004,
        "ip_dscp": 46,
    },
    (("output", 3),),
    make_cookie(3, 7),
)


def test_flowmod_add_fields() -> None:
    fm = openflow.flowmod_add(ENTRY)
    assert isinstance(fm, parser.OFPFlowMod)
    assert fm.datapath is None
    assert (fm.command, fm.table_id, fm.priority, fm.cookie) == (
        ofp.OFPFC_ADD,
        1,
        200,
        ENTRY.cookie,
    )
    assert dict(fm.match.items()) == dict(ENTRY.match)
    (inst,) = fm.instructions
    assert inst.type == ofp.OFPIT_APPLY_ACTIONS
    (act,) = inst.actions
    assert act.port == 3
    assert fm.buffer_id == ofp.OFP_NO_BUFFER
    assert fm.flags == ofp.OFPFF_SEND_FLOW_REM  # deletions behind our back get reported


def test_goto_and_controller_instructions() -> None:
    entries = {e.cookie: e for e in pipeline_flows()}
    ipv4 = openflow.flowmod_add(entries[make_cookie(1, 3)])
    (goto,) = ipv4.instructions
    assert isinstance(goto, parser.OFPInstructionGotoTable) and goto.table_id == 1
    lldp = openflow.flowmod_add(entries[make_cookie(1, 1)])
    (act,) = lldp.instructions[0].actions
    assert act.port == ofp.OFPP_CONTROLLER and act.max_len == ofp.OFPCML_NO_BUFFER
    drop = openflow.flowmod_add(entries[make_cookie(1, 4)])
    assert drop.instructions == [] and drop.priority == 0 and dict(drop.match.items()) == {}


def test_delete_strict_names_the_cookie_exactly() -> None:
    fm = openflow.flowmod_delete_strict(ENTRY)
    assert fm.command == ofp.OFPFC_DELETE_STRICT
    assert fm.cookie == ENTRY.cookie and fm.cookie_mask == 0xFFFF_FFFF_FFFF_FFFF
    assert (fm.table_id, fm.priority) == (1, 200)
    assert dict(fm.match.items()) == dict(ENTRY.match)


def test_two_phase_puts_adds_first_and_ends_each_batch_with_a_barrier() -> None:
    other = flow(
        2, 100, {"eth_type": 0x0800, "ipv4_dst": "10.0.0.9"}, (("output", 1),), make_cookie(2, 9)
    )
    p1, p2 = openflow.two_phase({5: [ENTRY, other]}, {5: [other], 6: [ENTRY]})
    assert list(p1) == [5] and sorted(p2) == [5, 6]
    assert [type(m) for m in p1[5]] == [
        openflow.EntryFlowMod,
        openflow.EntryFlowMod,
        parser.OFPBarrierRequest,
    ]
    assert all(isinstance(m, parser.OFPFlowMod) for m in p1[5][:-1])
    assert all(m.command == ofp.OFPFC_ADD for m in p1[5][:-1])
    assert p1[5][0].table_id == 2  # destination table before the intent table
    for msgs in p2.values():
        assert isinstance(msgs[-1], parser.OFPBarrierRequest)
        assert all(m.command == ofp.OFPFC_DELETE_STRICT for m in msgs[:-1])


def test_match_and_instructions_survive_the_wire() -> None:
    """Serialize to OpenFlow bytes and parse back, as a flow-stats reply would carry them."""
    fm = openflow.flowmod_add(ENTRY)
    buf = bytearray()
    length = fm.match.serialize(buf, 0)
    match = parser.OFPMatch.parser(bytes(buf), 0)
    assert length > 0 and sorted(match.items()) == list(ENTRY.match)
    buf = bytearray()
    fm.instructions[0].serialize(buf, 0)
    inst = parser.OFPInstructionActions.parser(bytes(buf), 0)
    stat = parser.OFPFlowStats(
        table_id=1,
        duration_sec=0,
        duration_nsec=0,
        priority=200,
        idle_timeout=0,
        hard_timeout=0,
        flags=0,
        cookie=ENTRY.cookie,
        packet_count=0,
        byte_count=0,
        match=match,
        instructions=[inst],
    )
    assert openflow.flowstats_to_entry(stat) == ENTRY


def test_flowstats_with_foreign_actions_never_equal_a_plan_entry() -> None:
    stat = parser.OFPFlowStats(
        table_id=1,
        duration_sec=0,
        duration_nsec=0,
        priority=200,
        idle_timeout=0,
        hard_timeout=0,
        flags=0,
        cookie=ENTRY.cookie,
        packet_count=0,
        byte_count=0,
        match=parser.OFPMatch(**dict(ENTRY.match)),
        instructions=[
            openflow.apply_actions(
                [parser.OFPActionSetField(eth_dst="00:00:00:00:00:01"), openflow.output_port(3)]
            )
        ],
    )
    entry = openflow.flowstats_to_entry(stat)
    assert entry.key == ENTRY.key and entry != ENTRY


def test_cookie_layout() -> None:
    assert make_cookie(3, 42) == (3 << 56) | 42
    assert cookie_owner(make_cookie(2, 0x0A000001)) == ("destination", 0x0A000001)
    assert cookie_owner(0) is None and cookie_owner(0xAB << 56) is None


def test_packet_out_and_barrier() -> None:
    po = openflow.packet_out(4, b"\x00" * 60)
    assert po.buffer_id == ofp.OFP_NO_BUFFER and po.in_port == ofp.OFPP_CONTROLLER
    assert [a.port for a in po.actions] == [4] and po.data == b"\x00" * 60
    assert isinstance(openflow.barrier_request(), parser.OFPBarrierRequest)
    req = openflow.flow_stats_request()
    assert req.table_id == ofp.OFPTT_ALL and req.cookie_mask == 0


def test_arp_reply_answers_for_the_target() -> None:
    data = packets.arp_reply(
        target_mac="02:00:0a:00:00:02",
        target_ip="10.0.0.2",
        requester_mac="02:00:0a:00:00:01",
        requester_ip="10.0.0.1",
    )
    pkt = packet.Packet(data)
    eth, a = pkt.get_protocol(ethernet.ethernet), pkt.get_protocol(arp.arp)
    assert eth.dst == "02:00:0a:00:00:01" and eth.src == "02:00:0a:00:00:02"
    assert a.opcode == arp.ARP_REPLY
    assert (a.src_mac, a.src_ip, a.dst_mac, a.dst_ip) == (
        "02:00:0a:00:00:02",
        "10.0.0.2",
        "02:00:0a:00:00:01",
        "10.0.0.1",
    )
    info = packets.parse_arp(data)
    assert info is not None and info.src_ip == "10.0.0.2"


def test_lldp_probe_round_trip() -> None:
    for dpid, port_no in [(1, 1), (0xFEDCBA9876543210, 0xFFFFFF00 - 1), (52, 7)]:
        data = packets.lldp_probe(dpid, port_no)
        assert packets.eth_type_of(data) == 0x88CC
        assert packets.parse_lldp(data) == packets.LldpProbe(dpid, port_no)
    assert packets.parse_lldp(b"\x00" * 60) is None
    assert (
        packets.parse_lldp(
            packets.arp_reply(
                target_mac="02:00:00:00:00:02",
                target_ip="10.0.0.2",
                requester_mac="02:00:00:00:00:01",
                requester_ip="10.0.0.1",
            )
        )
        is None
    )


def test_flowentry_is_hashable_and_ordered() -> None:
    a = FlowEntry(1, 100, (("eth_type", 2048),), (("output", 1),), 5)
    b = FlowEntry(1, 100, (("eth_type", 2048),), (("output", 1),), 5)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert sorted([b, FlowEntry(0, 1, (), (), 1)])[0].table_id == 0


def test_flowentry_built_by_its_own_init_is_a_frozen_dataclass() -> None:
    """FlowEntry writes its slots itself (faster than the generated ``__init__``): by keyword,
    positionally, through ``dataclasses.replace`` and pickling it is the same entry, with the
    key and the hash of its fields, and it stays frozen."""
    a = FlowEntry(1, 100, (("eth_type", 2048),), (("output", 1),), 5)
    b = FlowEntry(table_id=1, priority=100, match=(("eth_type", 2048),),
                  instructions=(("output", 1),), cookie=5)
    assert a == b and hash(a) == hash((1, 100, (("eth_type", 2048),), (("output", 1),), 5))
    assert a.key == (1, 100, (("eth_type", 2048),))
    assert pickle.loads(pickle.dumps(a)) == a
    c = dataclasses.replace(a, cookie=6)
    assert c.cookie == 6 and c != a and c.key == a.key and hash(c) != hash(a)
    assert dataclasses.astuple(a)[:5] == (1, 100, (("eth_type", 2048),), (("output", 1),), 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.cookie = 7  # type: ignore[misc]


def test_port_rows_join_descriptions_and_statistics() -> None:
    from types import SimpleNamespace

    counters = dict.fromkeys(openflow.PORT_COUNTERS, 7)
    descs = [SimpleNamespace(port_no=2, name=b"s1-eth2\x00", hw_addr="0e:00:00:00:00:02",
                             state=ofp.OFPPS_LINK_DOWN, config=0, curr_speed=10_000),
             SimpleNamespace(port_no=ofp.OFPP_LOCAL, name=b"s1", hw_addr="0e:00:00:00:00:00",
                             state=0, config=0, curr_speed=0)]
    stats = [SimpleNamespace(port_no=1, duration_sec=3, duration_nsec=500_000_000, **counters),
             SimpleNamespace(port_no=2, duration_sec=1, duration_nsec=0, **counters)]
    rows = openflow.port_rows_of(descs, stats)
    assert [r["port_no"] for r in rows] == [1, 2]  # LOCAL left out, sorted
    only_stats, both = rows
    assert only_stats["name"] is None and only_stats["link_up"] is None
    assert only_stats["rx_packets"] == 7 and only_stats["duration_s"] == 3.5
    assert both["name"] == "s1-eth2" and both["link_up"] is False and both["admin_up"] is True
    assert both["curr_speed_kbps"] == 10_000 and both["tx_errors"] == 7
    no_stats = openflow.port_rows_of(descs[:1], [])[0]
    assert no_stats["rx_bytes"] is None and no_stats["duration_s"] is None
