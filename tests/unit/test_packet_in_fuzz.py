"""Hostile packet-ins: hypothesis-generated frames (truncated, oversized, malformed LLDP, ARP,
IPv4 and MPLS, random bytes) fed to the core's ``packet_in`` and to the os-ken app's handler
with a fake datapath never raise, and each kind of rejection is counted
(``cpn_packet_in_rejected_total{reason}``)."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_app_fake_datapath import _Ev, _FakeDatapath

from controller.network import packets
from controller.network.core import ControllerCore
from controller.network.service import ControllerService
from controller.topology.files import topology_file
from controller.topology.loader import load_topology

DIAMOND = load_topology(topology_file("diamond"))
ETH_TYPES = (0x0806, 0x88CC, 0x0800, 0x8847, 0x8848, 0x8100, 0x86DD, 0x0000, 0xFFFF)
MAC = st.binary(min_size=6, max_size=6)


def _eth(eth_type: int, payload: bytes, dst: bytes = b"\xff" * 6,
         src: bytes = b"\x02\x00\x00\x00\x00\x09") -> bytes:
    return dst + src + struct.pack("!H", eth_type) + payload


@st.composite
def arp_frames(draw: st.DrawFn) -> bytes:
    hw, proto = draw(st.sampled_from((1, 6, 0, 0xFFFF))), draw(st.sampled_from((0x0800, 0x86DD, 0)))
    hlen, plen = draw(st.sampled_from((6, 0, 255))), draw(st.sampled_from((4, 16, 0, 255)))
    body = struct.pack("!HHBBH", hw, proto, hlen, plen, draw(st.integers(0, 0xFFFF)))
    body += draw(st.binary(max_size=40))
    return _eth(0x0806, body, src=draw(MAC))


@st.composite
def ipv4_frames(draw: st.DrawFn) -> bytes:
    vihl = draw(st.integers(0, 255))
    header = bytes([vihl]) + draw(st.binary(min_size=0, max_size=60))
    return _eth(0x0800, header, src=draw(MAC))


@st.composite
def mpls_frames(draw: st.DrawFn) -> bytes:
    labels = b"".join(struct.pack("!I", draw(st.integers(0, 2**32 - 1)))
                      for _ in range(draw(st.integers(0, 4))))
    return _eth(draw(st.sampled_from((0x8847, 0x8848))), labels + draw(st.binary(max_size=40)))


@st.composite
def lldp_frames(draw: st.DrawFn) -> bytes:
    """Our own probe, then cut, flipped or with its TLVs replaced."""
    frame = bytearray(packets.lldp_probe(draw(st.integers(0, 2**64 - 1)),
                                         draw(st.integers(0, 2**32 - 1))))
    how = draw(st.sampled_from(("cut", "flip", "tlvs")))
    if how == "cut":
        return bytes(frame[:draw(st.integers(0, len(frame)))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(14, len(frame) - 1))
            frame[i] ^= draw(st.integers(1, 255))
        return bytes(frame)
    tlvs = b""
    for _ in range(draw(st.integers(0, 6))):
        kind, value = draw(st.integers(0, 127)), draw(st.binary(max_size=40))
        length = draw(st.one_of(st.just(len(value)), st.integers(0, 511)))
        tlvs += struct.pack("!H", (kind << 9) | length) + value
    return _eth(0x88CC, tlvs, dst=b"\x01\x80\xc2\x00\x00\x0e")


FRAMES = st.one_of(
    st.binary(max_size=64),                                          # anything, truncated
    st.integers(9217 - 14, 70_000).map(lambda n: _eth(0x0800, b"\x45" * n)),  # oversized
    st.tuples(st.sampled_from(ETH_TYPES), st.binary(max_size=80)).map(lambda t: _eth(*t)),
    arp_frames(), ipv4_frames(), mpls_frames(), lldp_frames(),
)
PORTS = st.one_of(st.integers(1, 4), st.integers(0, 2**32 - 1))

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _connected_core() -> ControllerCore:
    core = ControllerCore(DIAMOND)
    for sw in DIAMOND.nodes:
        core.switch_connected(sw.dpid, {p: True for p in range(1, 5)}, 0.0)
    return core


@FUZZ
@given(frames=st.lists(st.tuples(st.sampled_from((1, 2, 3, 4, 99)), PORTS, FRAMES),
                       min_size=1, max_size=8))
def test_core_packet_in_never_raises(frames: list[tuple[int, int, bytes]]) -> None:
    core = _connected_core()
    for i, (dpid, port_no, data) in enumerate(frames):
        result = core.packet_in(dpid, port_no, data, 1.0 + i)
        assert isinstance(result.messages, list)


def _packet_in_msg(dp: _FakeDatapath, data: bytes, in_port: int | None) -> Any:
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    match = parser.OFPMatch(in_port=in_port) if in_port is not None else parser.OFPMatch()
    return parser.OFPPacketIn(dp, buffer_id=0xFFFFFFFF, total_len=len(data), reason=0,
                              table_id=0, cookie=0, match=match, data=data)


@FUZZ
@given(frames=st.lists(st.tuples(st.one_of(st.none(), PORTS), FRAMES), min_size=1,
                       max_size=6))
def test_app_packet_in_handler_never_raises(frames: list[tuple[int | None, bytes]]) -> None:
    from controller.network.app import CpnApp

    service = ControllerService(DIAMOND)
    app = CpnApp(cpn_service=service)
    dp = _FakeDatapath(dpid=1, ports=(1, 2, 3))
    for in_port, data in frames:
        app._packet_in(_Ev(_packet_in_msg(dp, data, in_port)))


def test_each_kind_of_rejection_is_counted_and_exposed() -> None:
    from controller.api.metrics import Metrics
    from controller.network.core import PACKET_IN_REJECTIONS

    service = ControllerService(DIAMOND)
    core = service.core
    for sw in DIAMOND.nodes:
        core.switch_connected(sw.dpid, {p: True for p in range(1, 5)}, 0.0)
    trunk = next(p for p in range(1, 5) if core.wiring.is_link_port(1, p))
    arp_ok = packets.arp_reply(target_mac="02:00:00:00:00:02", target_ip="10.0.0.2",
                               requester_mac="02:00:00:00:00:01", requester_ip="10.0.0.1")
    cases = {
        "unknown_switch": (99, 1, arp_ok),
        "no_in_port": (1, None, arp_ok),
        "truncated": (1, 1, b"\x00" * 13),
        "oversized": (1, 1, _eth(0x0800, b"\x45" * 9300)),
        "arp_malformed": (1, 1, _eth(0x0806, b"\x00\x01")),
        "arp_on_trunk": (1, trunk, arp_ok),
        "ipv4_malformed": (1, 1, _eth(0x0800, b"\x65" + b"\x00" * 30)),  # version 6
        "mpls": (1, 1, _eth(0x8847, b"\x00\x01\x41\x40" + b"\x45" * 20)),
        "other_ethertype": (1, 1, _eth(0x86DD, b"\x60" * 40)),
    }
    assert set(cases) == set(PACKET_IN_REJECTIONS)
    for reason, (dpid, port_no, data) in cases.items():
        before = dict(core.packet_in_rejected)
        service.packet_in(dpid, port_no, data)
        assert core.packet_in_rejected.get(reason, 0) == before.get(reason, 0) + 1, reason
        assert sum(core.packet_in_rejected.values()) == sum(before.values()) + 1, reason
    assert all(h.source == "file" for h in core.state.hosts.values())  # nothing learned
    text = Metrics(service).exposition().decode()
    for reason in PACKET_IN_REJECTIONS:
        assert f'cpn_packet_in_rejected_total{{reason="{reason}"}} 1.0' in text, reason
