"""Packets the controller reads and writes: proxy-ARP replies, LLDP probes (discovery and
link delay), and the Ethernet and IPv4 header fields of packet-ins. Pure: bytes in, bytes or
records out; nothing here talks to a socket.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from os_ken.lib.packet import arp, ethernet, lldp, packet
from os_ken.ofproto import ether

__all__ = ["LLDP_CHASSIS_PREFIX", "LLDP_SRC_MAC", "ArpInfo", "LldpProbe", "arp_reply",
           "eth_src_of", "eth_type_of", "ipv4_dst_of", "ipv4_src_of", "lldp_probe",
           "parse_arp", "parse_lldp"]

LLDP_CHASSIS_PREFIX = "dpid:"
LLDP_SRC_MAC = "0e:00:00:00:00:01"


def arp_reply(*, target_mac: str, target_ip: str, requester_mac: str, requester_ip: str
              ) -> bytes:
    """An ARP reply telling ``requester`` that ``target_ip`` is at ``target_mac`` (proxy ARP)."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=requester_mac, src=target_mac,
                                       ethertype=ether.ETH_TYPE_ARP))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REPLY, src_mac=target_mac, src_ip=target_ip,
                             dst_mac=requester_mac, dst_ip=requester_ip))
    pkt.serialize()
    return bytes(pkt.data)


@dataclass(frozen=True, slots=True)
class ArpInfo:
    opcode: int
    src_mac: str
    src_ip: str
    dst_mac: str
    dst_ip: str


def parse_arp(data: bytes) -> ArpInfo | None:
    """The ARP fields of an Ethernet frame, or None if it is not ARP."""
    try:
        pkt = packet.Packet(data)
    except Exception:  # noqa: BLE001 - a malformed frame from the wire is just ignored
        return None
    a = pkt.get_protocol(arp.arp)
    if a is None:
        return None
    return ArpInfo(a.opcode, a.src_mac, a.src_ip, a.dst_mac, a.dst_ip)


@dataclass(frozen=True, slots=True)
class LldpProbe:
    dpid: int
    port_no: int


def lldp_probe(dpid: int, port_no: int, ttl_s: int = 120) -> bytes:
    """An LLDP frame naming its sender: chassis id ``dpid:<16 hex digits>`` (locally
    assigned), port id the 32-bit port number (port component) - the os-ken convention."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=lldp.LLDP_MAC_NEAREST_BRIDGE, src=LLDP_SRC_MAC,
                                       ethertype=ether.ETH_TYPE_LLDP))
    tlvs = (
        lldp.ChassisID(subtype=lldp.ChassisID.SUB_LOCALLY_ASSIGNED,
                       chassis_id=f"{LLDP_CHASSIS_PREFIX}{dpid:016x}".encode("ascii")),
        lldp.PortID(subtype=lldp.PortID.SUB_PORT_COMPONENT,
                    port_id=struct.pack("!I", port_no)),
        lldp.TTL(ttl=ttl_s),
        lldp.End(),
    )
    pkt.add_protocol(lldp.lldp(tlvs))
    pkt.serialize()
    return bytes(pkt.data)


def parse_lldp(data: bytes) -> LldpProbe | None:
    """The sender of one of our LLDP probes, or None for anything else (other LLDP speakers)."""
    try:
        pkt = packet.Packet(data)
    except Exception:  # noqa: BLE001
        return None
    lp = pkt.get_protocol(lldp.lldp)
    if lp is None or len(lp.tlvs) < 2:
        return None
    chassis, port = lp.tlvs[0], lp.tlvs[1]
    if not isinstance(chassis, lldp.ChassisID) or not isinstance(port, lldp.PortID):
        return None
    if chassis.subtype != lldp.ChassisID.SUB_LOCALLY_ASSIGNED:
        return None
    if port.subtype != lldp.PortID.SUB_PORT_COMPONENT or len(port.port_id) != 4:
        return None
    text = chassis.chassis_id.decode("ascii", "replace")
    if not text.startswith(LLDP_CHASSIS_PREFIX):
        return None
    try:
        dpid = int(text[len(LLDP_CHASSIS_PREFIX):], 16)
    except ValueError:
        return None
    (port_no,) = struct.unpack("!I", port.port_id)
    return LldpProbe(dpid, port_no)


def eth_type_of(data: bytes) -> int | None:
    """The Ethernet type of a frame (no VLAN handling: the backbone is untagged)."""
    if len(data) < 14:
        return None
    return int.from_bytes(data[12:14], "big")


def ipv4_src_of(data: bytes) -> str | None:
    """The IPv4 source address of an untagged IPv4 frame, or None."""
    if eth_type_of(data) != ether.ETH_TYPE_IP or len(data) < 34:
        return None
    return ".".join(str(b) for b in data[26:30])


def ipv4_dst_of(data: bytes) -> str | None:
    """The IPv4 destination address of an untagged IPv4 frame, or None."""
    if eth_type_of(data) != ether.ETH_TYPE_IP or len(data) < 34:
        return None
    return ".".join(str(b) for b in data[30:34])


def eth_src_of(data: bytes) -> str | None:
    if len(data) < 14:
        return None
    return ":".join(f"{b:02x}" for b in data[6:12])
