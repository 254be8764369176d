"""All OpenFlow message construction, pinned to OpenFlow 1.3 (model: Faucet's ``valve_of.py``).

Messages are os-ken parser objects built with ``datapath=None``; the app sets ``msg.datapath``
(and lets os-ken assign the xid) before sending. Nothing here talks to a socket, so tests read
the messages directly. Also here: the conversion of a switch's flow-stats entries back into
:class:`~controller.network.flows.FlowEntry` for reconciliation. The packets inside packet-ins
and packet-outs (ARP, LLDP, Ethernet and IPv4 headers) are in :mod:`.packets`.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from os_ken.ofproto import ofproto_common
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.network.flows import (
    ETH_TYPE_MPLS,
    PORT_CONTROLLER,
    FlowEntry,
    Instructions,
    Match,
)
from pathcore import pack_bundle_flowmod, pack_match, pack_oxm

__all__ = [
    "BUNDLE_FLAGS",
    "PORT_COUNTERS",
    "FLOW_REMOVED_REASONS",
    "PACKET_IN_REASONS",
    "PORT_STATUS_REASONS",
    "ROLES",
    "FlowStat",
    "EntryFlowMod",
    "apply_actions",
    "barrier_request",
    "bundle_add",
    "bundle_control",
    "flow_stats_request",
    "flowentry_to_msgs",
    "flowmod",
    "flowmod_add",
    "flowmod_delete_strict",
    "flow_stats_of",
    "flowstats_to_entry",
    "goto_table",
    "output_port",
    "packet_out",
    "port_desc_request",
    "port_rows_of",
    "port_stats_request",
    "role_error_text",
    "role_name",
    "role_request",
    "role_request_of",
    "set_async",
    "two_phase",
]

OFP_VERSION = ofp.OFP_VERSION
ALL_COOKIE_BITS = 0xFFFF_FFFF_FFFF_FFFF
"""Source MAC of our LLDP probes (locally administered)."""
assert PORT_CONTROLLER == ofp.OFPP_CONTROLLER


# --- actions and instructions ----------------------------------------------------------------

def output_port(port_no: int, max_len: int = ofp.OFPCML_NO_BUFFER) -> parser.OFPActionOutput:
    """An output action; to the controller the whole packet is sent (no switch buffering)."""
    return parser.OFPActionOutput(port_no, max_len)


def apply_actions(actions: Sequence[Any]) -> parser.OFPInstructionActions:
    return parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(actions))


def goto_table(table_id: int) -> parser.OFPInstructionGotoTable:
    return parser.OFPInstructionGotoTable(table_id)


_FAST_INT_FIELDS = frozenset({"eth_type", "ip_dscp", "ip_proto", "tcp_src", "tcp_dst",
                              "udp_src", "udp_dst", "in_port"})
_FAST_IPV4_FIELDS = frozenset({"ipv4_src", "ipv4_dst"})


@functools.lru_cache(maxsize=64)
def _oxm_number(name: str) -> int:
    return int(ofp.oxm_from_user_header(name))


@functools.lru_cache(maxsize=1 << 12)
def _canonical_ipv4(value: str) -> bool:
    try:
        return str(ipaddress.IPv4Address(value)) == value
    except ValueError:
        return False


@functools.lru_cache(maxsize=1 << 16)
def _match(match: tuple[tuple[str, Any], ...]) -> parser.OFPMatch:
    """The OFPMatch of a FlowEntry match. Cached, and built without os-ken's per-field
    normalisation (~60 us a match, most of the compute of a 1,000-intent batch) when every
    field is one whose user value is already canonical (unmasked integers, dotted-quad IPv4
    addresses): the fields are handed over in OXM order, as normalisation would leave them;
    ``tests/unit/test_core_incremental.py`` checks both ways agree. The objects are shared
    between messages, which is safe because serialising one does not change it; never mutate
    them."""
    fast = all((k in _FAST_INT_FIELDS and type(v) is int)
               or (k in _FAST_IPV4_FIELDS and type(v) is str and _canonical_ipv4(v))
               for k, v in match)
    if not fast:
        return parser.OFPMatch(**dict(match))
    return parser.OFPMatch(_ordered_fields=sorted(match, key=lambda kv: _oxm_number(kv[0])))


_INSTRUCTION_ORDER = {"meter": 0, "push_mpls": 1, "pop_mpls": 1, "set_field": 2, "output": 3,
                      "group": 3, "goto_table": 4}
"""The order of a FlowEntry's instructions (stable within a rank): how :func:`_instructions`
puts them on the wire and how :func:`flowstats_to_entry` reads them back."""
_INSTRUCTION_KINDS = frozenset(_INSTRUCTION_ORDER)


def _supported(insts: Instructions) -> bool:
    """Instructions of kinds we build, at most one meter and one goto."""
    return (all(k in _INSTRUCTION_KINDS for k, _ in insts)
            and sum(k == "meter" for k, _ in insts) <= 1
            and sum(k == "goto_table" for k, _ in insts) <= 1)


@functools.lru_cache(maxsize=1 << 12)
def _instructions(entry_instructions: tuple[tuple[str, Any], ...]) -> tuple[Any, ...]:
    """FlowEntry instructions -> os-ken instructions (outputs in one apply-actions, then goto).
    Cached and shared like :func:`_match`."""
    # MPLS push/pop first (a pushed label is then set by a set-field), then the
    # ("set_field", (oxm field, value)) rewrites (MPLS label, anycast NAT), in order
    outputs: list[Any] = [parser.OFPActionPushMpls(v) if k == "push_mpls"
                          else parser.OFPActionPopMpls(v)
                          for k, v in entry_instructions if k in ("push_mpls", "pop_mpls")]
    outputs += [parser.OFPActionSetField(**{v[0]: v[1]}) for k, v in entry_instructions
                if k == "set_field"]
    outputs += [output_port(v) for k, v in entry_instructions if k == "output"]
    outputs += [parser.OFPActionGroup(v) for k, v in entry_instructions if k == "group"]
    gotos = [v for k, v in entry_instructions if k == "goto_table"]
    meters = [v for k, v in entry_instructions if k == "meter"]
    if not _supported(entry_instructions):
        raise ValueError(f"unsupported instructions {entry_instructions!r}")
    inst: list[Any] = []
    if meters:  # ("meter", meter_id): the meter instruction comes first (OpenFlow 1.3 order)
        inst.append(parser.OFPInstructionMeter(meters[0], ofp.OFPIT_METER))
    if outputs:
        inst.append(apply_actions(outputs))
    if gotos:
        inst.append(goto_table(gotos[0]))
    return tuple(inst)


# --- flow mods ---------------------------------------------------------------------------------

def flowmod(*, command: int, table_id: int, priority: int, match: parser.OFPMatch,
            cookie: int = 0, cookie_mask: int = 0, instructions: Sequence[Any] = (),
            out_port: int = ofp.OFPP_ANY, out_group: int = ofp.OFPG_ANY,
            flags: int = 0) -> parser.OFPFlowMod:
    """A FlowMod with ``datapath=None`` (the app attaches the datapath before sending)."""
    return parser.OFPFlowMod(
        datapath=None, cookie=cookie, cookie_mask=cookie_mask, table_id=table_id,
        command=command, idle_timeout=0, hard_timeout=0, priority=priority,
        buffer_id=ofp.OFP_NO_BUFFER, out_port=out_port, out_group=out_group, flags=flags,
        match=match, instructions=list(instructions))


def flowmod_add(entry: FlowEntry) -> parser.OFPFlowMod:
    """OFPFC_ADD of ``entry``: replaces a flow with the same table, priority and match in place
    (counters reset), which is what makes an in-place path change atomic on one switch.
    ``OFPFF_SEND_FLOW_REM`` is set so a flow deleted behind the controller's back is reported
    (see ``ControllerCore.flows_removed``)."""
    return _quick_flowmod(entry, ofp.OFPFC_ADD, 0, ofp.OFPFF_SEND_FLOW_REM, True)


def flowmod_delete_strict(entry: FlowEntry) -> parser.OFPFlowMod:
    """OFPFC_DELETE_STRICT of exactly ``entry`` (same table, priority, match and cookie), so
    a flow someone replaced under another cookie is not removed by mistake."""
    return _quick_flowmod(entry, ofp.OFPFC_DELETE_STRICT, ALL_COOKIE_BITS, 0, False)


_FLOWMOD_DEFAULTS = dict(vars(flowmod(command=ofp.OFPFC_ADD, table_id=0, priority=0,
                                      match=parser.OFPMatch())))
"""Every attribute of a FlowMod as :func:`flowmod` leaves it (``datapath``, ``xid``, ``buf``
None; no timeouts; no buffer; any out port and group)."""


class EntryFlowMod(parser.OFPFlowMod):  # type: ignore[misc]  # os-ken ships no types: Any
    """An ``OFPFlowMod`` made from a :class:`FlowEntry` (by :func:`flowmod_add` and
    :func:`flowmod_delete_strict`). It is an ordinary os-ken FlowMod to everything that reads
    it, but it is cheap to make and to send: its ``match`` and ``instructions`` objects are
    built only when read, and :meth:`serialize` packs the wire bytes itself with ``struct``
    from byte strings cached per match and per instruction list, the match and OXM fields
    encoded by pathcore (Rust); :meth:`bundle_wire`, the sender's path, packs the whole
    bundle-add there (about 4 us a FlowMod with the app's send, against 20-45 us for
    os-ken's generic serialiser). Fields and actions the packer does not know fall back to
    os-ken's serialiser; ``tests/unit/test_openflow_wire.py`` checks the bytes against
    os-ken's for both. Never mutate the match or instruction objects read from one (they
    are shared)."""

    _wire_match: Match | None
    _wire_instructions: Instructions

    @property
    def match(self) -> parser.OFPMatch:
        d = self.__dict__
        m = d.get("_match_obj")
        if m is None:
            m = d["_match_obj"] = _match(d["_wire_match"])
        return m

    @match.setter
    def match(self, value: parser.OFPMatch) -> None:
        self.__dict__["_match_obj"] = value
        self.__dict__["_wire_match"] = None  # somebody else's match: os-ken serialises it

    @property
    def instructions(self) -> list[Any]:
        d = self.__dict__
        inst = d.get("_inst_obj")
        if inst is None:
            inst = d["_inst_obj"] = list(_instructions(d["_wire_instructions"]))
        return inst

    @instructions.setter
    def instructions(self, value: list[Any]) -> None:
        self.__dict__["_inst_obj"] = value
        self.__dict__["_wire_match"] = None

    def serialize(self) -> None:
        if self._pack((self.xid or 0) & 0xFFFF_FFFF) is None:
            super().serialize()

    def wire(self, xid: int) -> bytes | None:
        """Give the message ``xid`` and return its bytes (also left in ``buf``, as
        :meth:`serialize` leaves them), or None when os-ken's serialiser must do it (nothing
        is set then). The sender's path for the thousands of FlowMods of a big change: one
        call instead of os-ken's ``set_xid``, ``serialize`` and a copy of the buffer."""
        out = self._pack(xid)
        if out is not None:
            self.__dict__["xid"] = xid
        return out

    def bundle_wire(self, xid: int, bundle_id: int, flags: int | None = None) -> bytes | None:
        """:meth:`wire` inside an ONF bundle-add message of bundle ``bundle_id`` (``flags``:
        :data:`BUNDLE_FLAGS` by default), packed in one go (``pathcore.pack_bundle_flowmod``:
        most matches are new, one per intent, and encoding them was most of the sender's
        time): what :func:`bundle_add` makes of :meth:`wire`'s bytes, which stay in ``buf``.
        None when os-ken's serialiser must do it (nothing is set then)."""
        d = self.__dict__
        match = d["_wire_match"]
        if match is None:
            return None
        insts = _cached(_instructions_wire, d["_wire_instructions"], _wire_of_instructions)
        if insts is None:
            return None
        fixed = _fixed_part(d)
        if fixed is None:
            return None
        out: bytes | None = pack_bundle_flowmod(
            xid, bundle_id, BUNDLE_FLAGS if flags is None else flags, fixed, match, insts)
        if out is None:
            return None
        _sent_as(d, xid, out[BUNDLE_ADD_HEADER_BYTES:])
        return out

    def _pack(self, xid: int) -> bytes | None:
        body = _flowmod_body(self)
        if body is None:
            return None
        size = _OFP_HEADER.size + len(body)
        out = _OFP_HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD, size, xid) + body
        _sent_as(self.__dict__, None, out)
        return out


