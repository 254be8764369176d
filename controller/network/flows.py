"""Flows as data: the pipeline's tables, cookies that name each flow's owner, and plans.

The leaf of the network core: every other module imports it, it imports none of them (and
nothing of os-ken). The OpenFlow 1.3 pipeline:

* table 0, classifier: LLDP -> controller, ARP -> controller (proxy ARP, no flooding),
  IPv4 and MPLS -> table 1; anything else is dropped by the table-miss flow.
* table 1, intents: per active intent, its traffic (IPv4 src/dst of its hosts, optionally
  ip_proto, TCP/UDP ports, DSCP) at the intent's priority at its ingress switch, and the
  MPLS tunnel segments the later switches forward by; miss -> table 2.
* table 2, destinations: per known host, ``ipv4_dst`` = host IP -> toward the host along the
  least-latency path (at the host's switch: out of the host port); miss -> controller.
* packet-ins pass a per-switch OpenFlow meter (packets/s, a drop band) when configured: one
  for LLDP, one for ARP, one for the table-2 miss (:func:`packet_in_meters`).

Cookies name the owner of every flow, so reconciliation and removal are exact and a restarted
controller computes the very same cookies for the same topology and intents::

    bits 63..56  owner kind: 1 pipeline, 2 destination, 3 intent, 4 anycast, 5 tunnel,
                             6 bypass
    bits 55..0   owner id:   pipeline: flow number; destination: the host's IPv4 address as an
                             integer; intent: the intent id; anycast: the client's IPv4
                             address as an integer; tunnel and bypass: the hop's MPLS label
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Action",
    "Buckets",
    "FlowDiff",
    "FlowEntry",
    "FlowPlan",
    "Instructions",
    "Match",
    "cookie_owner",
    "destination_cookie",
    "diff_entries",
    "flow",
    "make_cookie",
    "packet_in_meters",
    "pipeline_flows",
]

PORT_CONTROLLER = 0xFFFF_FFFD  # OFPP_CONTROLLER
TABLE_CLASSIFIER = 0
TABLE_INTENTS = 1
TABLE_DESTINATIONS = 2
TABLE_HEADS = 3
"""the tunnel heads: an intent's ingress flow pushes its head's label and goes here (see
:mod:`.tunnels`)"""
ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_LLDP = 0x88CC
ETH_TYPE_MPLS = 0x8847
PRIORITY_CLASSIFIER = 100
PRIORITY_DESTINATION = 100
PRIORITY_MISS = 0
PRIORITY_TUNNEL = 100
PRIORITY_BYPASS_EXIT = 110
"""table 0: a bypass tunnel's last hop, before the classifier's MPLS flow"""
MPLS_LABEL_MIN = 16
"""labels 0-15 are reserved (RFC 3032)"""
BYPASS_LABEL_SPACE = 1 << 16
"""the top labels are the bypass tunnels' (:mod:`.bypass`)"""
BYPASS_LABEL_MIN = (1 << 20) - BYPASS_LABEL_SPACE
MPLS_LABEL_SPACE = BYPASS_LABEL_MIN - MPLS_LABEL_MIN
"""the labels of the intents' tunnels and heads (:mod:`.tunnels`)"""
BYPASS_GROUP_BASE = 0x7F00_0000
"""a switch's bypass group of port p (fast reroute, :mod:`.bypass`) has id base + p; the
groups of protected intents have the intent's id"""
BYPASS_IP_GROUP_BASE = 0x7E00_0000
"""the same for IPv4 packets (destination flows): id base + p; its bypass labels pop to IPv4"""

OWNER_PIPELINE = 1
OWNER_DESTINATION = 2
OWNER_INTENT = 3
OWNER_ANYCAST = 4
"""anycast NAT flows of one service client (:mod:`controller.compute.steering`); id: the
client's IPv4 address as an integer (one service per client address and anycast address pair)."""
OWNER_TUNNEL = 5
"""the label-switched path of unprotected intents (see :mod:`.tunnels`); id: the label"""
OWNER_BYPASS = 6
"""a hop of a bypass tunnel around a link (fast reroute, see :mod:`.bypass`); id: its label"""
OWNER_KINDS = {OWNER_PIPELINE: "pipeline", OWNER_DESTINATION: "destination",
               OWNER_INTENT: "intent", OWNER_ANYCAST: "anycast", OWNER_TUNNEL: "tunnel",
               OWNER_BYPASS: "bypass"}
