"""The FlowMod and bundle bytes ``openflow`` packs itself, checked against os-ken's
own serialiser (the oracle) on generated flows: every supported match field and action, plus
values and fields the packer must hand back to os-ken."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.network import openflow
from controller.network.flows import FlowEntry

DP = SimpleNamespace(ofproto=ofp, ofproto_parser=parser)

ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
mac = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
    lambda bs: ":".join(f"{b:02x}" for b in bs))
port16 = st.integers(0, 0xFFFF)
FIELDS: dict[str, Any] = {
    "in_port": st.integers(1, 0xFFFF_FF00),
    "eth_type": st.sampled_from([0x0800, 0x0806, 0x88CC, 0x8847]),
    "ip_dscp": st.integers(0, 63),
    "ip_proto": st.sampled_from([1, 6, 17]),
    "ipv4_src": ipv4,
    "ipv4_dst": ipv4,
    "tcp_src": port16, "tcp_dst": port16, "udp_src": port16, "udp_dst": port16,
    "eth_src": mac, "eth_dst": mac,
    "mpls_label": st.integers(0, (1 << 20) - 1),
}
matches = st.dictionaries(st.sampled_from(sorted(FIELDS)), st.none(), max_size=7).flatmap(
    lambda d: st.fixed_dictionaries({k: FIELDS[k] for k in d}))
set_fields = st.one_of(
    st.tuples(st.just("mpls_label"), st.integers(16, (1 << 20) - 1)),
    st.tuples(st.just("ipv4_dst"), ipv4), st.tuples(st.just("ipv4_src"), ipv4),
    st.tuples(st.just("eth_dst"), mac), st.tuples(st.just("eth_src"), mac))
ports = st.one_of(st.integers(1, 0xFF00), st.sampled_from([ofp.OFPP_CONTROLLER,
                                                           ofp.OFPP_IN_PORT]))


@st.composite
def instruction_lists(draw: Any) -> tuple[tuple[str, Any], ...]:
    out: list[tuple[str, Any]] = []
    if draw(st.booleans()):
        out.append(("meter", draw(st.integers(1, 0xFFFF))))
    mpls = draw(st.sampled_from([None, ("push_mpls", 0x8847), ("pop_mpls", 0x0800)]))
    if mpls is not None:
        out.append(mpls)
    out += [("set_field", sf) for sf in draw(st.lists(set_fields, max_size=2))]
    out += [("output", p) for p in draw(st.lists(ports, max_size=2))]
    if draw(st.booleans()):
        out.append(("group", draw(st.integers(1, 0xFFFF))))
    if draw(st.booleans()):
        out.append(("goto_table", draw(st.integers(1, 3))))
    return tuple(out)


entries = st.builds(
    FlowEntry, st.integers(0, 3), st.integers(0, 0xFFFF),
    matches.map(lambda m: tuple(sorted(m.items()))), instruction_lists(),
    st.integers(0, (1 << 64) - 1))


def os_ken_flowmod(entry: FlowEntry, command: int) -> Any:
    """The same FlowMod built by os-ken alone."""
    add = command == ofp.OFPFC_ADD
    msg = openflow.flowmod(
        command=command, table_id=entry.table_id, priority=entry.priority,
        match=parser.OFPMatch(**dict(entry.match)), cookie=entry.cookie,
        cookie_mask=0 if add else openflow.ALL_COOKIE_BITS,
        instructions=openflow._instructions(entry.instructions) if add else (),
        flags=ofp.OFPFF_SEND_FLOW_REM if add else 0)
    msg.datapath = DP
    return msg


def os_ken_bytes(entry: FlowEntry, command: int, xid: int) -> bytes:
    """The same FlowMod built and serialised by os-ken alone."""
    msg = os_ken_flowmod(entry, command)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def our_bytes(msg: Any, xid: int) -> bytes:
    msg.datapath = DP
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


@settings(max_examples=400, deadline=None)
@given(entry=entries, xid=st.integers(0, 0xFFFF_FFFF))
def test_packed_flowmods_equal_os_kens(entry: FlowEntry, xid: int) -> None:
    assert our_bytes(openflow.flowmod_add(entry), xid) == \
        os_ken_bytes(entry, ofp.OFPFC_ADD, xid)
    assert our_bytes(openflow.flowmod_delete_strict(entry), xid) == \
        os_ken_bytes(entry, ofp.OFPFC_DELETE_STRICT, xid)


@settings(max_examples=200, deadline=None)
@given(entry=entries, xid=st.integers(0, 0xFFFF_FFFF))
def test_wire_gives_the_serialised_bytes_with_the_xid(entry: FlowEntry, xid: int) -> None:
    """The sender's one-call path (``EntryFlowMod.wire``): os-ken's bytes, the xid and the
    buffer set as ``set_xid`` and ``serialize`` set them; None (and nothing set) where
    os-ken must serialise."""
    msg = openflow.flowmod_add(entry)
    wire = msg.wire(xid)
    if openflow._flowmod_body(openflow.flowmod_add(entry)) is None:
        assert wire is None and msg.xid is None
        return
    assert wire == os_ken_bytes(entry, ofp.OFPFC_ADD, xid)
    assert msg.xid == xid and bytes(msg.buf) == wire


def test_the_packer_takes_every_field_the_controller_uses() -> None:
    """No fallback for the flows routing and steering make (the fast path is the path)."""
    entry = FlowEntry(1, 100, (("eth_type", 0x0800), ("in_port", 3), ("ip_dscp", 46),
                               ("ip_proto", 17), ("ipv4_dst", "10.0.0.2"),
                               ("ipv4_src", "10.0.0.1"), ("udp_dst", 53)),
                      (("meter", 4), ("push_mpls", 0x8847), ("set_field", ("mpls_label", 99)),
                       ("set_field", ("ipv4_dst", "10.9.0.1")),
                       ("set_field", ("eth_dst", "02:00:00:00:00:01")), ("output", 2),
                       ("goto_table", 2)), 7)
    for msg in (openflow.flowmod_add(entry), openflow.flowmod_delete_strict(entry)):
        assert openflow._flowmod_body(msg) is not None


@pytest.mark.parametrize("match", [
    (("ipv4_dst", ("10.0.0.0", "255.255.255.0")),),   # masked
    (("ipv4_dst", "10.000.0.1"),),                      # not canonical
    (("eth_dst", "02:00:00:00:00:0A"),),                # upper case
    (("vlan_vid", 0x1005),),                            # a field the packer does not know
    (("tcp_dst", 70000),),                              # out of range: os-ken decides
])
def test_what_the_packer_does_not_know_goes_to_os_ken(match: Any) -> None:
    entry = FlowEntry(1, 10, match, (("output", 1),), 1)
    try:
        theirs: bytes | Exception = os_ken_bytes(entry, ofp.OFPFC_ADD, 9)
    except Exception as exc:  # noqa: BLE001 - os-ken refuses: so must we
        theirs = exc
    if isinstance(theirs, Exception):
        with pytest.raises(type(theirs)):
            our_bytes(openflow.flowmod_add(entry), 9)
        return
    msg = openflow.flowmod_add(entry)
    assert openflow._flowmod_body(msg) is None
    assert our_bytes(msg, 9) == theirs


@given(bundle_id=st.integers(0, 0xFFFF_FFFF), xid=st.integers(0, 0xFFFF_FFFF),
       kind=st.sampled_from([ofp.ONF_BCT_OPEN_REQUEST, ofp.ONF_BCT_COMMIT_REQUEST,
                             ofp.ONF_BCT_DISCARD_REQUEST]),
       entry=entries)
@settings(max_examples=100, deadline=None)
def test_bundle_messages_equal_os_kens(bundle_id: int, xid: int, kind: int,
                                       entry: FlowEntry) -> None:
    ctrl = parser.ONFBundleCtrlMsg(DP, bundle_id, kind, openflow.BUNDLE_FLAGS, [])
    ctrl.set_xid(xid)
    ctrl.serialize()
    assert openflow.bundle_control(bundle_id, kind, xid) == bytes(ctrl.buf)
    inner = openflow.flowmod_add(entry)
    add = parser.ONFBundleAddMsg(DP, bundle_id, openflow.BUNDLE_FLAGS,
                                 openflow.flowmod_add(entry), [])
    add.set_xid(xid)
    add.serialize()
    assert openflow.bundle_add(bundle_id, our_bytes(inner, xid)) == bytes(add.buf)
    assert openflow.bundle_add(bundle_id, bytes(inner.buf), xid=xid) == bytes(add.buf)


@given(bundle_id=st.integers(0, 0xFFFF_FFFF), xid=st.integers(0, 0xFFFF_FFFF), entry=entries)
@settings(max_examples=200, deadline=None)
def test_bundle_wire_is_os_kens_bundle_add_of_the_flowmod(bundle_id: int, xid: int,
                                                           entry: FlowEntry) -> None:
    """The sender's one-call path for a FlowMod inside a bundle (``bundle_wire``): os-ken's
    bundle-add of os-ken's FlowMod, with the FlowMod's own bytes left in ``buf``; None (and
    nothing set) where os-ken must serialise."""
    for msg, command in ((openflow.flowmod_add(entry), ofp.OFPFC_ADD),
                         (openflow.flowmod_delete_strict(entry), ofp.OFPFC_DELETE_STRICT)):
        wire = msg.bundle_wire(xid, bundle_id)
        if openflow._flowmod_body(msg) is None:
            assert wire is None and msg.xid is None
            continue
        alone = os_ken_bytes(entry, command, xid)
        add = parser.ONFBundleAddMsg(DP, bundle_id, openflow.BUNDLE_FLAGS,
                                     os_ken_flowmod(entry, command), [])
        add.set_xid(xid)
        add.serialize()
        assert wire == bytes(add.buf)
        assert wire[openflow.BUNDLE_ADD_HEADER_BYTES:] == alone
        assert msg.xid == xid and bytes(msg.buf) == alone