def _sent_as(d: dict[str, Any], xid: int | None, wire: bytes) -> None:
    """Leave in a FlowMod's ``__dict__`` what os-ken's ``serialize`` leaves: its header
    fields and ``buf`` (``wire``, its bytes), and its ``xid`` unless None."""
    d["version"] = ofp.OFP_VERSION
    d["msg_type"] = ofp.OFPT_FLOW_MOD
    d["msg_len"] = len(wire)
    d["buf"] = wire
    if xid is not None:
        d["xid"] = xid


_ENTRY_FLOWMOD_DEFAULTS = {k: v for k, v in _FLOWMOD_DEFAULTS.items()
                           if k not in ("match", "instructions")}


def _quick_flowmod(entry: FlowEntry, command: int, cookie_mask: int, flags: int,
                   with_instructions: bool) -> EntryFlowMod:
    """What :func:`flowmod` builds, without ``OFPFlowMod.__init__`` and without building the
    match and instruction objects until someone reads them (a change moving 1,000 intents
    builds thousands of FlowMods). ``tests/unit/test_core_incremental.py`` and
    ``tests/unit/test_openflow_wire.py`` check the result against os-ken's constructor."""
    if with_instructions and _cached(_instructions_wire, entry.instructions,
                                     _wire_of_instructions) is None:
        _instructions(entry.instructions)  # unsupported instructions raise here, not later
    msg = EntryFlowMod.__new__(EntryFlowMod)
    d = msg.__dict__
    d.update(_ENTRY_FLOWMOD_DEFAULTS)
    d["command"] = command
    d["table_id"] = entry.table_id
    d["priority"] = entry.priority
    d["cookie"] = entry.cookie
    d["cookie_mask"] = cookie_mask
    d["flags"] = flags
    d["_wire_match"] = entry.match
    d["_wire_instructions"] = entry.instructions if with_instructions else ()
    return msg