OWNER_ID_BITS = 56
OWNER_ID_MASK = (1 << OWNER_ID_BITS) - 1
COOKIE_KIND_MASK = 0xFF << OWNER_ID_BITS

PORT_IN_PORT = 0xFFFF_FFF8  # OFPP_IN_PORT: send a packet back where it came from
METER_ID_MAX = 0xFFFC  # policed intents use their id as meter id (OVS keeps 2^16 and more)
LLDP_METER_ID = 0xFFFD
"""the meter of the LLDP packet-ins every switch sends (``packet_in_control_pps``)"""
ARP_METER_ID = 0xFFFE
"""the meter of the ARP packet-ins (``packet_in_control_pps`` too, apart from LLDP's: an ARP
flood does not starve discovery)"""
PACKET_IN_METER_ID = 0xFFFF
"""the meter of the table-2 miss: packets to destinations no flow knows (``packet_in_pps``)"""
Action = tuple[str, int]
"""how a tunnel flow sends a packet toward the next switch: ("output", port), or ("group",
the port's bypass group) under fast reroute"""
Buckets = tuple[tuple[int, ...], ...]
"""fast-failover buckets as (watch port, output port) or (watch port, output port, label,
in_port): the bucket pushes that MPLS label and sets the packet's in_port before its output
(a bypass tunnel); in order of preference"""


def make_cookie(kind: int, owner_id: int) -> int:
    """The cookie of a flow owned by ``(kind, owner_id)`` (layout in the module docstring)."""
    if kind not in OWNER_KINDS:
        raise ValueError(f"unknown owner kind {kind}")
    if not 0 <= owner_id <= OWNER_ID_MASK:
        raise ValueError(f"owner id {owner_id} does not fit in 56 bits")
    return (kind << OWNER_ID_BITS) | owner_id


def cookie_owner(cookie: int) -> tuple[str, int] | None:
    """``(kind name, owner id)`` of one of our cookies, None for a cookie we never make."""
    kind = cookie >> OWNER_ID_BITS
    if kind not in OWNER_KINDS:
        return None
    return OWNER_KINDS[kind], cookie & OWNER_ID_MASK


# --- flows and plans ---------------------------------------------------------------------------

Match = tuple[tuple[str, Any], ...]
Instructions = tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True, order=True, init=False)
class FlowEntry:
    """One flow as pure, hashable data.

    ``match`` is a sorted tuple of ``(oxm field name, value)`` in os-ken's ``OFPMatch`` keyword
    form (``("ipv4_dst", "10.0.0.2")``). ``instructions`` is a tuple of ``("output", port_no)``
    (all in one apply-actions, in order) followed by at most one ``("goto_table", table_id)``;
    empty means drop.
    """

    table_id: int
    priority: int
    match: Match
    instructions: Instructions
    cookie: int
    _hash: int = field(init=False, repr=False, compare=False)
    """cached: plans are sets of thousands of entries, diffed on every change"""
    key: tuple[int, int, Match] = field(init=False, repr=False, compare=False)
    """What identifies a flow on a switch: an ADD with the same key replaces it."""

    def __init__(self, table_id: int, priority: int, match: Match, instructions: Instructions,
                 cookie: int) -> None:
        # the slots are written through their descriptors (frozen: no __setattr__), bound
        # once below: a batch of 1,000 intents makes over a thousand entries, and the
        # generated __init__ took 0.9 us an entry, this 0.5
        _set_table_id(self, table_id)
        _set_priority(self, priority)
        _set_match(self, match)
        _set_instructions(self, instructions)
        _set_cookie(self, cookie)
        _set_hash(self, hash((table_id, priority, match, instructions, cookie)))
        _set_key(self, (table_id, priority, match))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is not FlowEntry:
            return NotImplemented
        o: FlowEntry = other
        return (self._hash == o._hash and self.match == o.match
                and self.instructions == o.instructions and self.cookie == o.cookie
                and self.table_id == o.table_id and self.priority == o.priority)

    def __reduce__(self) -> tuple[Any, ...]:
        # string hashes differ between processes: rebuild (and rehash) on unpickling
        return (FlowEntry, (self.table_id, self.priority, self.match, self.instructions,
                            self.cookie))

    @property
    def owner(self) -> tuple[str, int] | None:
        return cookie_owner(self.cookie)


(_set_table_id, _set_priority, _set_match, _set_instructions, _set_cookie, _set_hash,
 _set_key) = (FlowEntry.__dict__[name].__set__ for name in (
     "table_id", "priority", "match", "instructions", "cookie", "_hash", "key"))


