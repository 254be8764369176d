"""Packets the controller reads and writes: proxy-ARP replies, LLDP probes (discovery and
link delay; signed with :func:`lldp_mac` when discovery is authenticated), and the Ethernet
and IPv4 header fields of packet-ins. Pure: bytes in, bytes or records out; nothing here
talks to a socket.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from os_ken.lib.packet import arp, ethernet, lldp, packet
from os_ken.ofproto import ether

__all__ = ["LLDP_AUTH_OUI", "LLDP_AUTH_SUBTYPE", "LLDP_CHASSIS_PREFIX", "LLDP_SRC_MAC",
           "ArpInfo", "LldpProbe", "LldpSignature", "arp_reply", "eth_src_of", "eth_type_of",
           "ipv4_dst_of", "ipv4_header_ok", "ipv4_src_of", "lldp_mac", "lldp_probe",
           "parse_arp", "parse_lldp"]

LLDP_CHASSIS_PREFIX = "dpid:"
LLDP_SRC_MAC = "0e:00:00:00:00:01"
LLDP_AUTH_OUI = b"\x02\x43\x50"
"""OUI of the signature TLV: locally administered (the U/L bit of the first octet set),
"CP" after it; no registered organisation uses it"""
LLDP_AUTH_SUBTYPE = 1
"""signature TLV subtype: HMAC-SHA256, version 1 of the layout in :func:`lldp_mac`"""
_AUTH_INFO = struct.Struct("!QQ32s")
"""signature TLV information: time (ms since the epoch), nonce, HMAC-SHA256"""
_MAC_DOMAIN = b"cpn-lldp-v1"


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
class LldpSignature:
    """What a signed probe carries beyond its sender: when it was signed (wall clock, ms
    since the epoch: the members of a cluster check each other's probes), a nonce that makes
    each probe unique, and the HMAC-SHA256 of :func:`lldp_mac`."""

    time_ms: int
    nonce: int
    mac: bytes


@dataclass(frozen=True, slots=True)
class LldpProbe:
    dpid: int
    port_no: int
    signature: LldpSignature | None = None
    """None: the probe carries no signature TLV"""


def lldp_mac(key: bytes, dpid: int, port_no: int, time_ms: int, nonce: int) -> bytes:
    """HMAC-SHA256, keyed by the deployment's discovery secret, over a domain tag and the
    sender's dpid (64 bits), port (32 bits), the signing time in ms (64 bits) and the nonce
    (64 bits), big-endian."""
    msg = _MAC_DOMAIN + struct.pack("!QIQQ", dpid, port_no, time_ms, nonce)
    return hmac.new(key, msg, hashlib.sha256).digest()


def lldp_probe(dpid: int, port_no: int, ttl_s: int = 120, *,
               signature: LldpSignature | None = None) -> bytes:
    """An LLDP frame naming its sender: chassis id ``dpid:<16 hex digits>`` (locally
    assigned), port id the 32-bit port number (port component) - the os-ken convention -
    and, with ``signature``, an organisationally specific TLV (type 127, OUI
    :data:`LLDP_AUTH_OUI`, subtype :data:`LLDP_AUTH_SUBTYPE`) holding it."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=lldp.LLDP_MAC_NEAREST_BRIDGE, src=LLDP_SRC_MAC,
                                       ethertype=ether.ETH_TYPE_LLDP))
    tlvs: list[lldp.LLDPBasicTLV] = [
        lldp.ChassisID(subtype=lldp.ChassisID.SUB_LOCALLY_ASSIGNED,
                       chassis_id=f"{LLDP_CHASSIS_PREFIX}{dpid:016x}".encode("ascii")),
        lldp.PortID(subtype=lldp.PortID.SUB_PORT_COMPONENT,
                    port_id=struct.pack("!I", port_no)),
        lldp.TTL(ttl=ttl_s),
    ]
    if signature is not None:
        info = _AUTH_INFO.pack(signature.time_ms, signature.nonce, signature.mac)
        tlvs.append(lldp.OrganizationallySpecific(oui=LLDP_AUTH_OUI, subtype=LLDP_AUTH_SUBTYPE,
                                                  info=info))
    tlvs.append(lldp.End())
    pkt.add_protocol(lldp.lldp(tlvs))
    pkt.serialize()
    return bytes(pkt.data)


def parse_lldp(data: bytes) -> LldpProbe | None:
    """The sender (and signature, if any) of one of our LLDP probes, or None for anything
    else: other LLDP speakers, and probes whose signature TLV is not the size it must be or
    comes twice."""
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
    signed = [t for t in lp.tlvs if isinstance(t, lldp.OrganizationallySpecific)
              and t.oui == LLDP_AUTH_OUI and t.subtype == LLDP_AUTH_SUBTYPE]
    if not signed:
        return LldpProbe(dpid, port_no)
    if len(signed) > 1 or len(signed[0].info) != _AUTH_INFO.size:
        return None
    time_ms, nonce, mac = _AUTH_INFO.unpack(signed[0].info)
    return LldpProbe(dpid, port_no, LldpSignature(time_ms, nonce, mac))


def ipv4_header_ok(data: bytes) -> bool:
    """An untagged frame holding a whole IPv4 header: version 4, header length 5-15 words,
    all of it present."""
    if len(data) < 34 or data[14] >> 4 != 4:
        return False
    ihl = data[14] & 0x0F
    return ihl >= 5 and len(data) >= 14 + 4 * ihl


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