# --- wire bytes without os-ken's serialiser ----------------------------------------------------

_OFP_HEADER = struct.Struct("!BBHI")
_FLOWMOD_FIXED = struct.Struct("!QQBBHHHIIIH2x")
_WIRE_CACHE_MAX = 1 << 16
_match_wire: dict[Match, bytes | None] = {}
_instructions_wire: dict[Instructions, bytes | None] = {}


_oxm_wire: dict[tuple[str, Any, type], bytes | None] = {}


def _oxm(name: str, value: Any) -> bytes | None:
    """The OXM TLV of one unmasked field (``pathcore.pack_oxm``), None for what the packer
    leaves to os-ken (masks, fields it does not know, values not in canonical form).
    Cached: the same labels and addresses recur in thousands of set-field actions."""
    return _cached(_oxm_wire, (name, value, type(value)), _make_oxm)


def _make_oxm(key: tuple[str, Any, type]) -> bytes | None:
    return pack_oxm(key[0], key[1])


def _pad8(n: int) -> int:
    return (n + 7) // 8 * 8


def _wire_of_match(match: Match) -> bytes | None:
    """``ofp_match`` (OXM, fields in field-number order as os-ken sends them, padded):
    ``pathcore.pack_match``, None where os-ken must encode it."""
    return pack_match(match)