def flow(table_id: int, priority: int, match: Mapping[str, Any], instructions: Instructions,
         cookie: int) -> FlowEntry:
    return FlowEntry(table_id, priority, tuple(sorted(match.items())), tuple(instructions),
                     cookie)


@dataclass(frozen=True)
class FlowPlan:
    """Per dpid, the set of flows a switch should hold."""

    flows: Mapping[int, frozenset[FlowEntry]]

    def entries(self, dpid: int) -> frozenset[FlowEntry]:
        return self.flows.get(dpid, frozenset())

    def dpids(self) -> list[int]:
        return sorted(self.flows)

    def __len__(self) -> int:
        return sum(len(v) for v in self.flows.values())

    def __iter__(self) -> Iterator[tuple[int, FlowEntry]]:
        for dpid in sorted(self.flows):
            for e in sorted(self.flows[dpid]):
                yield dpid, e


@dataclass(frozen=True)
class FlowDiff:
    adds: tuple[FlowEntry, ...]
    """new flows and changed ones (an ADD with the same key replaces in place)"""
    deletes: tuple[FlowEntry, ...]
    """flows whose key is wanted no more"""

    def __bool__(self) -> bool:
        return bool(self.adds or self.deletes)


def diff_entries(installed: Iterable[FlowEntry], wanted: Iterable[FlowEntry]) -> FlowDiff:
    have = set(installed)
    want = set(wanted)
    want_keys = {e.key for e in want}
    adds = tuple(sorted(want - have))
    deletes = tuple(sorted(e for e in have - want if e.key not in want_keys))
    return FlowDiff(adds, deletes)


def pipeline_flows(packet_in_pps: int = 0, control_pps: int = 0) -> frozenset[FlowEntry]:
    """The base flows every switch holds (table 0 classifier and the table misses). With a
    rate (packets/s, > 0) the packet-ins they make pass a meter first (see
    :func:`packet_in_meters`): LLDP and ARP ``control_pps`` each, the table-2 miss
    ``packet_in_pps``."""
    def ck(n: int) -> int:
        return make_cookie(OWNER_PIPELINE, n)

    def to_ctl(meter_id: int, pps: int) -> Instructions:
        return ((("meter", meter_id),) if pps > 0 else ()) + (("output", PORT_CONTROLLER),)

    return frozenset({
        flow(TABLE_CLASSIFIER, PRIORITY_CLASSIFIER, {"eth_type": ETH_TYPE_LLDP},
             to_ctl(LLDP_METER_ID, control_pps), ck(1)),
        flow(TABLE_CLASSIFIER, PRIORITY_CLASSIFIER, {"eth_type": ETH_TYPE_ARP},
             to_ctl(ARP_METER_ID, control_pps), ck(2)),
        flow(TABLE_CLASSIFIER, PRIORITY_CLASSIFIER, {"eth_type": ETH_TYPE_IPV4},
             (("goto_table", TABLE_INTENTS),), ck(3)),
        flow(TABLE_CLASSIFIER, PRIORITY_CLASSIFIER, {"eth_type": ETH_TYPE_MPLS},
             (("goto_table", TABLE_INTENTS),), ck(7)),
        flow(TABLE_CLASSIFIER, PRIORITY_MISS, {}, (), ck(4)),
        flow(TABLE_INTENTS, PRIORITY_MISS, {}, (("goto_table", TABLE_DESTINATIONS),), ck(5)),
        flow(TABLE_DESTINATIONS, PRIORITY_MISS, {},
             to_ctl(PACKET_IN_METER_ID, packet_in_pps), ck(6)),
    })


def packet_in_meters(packet_in_pps: int = 0, control_pps: int = 0) -> dict[int, int]:
    """meter id -> rate (packets/s) of the meters :func:`pipeline_flows` uses with the same
    rates (a rate of 0: no meter)."""
    return {mid: pps for mid, pps in ((LLDP_METER_ID, control_pps), (ARP_METER_ID, control_pps),
                                      (PACKET_IN_METER_ID, packet_in_pps)) if pps > 0}


@functools.lru_cache(maxsize=1 << 14)
def destination_cookie(ip: str) -> int:
    """The cookie of the destination flows toward host address ``ip``."""
    return make_cookie(OWNER_DESTINATION, int(ipaddress.IPv4Address(ip)))
