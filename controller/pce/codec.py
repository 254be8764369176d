"""PCEP on the wire: messages, objects and TLVs of RFC 5440, 8231, 8281 and 8664 (pure).

:func:`decode_message` turns one framed message into a :class:`Message` of typed objects and
raises :class:`PcepDecodeError` carrying the PCEP error (type, value) or the Close reason the
peer is to be answered with; every ``encode`` gives the bytes of one object or message. The
module knows nothing of sessions, sockets or paths.
"""

from __future__ import annotations

import builtins
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "HEADER_LEN", "MAX_MESSAGE_LEN", "Bandwidth", "Close", "CloseReason", "EndPoints", "Ero",
    "ErrorObject", "Lsp", "LspIdentifiers", "Message", "MessageType", "Metric", "MetricType",
    "NoPath", "ObjectiveFunction", "Open", "PcepDecodeError", "PcepObject", "PolicyColor",
    "RawObject", "Rp", "SrSubobject", "Srp", "Tlv", "decode_message", "encode_message",
    "frame_length",
]

VERSION = 1
HEADER_LEN = 4
MAX_MESSAGE_LEN = 65535
"""The length field is 16 bits: no message is longer."""


class MessageType(IntEnum):
    OPEN = 1
    KEEPALIVE = 2
    PCREQ = 3
    PCREP = 4
    PCNTF = 5
    PCERR = 6
    CLOSE = 7
    PCRPT = 10
    PCUPD = 11
    PCINITIATE = 12


class ObjClass(IntEnum):
    OPEN = 1
    RP = 2
    NO_PATH = 3
    END_POINTS = 4
    BANDWIDTH = 5
    METRIC = 6
    ERO = 7
    RRO = 8
    LSPA = 9
    IRO = 10
    SVEC = 11
    NOTIFICATION = 12
    ERROR = 13
    LOAD_BALANCING = 14
    CLOSE = 15
    OF = 21
    LSP = 32
    SRP = 33
    VENDOR_INFORMATION = 34
    ASSOCIATION = 40


class MetricType(IntEnum):
    IGP = 1
    TE = 2
    HOP_COUNT = 3
    SID_DEPTH = 11
    PATH_DELAY = 12
    """RFC 8233: the path's delay in microseconds"""


class CloseReason(IntEnum):
    NO_EXPLANATION = 1
    DEAD_TIMER = 2
    MALFORMED = 3
    TOO_MANY_UNKNOWN_REQUESTS = 4
    TOO_MANY_UNKNOWN_MESSAGES = 5


# TLV types
TLV_NO_PATH_VECTOR = 1
TLV_STATEFUL_CAPABILITY = 16
TLV_SYMBOLIC_PATH_NAME = 17
TLV_IPV4_LSP_IDENTIFIERS = 18
TLV_SR_PCE_CAPABILITY = 26
TLV_PATH_SETUP_TYPE = 28
TLV_PATH_SETUP_TYPE_CAPABILITY = 34
PST_SR = 1
STATEFUL_U = 0x1
STATEFUL_I = 0x4

# ERO subobject types: IPv4 prefix, SR (RFC 8664) and SR of the draft FRR's PCC also reads
RO_IPV4 = 1
RO_SR = 36
RO_SR_DRAFT07 = 5
# SR-ERO flags and NAI types
SR_F_NAI_ABSENT = 0x8
SR_S_SID_ABSENT = 0x4
SR_C = 0x2
SR_M_MPLS = 0x1
NAI_ABSENT = 0
NAI_IPV4_NODE = 1
NAI_IPV6_NODE = 2
NAI_IPV4_ADJACENCY = 3
_NAI_LEN = {NAI_ABSENT: 0, NAI_IPV4_NODE: 4, NAI_IPV6_NODE: 16, NAI_IPV4_ADJACENCY: 8,
            4: 32, 5: 16, 6: 40}