def _wire_of_instructions(insts: Instructions) -> bytes | None:
    """The instructions of a FlowEntry as :func:`_instructions` builds them: meter, then one
    apply-actions (set-fields, outputs, groups), then goto-table."""
    if not _supported(insts):
        return None  # _instructions says why
    actions = b""
    for kinds in (("push_mpls", "pop_mpls"), ("set_field",), ("output",), ("group",)):
        for k, v in insts:
            if k not in kinds:
                continue
            if k in ("push_mpls", "pop_mpls"):
                actions += struct.pack("!HHH2x", ofp.OFPAT_PUSH_MPLS if k == "push_mpls"
                                       else ofp.OFPAT_POP_MPLS, 8, v)
            elif k == "set_field":
                tlv = _oxm(v[0], v[1])
                if tlv is None:
                    return None
                size = _pad8(4 + len(tlv))
                actions += struct.pack("!HH", ofp.OFPAT_SET_FIELD, size) + tlv + \
                    bytes(size - 4 - len(tlv))
            elif k == "output":
                actions += struct.pack("!HHIH6x", ofp.OFPAT_OUTPUT, 16, v,
                                       ofp.OFPCML_NO_BUFFER)
            else:
                actions += struct.pack("!HHI", ofp.OFPAT_GROUP, 8, v)
    out = b""
    meters = [v for k, v in insts if k == "meter"]
    gotos = [v for k, v in insts if k == "goto_table"]
    if meters:
        out += struct.pack("!HHI", ofp.OFPIT_METER, 8, meters[0])
    if actions:
        out += struct.pack("!HH4x", ofp.OFPIT_APPLY_ACTIONS, 8 + len(actions)) + actions
    if gotos:
        out += struct.pack("!HHB3x", ofp.OFPIT_GOTO_TABLE, 8, gotos[0])
    return out


_MISSING = object()


def _cached(cache: dict[Any, Any], key: Any, make: Any) -> Any:
    """``cache[key]``, made by ``make(key)`` the first time (None when the packer cannot:
    os-ken's serialiser does it then); an unhashable key is never cached."""
    try:
        value = cache.get(key, _MISSING)  # a miss is common (each intent's own match)
    except TypeError:
        return None
    if value is not _MISSING:
        return value
    try:
        value = make(key)
    except (struct.error, TypeError, ValueError, IndexError):
        value = None
    if len(cache) >= _WIRE_CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


def _flowmod_body(msg: EntryFlowMod) -> bytes | None:
    """Everything of ``msg`` after the OpenFlow header, or None when os-ken must do it."""
    key = msg._wire_match
    if key is None:
        return None
    match = _cached(_match_wire, key, _wire_of_match)
    if match is None:
        return None
    insts = _cached(_instructions_wire, msg._wire_instructions, _wire_of_instructions)
    if insts is None:
        return None
    fixed = _fixed_part(msg.__dict__)
    if fixed is None:
        return None
    return fixed + match + insts


def _fixed_part(d: dict[str, Any]) -> bytes | None:
    """A FlowMod's fields between its header and its match, from its ``__dict__`` (every
    field is there, :func:`_quick_flowmod`); None when one is out of range."""
    try:
        return _FLOWMOD_FIXED.pack(d["cookie"], d["cookie_mask"], d["table_id"], d["command"],
                                   d["idle_timeout"], d["hard_timeout"], d["priority"],
                                   d["buffer_id"], d["out_port"], d["out_group"], d["flags"])
    except struct.error:
        return None


_ONF_HEADER = struct.Struct("!BBHIII")
_BUNDLE_CTRL = struct.Struct("!IHH")
_BUNDLE_ADD = struct.Struct("!I2xH")
BUNDLE_FLAGS = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
"""Our bundles apply all their FlowMods at once, in order, or none of them."""


def bundle_control(bundle_id: int, type_: int, xid: int, flags: int = BUNDLE_FLAGS) -> bytes:
    """Wire bytes of an ONF bundle-control message (OpenFlow 1.3 bundle extension, EXT-230;
    Open vSwitch implements it): ``type_`` is ``ofp.ONF_BCT_OPEN_REQUEST``,
    ``ONF_BCT_COMMIT_REQUEST``, ..."""
    size = _ONF_HEADER.size + _BUNDLE_CTRL.size
    return _ONF_HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER, size, xid,
                            ofproto_common.ONF_EXPERIMENTER_ID, ofp.ONF_ET_BUNDLE_CONTROL) + \
        _BUNDLE_CTRL.pack(bundle_id, type_, flags)


_BUNDLE_ADD_HEADER = struct.Struct(_ONF_HEADER.format + _BUNDLE_ADD.format[1:])
BUNDLE_ADD_HEADER_BYTES = _BUNDLE_ADD_HEADER.size
"""What a bundle-add message puts before the message it carries."""


def bundle_add(bundle_id: int, inner: bytes, flags: int = BUNDLE_FLAGS,
               xid: int | None = None) -> bytes:
    """Wire bytes of an ONF bundle-add message carrying the message ``inner`` (its bytes;
    the outer xid is the inner one, as the extension requires: ``xid`` when the caller
    knows it)."""
    if xid is None:
        xid = int.from_bytes(inner[4:8], "big")
    return _BUNDLE_ADD_HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER,
                                   _BUNDLE_ADD_HEADER.size + len(inner), xid,
                                   ofproto_common.ONF_EXPERIMENTER_ID,
                                   ofp.ONF_ET_BUNDLE_ADD_MESSAGE, bundle_id, flags) + inner