class PcepDecodeError(Exception):
    """What was wrong with a message, and how to answer: a PCErr (``error_type``,
    ``error_value``) or, for a message that cannot be framed, a Close with ``close_reason``."""

    def __init__(self, message: str, *, error_type: int = 0, error_value: int = 0,
                 close_reason: CloseReason | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.error_value = error_value
        self.close_reason = close_reason


def _malformed(message: str) -> PcepDecodeError:
    return PcepDecodeError(message, close_reason=CloseReason.MALFORMED)


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise _malformed(f"{what} object shorter than {size} bytes")


# TLVs ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Tlv:
    type: int
    value: bytes

    def encode(self) -> bytes:
        pad = (-len(self.value)) % 4
        return struct.pack("!HH", self.type, len(self.value)) + self.value + b"\0" * pad


def decode_tlvs(data: bytes, where: str) -> list[Tlv]:
    tlvs: list[Tlv] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise _malformed(f"{where}: truncated TLV header")
        tlv_type, length = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + length
        if end > len(data):
            raise _malformed(f"{where}: TLV {tlv_type} of {length} bytes overruns its object")
        tlvs.append(Tlv(tlv_type, data[pos + 4:end]))
        pos = end + ((-length) % 4)
    return tlvs


def _tlv(tlvs: list[Tlv], tlv_type: int) -> Tlv | None:
    return next((t for t in tlvs if t.type == tlv_type), None)


def pst_tlv() -> Tlv:
    return Tlv(TLV_PATH_SETUP_TYPE, struct.pack("!I", PST_SR))


# Objects ---------------------------------------------------------------------------------------

class PcepObject:
    """One object: its class and type, the P (processing rule) and I (ignore) flags, and a
    body. Subclasses decode their body in ``from_body`` and build it in ``body``."""

    obj_class: int = 0
    obj_type: int = 1
    p_flag: bool = False
    i_flag: bool = False

    def body(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        body = self.body()
        flags = (self.obj_type << 4) | (0x2 if self.p_flag else 0) | (0x1 if self.i_flag else 0)
        return struct.pack("!BBH", self.obj_class, flags, 4 + len(body)) + body


@dataclass
class RawObject(PcepObject):
    """An object kept as bytes (one this PCE reads nothing from, or of an unknown class)."""

    cls: int = 0
    otype: int = 0
    data: bytes = b""

    def __post_init__(self) -> None:
        self.obj_class, self.obj_type = self.cls, self.otype

    def body(self) -> bytes:
        return self.data


@dataclass
class Open(PcepObject):
    keepalive_s: int = 30
    dead_timer_s: int = 120
    session_id: int = 0
    stateful_flags: int | None = None
    """the STATEFUL-PCE-CAPABILITY flags (U = 0x1, I = 0x4), None when absent"""
    sr_msd: int | None = None
    """the SR-PCE-CAPABILITY's maximum SID depth (0: no limit given), None when absent"""
    version: int = VERSION
    tlvs: list[Tlv] = field(default_factory=list)
    obj_class = ObjClass.OPEN

    @classmethod
    def from_body(cls, data: bytes) -> Open:
        _need(data, 4, "OPEN")
        ver_flags, keepalive, dead, sid = struct.unpack_from("!BBBB", data)
        tlvs = decode_tlvs(data[4:], "OPEN")
        stateful = _tlv(tlvs, TLV_STATEFUL_CAPABILITY)
        flags = struct.unpack("!I", stateful.value[:4])[0] if stateful and \
            len(stateful.value) >= 4 else None
        msd: int | None = None
        sr = _tlv(tlvs, TLV_SR_PCE_CAPABILITY)
        pst = _tlv(tlvs, TLV_PATH_SETUP_TYPE_CAPABILITY)
        if sr is not None and len(sr.value) >= 4:
            msd = sr.value[3]
        elif pst is not None and len(pst.value) >= 4:
            count = pst.value[3]
            subs = decode_tlvs(pst.value[4 + count + ((-count) % 4):], "PST capability")
            sub = _tlv(subs, TLV_SR_PCE_CAPABILITY)
            if sub is not None and len(sub.value) >= 4:
                msd = sub.value[3]
        return cls(keepalive_s=keepalive, dead_timer_s=dead, session_id=sid,
                   stateful_flags=flags, sr_msd=msd, version=ver_flags >> 5, tlvs=tlvs)

    def body(self) -> bytes:
        out = struct.pack("!BBBB", self.version << 5, self.keepalive_s, self.dead_timer_s,
                          self.session_id)
        if self.stateful_flags is not None:
            out += Tlv(TLV_STATEFUL_CAPABILITY, struct.pack("!I", self.stateful_flags)).encode()
        if self.sr_msd is not None:
            sr = struct.pack("!HBB", 0, 0, self.sr_msd)
            out += Tlv(TLV_PATH_SETUP_TYPE_CAPABILITY,
                       struct.pack("!3xB", 2) + bytes([0, PST_SR]) + b"\0\0"
                       + Tlv(TLV_SR_PCE_CAPABILITY, sr).encode()).encode()
            out += Tlv(TLV_SR_PCE_CAPABILITY, sr).encode()
        return out


@dataclass
class Rp(PcepObject):
    request_id: int = 0
    flags: int = 0
    tlvs: list[Tlv] = field(default_factory=lambda: [pst_tlv()])
    obj_class = ObjClass.RP
    p_flag = True

    @classmethod
    def from_body(cls, data: bytes) -> Rp:
        _need(data, 8, "RP")
        flags, req = struct.unpack_from("!II", data)
        return cls(request_id=req, flags=flags, tlvs=decode_tlvs(data[8:], "RP"))

    @property
    def path_setup_type(self) -> int:
        t = _tlv(self.tlvs, TLV_PATH_SETUP_TYPE)
        return t.value[3] if t is not None and len(t.value) >= 4 else 0

    def body(self) -> bytes:
        return struct.pack("!II", self.flags, self.request_id) + b"".join(
            t.encode() for t in self.tlvs)


@dataclass
class NoPath(PcepObject):
    nature: int = 0
    """NI 0: no path satisfies the constraints"""
    unsatisfied: bool = True
    """the C flag: the METRIC and BANDWIDTH objects that follow are the unmet constraints"""
    reason_flags: int = 0
    """NO-PATH-VECTOR bits (RFC 5440: 0x1 PCE unavailable, 0x2 unknown destination, 0x4
    unknown source); 0 leaves the TLV out"""
    obj_class = ObjClass.NO_PATH

    @classmethod
    def from_body(cls, data: bytes) -> NoPath:
        _need(data, 4, "NO-PATH")
        nature, flags = struct.unpack_from("!BH", data)
        vector = _tlv(decode_tlvs(data[4:], "NO-PATH"), TLV_NO_PATH_VECTOR)
        reason = struct.unpack("!I", vector.value[:4])[0] if vector and \
            len(vector.value) >= 4 else 0
        return cls(nature=nature, unsatisfied=bool(flags & 0x8000), reason_flags=reason)

    def body(self) -> bytes:
        out = struct.pack("!BHx", self.nature, 0x8000 if self.unsatisfied else 0)
        if self.reason_flags:
            out += Tlv(TLV_NO_PATH_VECTOR, struct.pack("!I", self.reason_flags)).encode()
        return out


@dataclass
class EndPoints(PcepObject):
    source: str = ""
    destination: str = ""
    obj_class = ObjClass.END_POINTS
    p_flag = True

    def __post_init__(self) -> None:
        self.obj_type = 2 if self.ipv6 else 1

    @property
    def ipv6(self) -> bool:
        return ":" in self.source

    @classmethod
    def decode(cls, otype: int, data: bytes) -> EndPoints:
        size = {1: 4, 2: 16}.get(otype)
        if size is None:
            raise PcepDecodeError(f"END-POINTS of type {otype} not supported",
                                  error_type=4, error_value=2)
        if len(data) != 2 * size:
            raise _malformed(f"END-POINTS type {otype} body is {len(data)} bytes, not "
                             f"{2 * size}")
        make = ipaddress.IPv4Address if size == 4 else ipaddress.IPv6Address
        ep = cls(source=str(make(data[:size])), destination=str(make(data[size:])))
        ep.obj_type = otype
        return ep

    def body(self) -> bytes:
        return (ipaddress.ip_address(self.source).packed
                + ipaddress.ip_address(self.destination).packed)


@dataclass
class Bandwidth(PcepObject):
    bytes_per_s: float = 0.0
    obj_class = ObjClass.BANDWIDTH

    @classmethod
    def decode(cls, otype: int, data: bytes) -> Bandwidth:
        if len(data) != 4:
            raise _malformed(f"BANDWIDTH body is {len(data)} bytes, not 4")
        bw = cls(bytes_per_s=struct.unpack("!f", data)[0])
        bw.obj_type = otype
        return bw

    @property
    def mbps(self) -> float:
        return self.bytes_per_s * 8 / 1e6

    def body(self) -> bytes:
        return struct.pack("!f", self.bytes_per_s)


@dataclass
class Metric(PcepObject):
    metric_type: int = MetricType.TE
    value: float = 0.0
    bound: bool = False
    computed: bool = False
    obj_class = ObjClass.METRIC

    @classmethod
    def from_body(cls, data: bytes) -> Metric:
        if len(data) != 8:
            raise _malformed(f"METRIC body is {len(data)} bytes, not 8")
        flags, mtype, value = struct.unpack("!2xBBf", data)
        return cls(metric_type=mtype, value=value, bound=bool(flags & 0x1),
                   computed=bool(flags & 0x2))

    def body(self) -> bytes:
        flags = (0x1 if self.bound else 0) | (0x2 if self.computed else 0)
        return struct.pack("!2xBBf", flags, self.metric_type, self.value)


@dataclass
class ObjectiveFunction(PcepObject):
    code: int = 1
    obj_class = ObjClass.OF

    @classmethod
    def from_body(cls, data: bytes) -> ObjectiveFunction:
        _need(data, 4, "OF")
        return cls(code=struct.unpack_from("!H", data)[0])

    def body(self) -> bytes:
        return struct.pack("!H2x", self.code)


@dataclass(frozen=True, slots=True)
class SrSubobject:
    """One segment of an SR-ERO: an MPLS label and its NAI (a node's router id, or the
    local and remote interface addresses of an adjacency)."""

    label: int | None
    nai_type: int = NAI_IPV4_NODE
    nai: tuple[str, ...] = ()
    loose: bool = False

    def encode(self, subobject_type: int = RO_SR) -> bytes:
        flags = SR_M_MPLS
        if self.label is None:
            flags |= SR_S_SID_ABSENT
        if not self.nai:
            flags |= SR_F_NAI_ABSENT
        body = struct.pack("!H", ((self.nai_type if self.nai else 0) << 12) | flags)
        if self.label is not None:
            body += struct.pack("!I", self.label << 12)
        for addr in self.nai:
            body += ipaddress.ip_address(addr).packed
        first = (0x80 if self.loose else 0) | subobject_type
        return struct.pack("!BB", first, 2 + len(body)) + body


@dataclass
class Ero(PcepObject):
    segments: list[SrSubobject] = field(default_factory=list)
    other_subobjects: int = 0
    """subobjects of other kinds (an IPv4 prefix hop ...), counted, not kept"""
    obj_class = ObjClass.ERO

    @classmethod
    def from_body(cls, data: bytes) -> Ero:
        segments: list[SrSubobject] = []
        others = 0
        pos = 0
        while pos < len(data):
            if len(data) - pos < 2:
                raise _malformed("ERO: truncated subobject header")
            first, length = data[pos], data[pos + 1]
            if length < 2 or pos + length > len(data):
                raise _malformed(f"ERO: subobject length {length} does not fit the object")
            sub = data[pos + 2:pos + length]
            kind = first & 0x7F
            if kind in (RO_SR, RO_SR_DRAFT07):
                segments.append(_decode_sr(sub, loose=bool(first & 0x80)))
            else:
                others += 1
            pos += length
        return cls(segments=segments, other_subobjects=others)

    def body(self) -> bytes:
        out = b"".join(s.encode() for s in self.segments)
        return out + b"\0" * ((-len(out)) % 4)


def _decode_sr(sub: bytes, *, loose: bool) -> SrSubobject:
    if len(sub) < 2:
        raise _malformed("SR-ERO subobject shorter than its flags")
    nt_flags = struct.unpack_from("!H", sub)[0]
    nai_type, flags = nt_flags >> 12, nt_flags & 0xFFF
    pos = 2
    label = None
    if not flags & SR_S_SID_ABSENT:
        if len(sub) < pos + 4:
            raise _malformed("SR-ERO subobject: SID missing")
        label = struct.unpack_from("!I", sub, pos)[0] >> 12
        pos += 4
    nai: tuple[str, ...] = ()
    if not flags & SR_F_NAI_ABSENT:
        size = _NAI_LEN.get(nai_type)
        if size is None or len(sub) < pos + size:
            raise _malformed(f"SR-ERO subobject: NAI type {nai_type} does not fit")
        raw = sub[pos:pos + size]
        if nai_type == NAI_IPV4_NODE:
            nai = (str(ipaddress.IPv4Address(raw)),)
        elif nai_type == NAI_IPV4_ADJACENCY:
            nai = (str(ipaddress.IPv4Address(raw[:4])), str(ipaddress.IPv4Address(raw[4:])))
        elif nai_type == NAI_IPV6_NODE:
            nai = (str(ipaddress.IPv6Address(raw)),)
    return SrSubobject(label=label, nai_type=nai_type, nai=nai, loose=loose)


ENTERPRISE_CISCO = 9
CISCO_COLOR = 0x00010004
"""The SR policy colour as the VENDOR-INFORMATION object carries it (Cisco's enterprise
number and colour TLV): what FRR's PCC reads the colour of a PCE-initiated policy from."""


@dataclass
class PolicyColor(PcepObject):
    color: int = 0
    obj_class = ObjClass.VENDOR_INFORMATION

    def body(self) -> bytes:
        return struct.pack("!III", ENTERPRISE_CISCO, CISCO_COLOR, self.color)


@dataclass(frozen=True, slots=True)
class LspIdentifiers:
    sender: str
    lsp_id: int
    tunnel_id: int
    extended_tunnel_id: str
    endpoint: str


@dataclass
class Lsp(PcepObject):
    plsp_id: int = 0
    delegate: bool = False
    sync: bool = False
    remove: bool = False
    administrative: bool = False
    operational: int = 0
    create: bool = False
    """the C flag of RFC 8281: the PCE made this LSP"""
    name: str | None = None
    identifiers: LspIdentifiers | None = None
    obj_class = ObjClass.LSP

    @classmethod
    def from_body(cls, data: bytes) -> Lsp:
        _need(data, 4, "LSP")
        word = struct.unpack_from("!I", data)[0]
        flags = word & 0xFFF
        tlvs = decode_tlvs(data[4:], "LSP")
        name_tlv = _tlv(tlvs, TLV_SYMBOLIC_PATH_NAME)
        name = name_tlv.value.decode("utf-8", "replace") if name_tlv else None
        ident = None
        ids = _tlv(tlvs, TLV_IPV4_LSP_IDENTIFIERS)
        if ids is not None and len(ids.value) >= 16:
            v = ids.value
            ident = LspIdentifiers(
                sender=str(ipaddress.IPv4Address(v[0:4])),
                lsp_id=struct.unpack_from("!H", v, 4)[0],
                tunnel_id=struct.unpack_from("!H", v, 6)[0],
                extended_tunnel_id=str(ipaddress.IPv4Address(v[8:12])),
                endpoint=str(ipaddress.IPv4Address(v[12:16])))
        return cls(plsp_id=word >> 12, delegate=bool(flags & 0x1), sync=bool(flags & 0x2),
                   remove=bool(flags & 0x4), administrative=bool(flags & 0x8),
                   operational=(flags >> 4) & 0x7, create=bool(flags & 0x80), name=name,
                   identifiers=ident)

    def body(self) -> bytes:
        flags = ((0x1 if self.delegate else 0) | (0x2 if self.sync else 0)
                 | (0x4 if self.remove else 0) | (0x8 if self.administrative else 0)
                 | ((self.operational & 0x7) << 4) | (0x80 if self.create else 0))
        out = struct.pack("!I", (self.plsp_id << 12) | flags)
        if self.name is not None:
            out += Tlv(TLV_SYMBOLIC_PATH_NAME, self.name.encode()).encode()
        ids = self.identifiers
        if ids is not None:
            out += Tlv(TLV_IPV4_LSP_IDENTIFIERS, ipaddress.IPv4Address(ids.sender).packed
                       + struct.pack("!HH", ids.lsp_id, ids.tunnel_id)
                       + ipaddress.IPv4Address(ids.extended_tunnel_id).packed
                       + ipaddress.IPv4Address(ids.endpoint).packed).encode()
        return out


@dataclass
class Srp(PcepObject):
    srp_id: int = 0
    remove: bool = False
    obj_class = ObjClass.SRP

    @classmethod
    def from_body(cls, data: bytes) -> Srp:
        _need(data, 8, "SRP")
        flags, srp_id = struct.unpack_from("!II", data)
        decode_tlvs(data[8:], "SRP")
        return cls(srp_id=srp_id, remove=bool(flags & 0x1))

    def body(self) -> bytes:
        return struct.pack("!II", 0x1 if self.remove else 0, self.srp_id) + pst_tlv().encode()


@dataclass
class ErrorObject(PcepObject):
    error_type: int = 0
    error_value: int = 0
    obj_class = ObjClass.ERROR

    @classmethod
    def from_body(cls, data: bytes) -> ErrorObject:
        _need(data, 4, "PCEP-ERROR")
        _, _, etype, evalue = struct.unpack_from("!BBBB", data)
        return cls(error_type=etype, error_value=evalue)

    def body(self) -> bytes:
        return struct.pack("!BBBB", 0, 0, self.error_type, self.error_value)


@dataclass
class Close(PcepObject):
    reason: int = CloseReason.NO_EXPLANATION
    obj_class = ObjClass.CLOSE

    @classmethod
    def from_body(cls, data: bytes) -> Close:
        _need(data, 4, "CLOSE")
        return cls(reason=data[3])

    def body(self) -> bytes:
        return struct.pack("!HBB", 0, 0, self.reason)


_SIMPLE_DECODERS: dict[tuple[int, int], Callable[[bytes], PcepObject]] = {
    (ObjClass.OPEN, 1): Open.from_body,
    (ObjClass.RP, 1): Rp.from_body,
    (ObjClass.NO_PATH, 1): NoPath.from_body,
    (ObjClass.METRIC, 1): Metric.from_body,
    (ObjClass.ERO, 1): Ero.from_body,
    (ObjClass.OF, 1): ObjectiveFunction.from_body,
    (ObjClass.LSP, 1): Lsp.from_body,
    (ObjClass.SRP, 1): Srp.from_body,
    (ObjClass.ERROR, 1): ErrorObject.from_body,
    (ObjClass.CLOSE, 1): Close.from_body,
}
_KEPT_RAW = {ObjClass.RRO, ObjClass.LSPA, ObjClass.IRO, ObjClass.SVEC, ObjClass.NOTIFICATION,
             ObjClass.LOAD_BALANCING, ObjClass.VENDOR_INFORMATION, ObjClass.ASSOCIATION}


def decode_object(cls_: int, otype: int, p: bool, i: bool, data: bytes) -> PcepObject:
    obj: PcepObject
    simple = _SIMPLE_DECODERS.get((cls_, otype))
    if simple is not None:
        obj = simple(data)
    elif cls_ == ObjClass.END_POINTS:
        obj = EndPoints.decode(otype, data)
    elif cls_ == ObjClass.BANDWIDTH and otype in (1, 2, 5):  # 5: FRR's copy for other PCEs
        obj = Bandwidth.decode(otype, data)
    elif cls_ in _KEPT_RAW:
        obj = RawObject(cls=cls_, otype=otype, data=data)
    elif cls_ in {c.value for c in ObjClass}:
        raise PcepDecodeError(f"object class {cls_} has no type {otype}", error_type=3,
                              error_value=2)
    else:
        raise PcepDecodeError(f"unknown object class {cls_}", error_type=3, error_value=1)
    obj.p_flag, obj.i_flag = p, i
    return obj


# Messages --------------------------------------------------------------------------------------

@dataclass
class Message:
    type: int
    objects: list[PcepObject] = field(default_factory=list)

    def encode(self) -> bytes:
        return encode_message(self.type, self.objects)

    def first(self, kind: builtins.type[PcepObject]) -> PcepObject | None:
        return next((o for o in self.objects if isinstance(o, kind)), None)


def encode_message(msg_type: int, objects: list[PcepObject]) -> bytes:
    body = b"".join(o.encode() for o in objects)
    return struct.pack("!BBH", VERSION << 5, msg_type, HEADER_LEN + len(body)) + body


def frame_length(header: bytes) -> int:
    """The length of the message whose first 4 bytes are ``header``; raises
    :class:`PcepDecodeError` (a Close: the stream cannot be trusted) for a wrong version or a
    length shorter than the header."""
    ver_flags, _, length = struct.unpack("!BBH", header)
    if ver_flags >> 5 != VERSION:
        raise _malformed(f"PCEP version {ver_flags >> 5}, not {VERSION}")
    if length < HEADER_LEN:
        raise _malformed(f"message length {length} is shorter than its header")
    return int(length)


def decode_message(data: bytes) -> Message:
    """One whole message (header included) into a :class:`Message`."""
    length = frame_length(data[:HEADER_LEN])
    if length != len(data):
        raise _malformed(f"message length field {length}, {len(data)} bytes given")
    msg_type = data[1]
    if msg_type not in {m.value for m in MessageType}:
        raise PcepDecodeError(f"unknown message type {msg_type}", error_type=0, error_value=0,
                              close_reason=None)
    objects: list[PcepObject] = []
    pos = HEADER_LEN
    while pos < length:
        if length - pos < 4:
            raise _malformed("truncated object header")
        cls_, flags, olen = struct.unpack_from("!BBH", data, pos)
        if olen < 4 or olen % 4 or pos + olen > length:
            raise _malformed(f"object class {cls_}: length {olen} is not a multiple of 4 "
                             "within the message")
        objects.append(decode_object(cls_, flags >> 4, bool(flags & 0x2), bool(flags & 0x1),
                                     data[pos + 4:pos + olen]))
        pos += olen
    return Message(type=msg_type, objects=objects)