def meter_mod(command: int, meter_id: int, rate_kbps: int = 0, *,
              pktps: bool = False) -> parser.OFPMeterMod:
    """OFPMeterMod: ``OFPMC_ADD``/``OFPMC_MODIFY`` a meter with one DROP band at
    ``rate_kbps`` and a burst of 100 ms at that rate (at least 10 full-size frames; without
    ``OFPMF_BURST`` OVS allows a whole second's worth, which let twice the rate through in
    the first second of a test), or ``OFPMC_DELETE`` it. With ``pktps`` the rate is in
    packets/s (``OFPMF_PKTPS``; the burst again 100 ms of it, at least 10 packets)."""
    if command == ofp.OFPMC_DELETE:
        return parser.OFPMeterMod(datapath=None, command=command, flags=0,
                                  meter_id=meter_id, bands=[])
    burst = max(rate_kbps // 10, 10 if pktps else 120)
    unit = ofp.OFPMF_PKTPS if pktps else ofp.OFPMF_KBPS
    return parser.OFPMeterMod(datapath=None, command=command, flags=unit | ofp.OFPMF_BURST,
                              meter_id=meter_id,
                              bands=[parser.OFPMeterBandDrop(rate=rate_kbps,
                                                             burst_size=burst)])


def group_mod_ff(command: int, group_id: int,
                 buckets: Sequence[tuple[int, ...]] = ()) -> parser.OFPGroupMod:
    """OFPGroupMod of a fast-failover group: ``buckets`` as (watch port, output port) or
    (watch port, output port, MPLS label, in_port): a bypass tunnel's bucket first pushes
    the label and sets the packet's ``in_port`` (so it may leave by the port it came in on);
    in order of preference; ``OFPGC_DELETE`` takes none."""
    bks = []
    for watch, out, *bypass in buckets:
        actions: list[Any] = [output_port(out)]
        if bypass:
            label, in_port = bypass
            actions[:0] = [parser.OFPActionPushMpls(ETH_TYPE_MPLS),
                           parser.OFPActionSetField(mpls_label=label),
                           parser.OFPActionSetField(in_port_nxm=in_port)]
        bks.append(parser.OFPBucket(weight=0, watch_port=watch, watch_group=ofp.OFPG_ANY,
                                    actions=actions))
    return parser.OFPGroupMod(datapath=None, command=command, type_=ofp.OFPGT_FF,
                              group_id=group_id, buckets=bks)


_ECHO_TAG = b"cpn-echo"


def echo_request(sent_s: float) -> parser.OFPEchoRequest:
    """An echo request carrying the (monotonic) time it was made, for control-channel RTTs."""
    return parser.OFPEchoRequest(datapath=None, data=_ECHO_TAG + struct.pack("!d", sent_s))


def parse_echo(data: bytes | None) -> float | None:
    """The send time in one of our echo payloads, None for anyone else's."""
    if not data or len(data) != len(_ECHO_TAG) + 8 or not data.startswith(_ECHO_TAG):
        return None
    return float(struct.unpack("!d", data[len(_ECHO_TAG):])[0])


# --- roles of several controllers (OpenFlow 1.3 section 6.3.7) ---------------------------------

ROLES = {"nochange": ofp.OFPCR_ROLE_NOCHANGE, "equal": ofp.OFPCR_ROLE_EQUAL,
         "master": ofp.OFPCR_ROLE_MASTER, "slave": ofp.OFPCR_ROLE_SLAVE}
"""role name -> ``OFPCR_ROLE_*``"""
_ROLE_NAMES = {v: k for k, v in ROLES.items()}
_ROLE_REQUEST = struct.Struct("!I4xQ")
_ROLE_ERRORS = {ofp.OFPRRFC_STALE: "OFPRRFC_STALE (an older generation_id than the switch "
                                   "holds)",
                ofp.OFPRRFC_UNSUP: "OFPRRFC_UNSUP (the switch does not support roles)",
                ofp.OFPRRFC_BAD_ROLE: "OFPRRFC_BAD_ROLE (invalid role)"}


def role_request(role: str, generation_id: int) -> parser.OFPRoleRequest:
    """OFPRoleRequest for ``role`` (``"master"``, ``"slave"``, ``"equal"`` or
    ``"nochange"``) with the master-election ``generation_id`` (unsigned 64 bits). The switch
    refuses a master or slave request whose generation is older than the newest it has seen
    (error OFPRRFC_STALE); making one connection master turns its other masters into slaves.
    ``ValueError`` for an unknown role or a generation out of range."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {sorted(ROLES)}")
    if not 0 <= generation_id <= 0xFFFF_FFFF_FFFF_FFFF:
        raise ValueError(f"generation_id {generation_id} is not an unsigned 64-bit number")
    return parser.OFPRoleRequest(None, ROLES[role], generation_id)


def role_name(role: int) -> str:
    """The name of an ``OFPCR_ROLE_*`` value (of a role reply), ``"unknown"`` for others."""
    return _ROLE_NAMES.get(role, "unknown")


def role_request_of(data: bytes | None) -> tuple[str, int] | None:
    """(role, generation_id) of the role request an error message carries back (its
    ``data`` starts with the refused message), None when ``data`` is not one."""
    if not data or len(data) < _OFP_HEADER.size + _ROLE_REQUEST.size:
        return None
    version, msg_type, _, _ = _OFP_HEADER.unpack_from(data)
    if version != ofp.OFP_VERSION or msg_type != ofp.OFPT_ROLE_REQUEST:
        return None
    role, generation_id = _ROLE_REQUEST.unpack_from(data, _OFP_HEADER.size)
    return role_name(role), int(generation_id)


def role_error_text(code: int) -> str:
    """Words for an ``OFPET_ROLE_REQUEST_FAILED`` error code."""
    name = _ROLE_ERRORS.get(code, f"code {code}")
    return f"role request refused: {name} (OpenFlow error type " \
           f"{ofp.OFPET_ROLE_REQUEST_FAILED} code {code})"


PACKET_IN_REASONS = 1 << ofp.OFPR_NO_MATCH | 1 << ofp.OFPR_ACTION
"""Packet-ins a controller gets by default as master (OpenFlow 1.3 and Open vSwitch): a
table miss and an output to the controller (our LLDP and ARP flows)."""
PORT_STATUS_REASONS = 1 << ofp.OFPPR_ADD | 1 << ofp.OFPPR_DELETE | 1 << ofp.OFPPR_MODIFY
FLOW_REMOVED_REASONS = (1 << ofp.OFPRR_IDLE_TIMEOUT | 1 << ofp.OFPRR_HARD_TIMEOUT
                        | 1 << ofp.OFPRR_DELETE | 1 << ofp.OFPRR_GROUP_DELETE)


def set_async(packet_in_mask: tuple[int, int] = (PACKET_IN_REASONS, PACKET_IN_REASONS),
              port_status_mask: tuple[int, int] = (PORT_STATUS_REASONS, PORT_STATUS_REASONS),
              flow_removed_mask: tuple[int, int] = (FLOW_REMOVED_REASONS, 0)
              ) -> parser.OFPSetAsync:
    """OFPSetAsync: which asynchronous messages the switch sends on this connection, each
    mask a pair (as master or equal, as slave) of ``1 << reason`` bits. The defaults are a
    cluster member's: as master what the switch sends by default; as slave the same
    packet-ins (LLDP and ARP reach every member, so each learns hosts and checks links
    alike; a switch sends a slave none by default) and port status, and no flow-removed
    (only the master restores flows)."""
    return parser.OFPSetAsync(None, list(packet_in_mask), list(port_status_mask),
                              list(flow_removed_mask))


def barrier_request() -> parser.OFPBarrierRequest:
    return parser.OFPBarrierRequest(None)


def flow_stats_request(table_id: int = ofp.OFPTT_ALL) -> parser.OFPFlowStatsRequest:
    """Read every flow of the switch (all tables, any cookie) for reconciliation."""
    return parser.OFPFlowStatsRequest(None, 0, table_id, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0,
                                      parser.OFPMatch())


def port_desc_request() -> parser.OFPPortDescStatsRequest:
    return parser.OFPPortDescStatsRequest(None, 0)


def port_stats_request() -> parser.OFPPortStatsRequest:
    """Statistics of every port (link load, drops)."""
    return parser.OFPPortStatsRequest(None, 0, ofp.OFPP_ANY)


def packet_out(port_no: int, data: bytes, in_port: int = ofp.OFPP_CONTROLLER
               ) -> parser.OFPPacketOut:
    """Send ``data`` out of ``port_no`` (no buffer on the switch)."""
    return parser.OFPPacketOut(datapath=None, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                               actions=[output_port(port_no)], data=data)


def flowentry_to_msgs(adds: Iterable[FlowEntry] = (), deletes: Iterable[FlowEntry] = (),
                      barrier: bool = True) -> list[Any]:
    """Messages for one switch: adds (sorted, table 2 before 1 before 0 so a goto never
    points at an empty table), then strict deletes, then one barrier."""
    msgs: list[Any] = [flowmod_add(e) for e in sorted(adds, key=_add_order)]
    msgs += [flowmod_delete_strict(e) for e in sorted(deletes, key=_delete_order)]
    if barrier and msgs:
        msgs.append(barrier_request())
    return msgs


def _add_order(e: FlowEntry) -> tuple[int, int, int, tuple[Any, ...]]:
    return (-e.table_id, -e.priority, e.cookie, e.match)


def _delete_order(e: FlowEntry) -> tuple[int, int, int, tuple[Any, ...]]:
    return (e.table_id, -e.priority, e.cookie, e.match)


def two_phase(adds: Mapping[int, Sequence[FlowEntry]],
              deletes: Mapping[int, Sequence[FlowEntry]],
              early_deletes: Mapping[int, Sequence[FlowEntry]] | None = None
              ) -> tuple[dict[int, list[Any]], dict[int, list[Any]]]:
    """The reorder step for make-before-break: the first phase holds every switch's adds
    (ending with a barrier), the second every switch's deletes (ending with a barrier). The
    second must only be sent once all barriers of the first are confirmed.

    ``early_deletes`` go into the first phase, after the adds: flows with nothing to make before
    breaking them (an intent fallen back to best effort: its old path is dead and its
    leftover flows would capture the traffic that now follows table 2)."""
    early = early_deletes or {}
    make = {dpid: flowentry_to_msgs(adds=adds.get(dpid, ()), deletes=early.get(dpid, ()))
            for dpid in sorted(set(adds) | set(early)) if adds.get(dpid) or early.get(dpid)}
    brk = {dpid: flowentry_to_msgs(deletes=es) for dpid, es in sorted(deletes.items()) if es}
    return make, brk


# --- reading flows back ------------------------------------------------------------------------

def flowremoved_to_entry(msg: Any) -> FlowEntry:
    """An ``OFPFlowRemoved`` as a :class:`FlowEntry`. The message carries no instructions, so
    ``instructions`` is empty: compare by key and cookie, as
    ``ControllerCore.flows_removed`` does."""
    return FlowEntry(table_id=msg.table_id, priority=msg.priority,
                     match=tuple(sorted(msg.match.items())), instructions=(), cookie=msg.cookie)


_ACTION_ITEMS: dict[type, Callable[[Any], tuple[str, Any]]] = {
    parser.OFPActionOutput: lambda a: ("output", a.port),
    parser.OFPActionSetField: lambda a: ("set_field", (a.key, a.value)),
    parser.OFPActionGroup: lambda a: ("group", a.group_id),
    parser.OFPActionPushMpls: lambda a: ("push_mpls", a.ethertype),
    parser.OFPActionPopMpls: lambda a: ("pop_mpls", a.ethertype),
}
"""an apply-actions action as the ``(name, value)`` item of :attr:`FlowEntry.instructions`"""
_INSTRUCTION_ITEMS: dict[type, Callable[[Any], tuple[str, Any]]] = {
    parser.OFPInstructionGotoTable: lambda i: ("goto_table", i.table_id),
    parser.OFPInstructionMeter: lambda i: ("meter", i.meter_id),
}


def _item_of(items: Mapping[type, Callable[[Any], tuple[str, Any]]], obj: Any
             ) -> tuple[str, Any]:
    make = items.get(type(obj))
    return make(obj) if make is not None else ("other", repr(obj))


def flowstats_to_entry(stat: Any) -> FlowEntry:
    """An ``OFPFlowStats`` (from a flow-stats reply) as a :class:`FlowEntry`, so it compares
    equal to the entry that produced it. Instructions we never generate become ``("other",
    ...)`` items, which never equal a wanted entry, so reconciliation replaces them."""
    instructions: list[tuple[str, Any]] = []
    for inst in stat.instructions:
        if isinstance(inst, parser.OFPInstructionActions) and inst.type == ofp.OFPIT_APPLY_ACTIONS:
            instructions.extend(_item_of(_ACTION_ITEMS, act) for act in inst.actions)
        else:
            instructions.append(_item_of(_INSTRUCTION_ITEMS, inst))
    # the same order FlowEntry uses (stable sort)
    instructions.sort(key=lambda kv: _INSTRUCTION_ORDER.get(kv[0], 5))
    return FlowEntry(table_id=stat.table_id, priority=stat.priority,
                     match=tuple(sorted(stat.match.items())),
                     instructions=tuple(instructions), cookie=stat.cookie)


@dataclass(frozen=True, slots=True)
class FlowStat:
    """One flow as the switch reported it: the entry (compares equal to the plan's) and its
    counters."""

    entry: FlowEntry
    packets: int
    bytes: int
    duration_s: float


PORT_COUNTERS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped",
                 "tx_dropped", "rx_errors", "tx_errors")
"""The counters of a port :func:`port_rows_of` reads (beside ``duration_s``)."""


def flow_stats_of(parts: Iterable[Any]) -> list[FlowStat]:
    """The entries of a flow-stats reply (all its parts) with their counters, sorted by
    entry."""
    stats = [FlowStat(flowstats_to_entry(s), int(s.packet_count), int(s.byte_count),
                      s.duration_sec + s.duration_nsec / 1e9) for s in parts]
    stats.sort(key=lambda st: st.entry)
    return stats


def port_rows_of(descs: Iterable[Any], stats: Iterable[Any]) -> list[dict[str, Any]]:
    """A switch's ports from its port-description and port-stats replies: ``port_no``,
    ``name``, ``hw_addr``, ``link_up``, ``admin_up``, ``curr_speed_kbps``, the
    :data:`PORT_COUNTERS` and ``duration_s`` (counters None for a port the statistics lack).
    Physical ports only (not LOCAL), sorted by ``port_no``."""
    by_port: dict[int, dict[str, Any]] = {}

    def row(port_no: int) -> dict[str, Any]:
        return by_port.setdefault(port_no, {
            "port_no": port_no, "name": None, "hw_addr": None, "link_up": None,
            "admin_up": None, "curr_speed_kbps": None, **dict.fromkeys(PORT_COUNTERS),
            "duration_s": None})

    for d in descs:
        if d.port_no <= ofp.OFPP_MAX:
            name = d.name.decode(errors="replace") if isinstance(d.name, bytes) else d.name
            row(d.port_no).update(name=name.rstrip("\x00"), hw_addr=d.hw_addr,
                                  link_up=not d.state & ofp.OFPPS_LINK_DOWN,
                                  admin_up=not d.config & ofp.OFPPC_PORT_DOWN,
                                  curr_speed_kbps=d.curr_speed)
    for st in stats:
        if st.port_no <= ofp.OFPP_MAX:
            row(st.port_no).update({k: int(getattr(st, k)) for k in PORT_COUNTERS},
                                   duration_s=st.duration_sec + st.duration_nsec / 1e9)
    return [by_port[p] for p in sorted(by_port)]
