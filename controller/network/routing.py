"""Intents -> paths -> a FlowPlan (pure: no os-ken, no sockets).

Pipeline (OpenFlow 1.3; tables and priorities are constants below):

* table 0, classifier: LLDP -> controller, ARP -> controller (proxy ARP, no flooding),
  IPv4 -> table 1; anything else is dropped by the table-miss flow.
* table 1, intents: per active intent, its traffic (IPv4 src/dst of its hosts, optionally
  ip_proto, TCP/UDP ports, DSCP) at the intent's priority -> out of the next port on the path;
  miss -> table 2.
* table 2, destinations: per known host, ``ipv4_dst`` = host IP -> toward the host along the
  least-latency path (at the host's switch: out of the host port); miss -> controller.

Intents are one-directional (src host -> dst host for their match); the return traffic follows
the destination flows of table 2, unless another intent covers it.

When no path meets an intent's bounds the intent is ``infeasible`` (never installed since it was
added) or ``degraded`` (it was installed and lost its path). Its traffic then falls back to
``best_effort`` (the DEFAULT: its flows are replaced by one flow at the ingress switch that
sends its traffic to table 2, i.e. along the least-latency destination flows) or, with
``fallback="drop"``, to a drop flow at the ingress switch. Keeping an ingress flow rather than
deleting all the intent's flows serves make-before-break: the ingress flow is modified in place
in phase 0, so traffic leaves a dead path at once instead of after the phase-2 deletes, and its
packet counter shows how much of the intent's traffic runs best effort.

Cookies name the owner of every flow, so reconciliation and removal are exact and a restarted
controller computes the very same cookies for the same topology and intents::

    bits 63..56  owner kind: 1 pipeline, 2 destination, 3 intent, 4 anycast
    bits 55..0   owner id:   pipeline: flow number; destination: the host's IPv4 address as an
                             integer; intent: the intent id; anycast: the client's IPv4
                             address as an integer (flows set with Router.set_external)
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from controller.errors import NotFound, TopologyError

if TYPE_CHECKING:
    from controller.network.state import NetworkState
    from controller.topology.model import IntentSpec

__all__ = [
    "FALLBACKS",
    "FlowEntry",
    "FlowPlan",
    "FlowDiff",
    "Intent",
    "PathChange",
    "Router",
    "cookie_owner",
    "diff",
    "make_cookie",
]

log = logging.getLogger("controller.network.routing")

PORT_CONTROLLER = 0xFFFF_FFFD  # OFPP_CONTROLLER
TABLE_CLASSIFIER = 0
TABLE_INTENTS = 1
TABLE_DESTINATIONS = 2
ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_LLDP = 0x88CC
ETH_TYPE_MPLS = 0x8847
PRIORITY_CLASSIFIER = 100
PRIORITY_DESTINATION = 100
PRIORITY_MISS = 0
PRIORITY_TUNNEL = 100
MPLS_LABEL_MIN = 16
"""labels 0-15 are reserved (RFC 3032)"""
MPLS_LABEL_SPACE = (1 << 20) - MPLS_LABEL_MIN

OWNER_PIPELINE = 1
OWNER_DESTINATION = 2
OWNER_INTENT = 3
OWNER_ANYCAST = 4
"""anycast NAT flows of one service client (controller/compute/steering.py); id: the client's IPv4
address as an integer (one service per client address and anycast address pair)."""
OWNER_TUNNEL = 5
"""the label-switched path of unprotected intents (see Router, "Tunnels"); id: the label"""
OWNER_KINDS = {OWNER_PIPELINE: "pipeline", OWNER_DESTINATION: "destination",
               OWNER_INTENT: "intent", OWNER_ANYCAST: "anycast", OWNER_TUNNEL: "tunnel"}
OWNER_ID_BITS = 56
OWNER_ID_MASK = (1 << OWNER_ID_BITS) - 1
COOKIE_KIND_MASK = 0xFF << OWNER_ID_BITS

FALLBACKS = ("best_effort", "drop")
INTENT_STATES = ("installed", "pending", "infeasible", "degraded")
_UNBOUNDED_MS = 1e12  # "no latency bound" for pathcore, which wants a finite number
_INTENT_VARIANTS = 3  # flow sets kept per intent (see Router._refresh_intent)
PORT_IN_PORT = 0xFFFF_FFF8  # OFPP_IN_PORT: send a packet back where it came from
Buckets = tuple[tuple[int, int], ...]
TunnelKey = tuple[str, tuple[int, ...], int]
"""a tunnel segment: (its switch, the links from it to the egress switch, egress host port)"""
"""fast-failover buckets as (watch port, output port), in order of preference"""
_Variant = tuple[dict[int, frozenset["FlowEntry"]], dict[int, Buckets], str]
"""an intent's flows per switch, its fast-failover groups per switch, its protection note"""
METER_ID_MAX = 0xFFFF  # policed intents use their id as meter id (OVS keeps 2^16 and more)


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


@dataclass(frozen=True, slots=True, order=True)
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.table_id, self.priority, self.match,
                                                self.instructions, self.cookie)))
        object.__setattr__(self, "key", (self.table_id, self.priority, self.match))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if other.__class__ is not FlowEntry:
            return NotImplemented
        o: FlowEntry = other  # type: ignore[assignment]
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


def diff(installed: FlowPlan, wanted: FlowPlan) -> dict[int, FlowDiff]:
    """Per dpid, what turns ``installed`` into ``wanted`` (dpids with nothing to do left out)."""
    out: dict[int, FlowDiff] = {}
    for dpid in sorted(set(installed.flows) | set(wanted.flows)):
        d = diff_entries(installed.entries(dpid), wanted.entries(dpid))
        if d:
            out[dpid] = d
    return out


def pipeline_flows() -> frozenset[FlowEntry]:
    """The base flows every switch holds (table 0 classifier and the table misses)."""
    def ck(n: int) -> int:
        return make_cookie(OWNER_PIPELINE, n)

    to_ctl = (("output", PORT_CONTROLLER),)
    return frozenset({
        flow(TABLE_CLASSIFIER, PRIORITY_CLASSIFIER, {"eth_type": ETH_TYPE_LLDP}, to_ctl, ck(1)),
        flow(TABLE_CLASSIFIER, PRIORITY_CLASSIFIER, {"eth_type": ETH_TYPE_ARP}, to_ctl, ck(2)),
        flow(TABLE_CLASSIFIER, PRIORITY_CLASSIFIER, {"eth_type": ETH_TYPE_IPV4},
             (("goto_table", TABLE_INTENTS),), ck(3)),
        flow(TABLE_CLASSIFIER, PRIORITY_CLASSIFIER, {"eth_type": ETH_TYPE_MPLS},
             (("goto_table", TABLE_INTENTS),), ck(7)),
        flow(TABLE_CLASSIFIER, PRIORITY_MISS, {}, (), ck(4)),
        flow(TABLE_INTENTS, PRIORITY_MISS, {}, (("goto_table", TABLE_DESTINATIONS),), ck(5)),
        flow(TABLE_DESTINATIONS, PRIORITY_MISS, {}, to_ctl, ck(6)),
    })


# --- intents -------------------------------------------------------------------------------------

class PathChange(NamedTuple):
    """One entry of an intent's history (a named tuple: a cut makes a thousand of them)."""

    time: float
    old_path: tuple[str, ...] | None
    new_path: tuple[str, ...] | None
    cause: str


HISTORY_MAX = 100
"""path changes kept per intent (the oldest go first): a flapping link must not grow an
intent's history without bound"""


@dataclass
class Intent:
    """A route request and what became of it."""

    id: int
    spec: IntentSpec
    state: str = "pending"
    reason: str = ""
    path: tuple[str, ...] | None = None
    links: tuple[int, ...] | None = None
    """pathcore link ids of ``path`` (they tell parallel links apart)"""
    latency_ms: float | None = None
    cost: float | None = None
    history: list[PathChange] = field(default_factory=list)
    ever_installed: bool = False
    pending_since_token: int = 0
    mpls_label: int | None = None
    """the label the intent's ingress pushes, that of the first segment of the tunnel its
    traffic rides (None: no tunnel - protected, single-switch, fallen back or not routed)"""
    mpls_labels: tuple[int, ...] = ()
    """the labels its traffic carries, one per switch after the ingress (each swaps to the
    next; the last pops)"""
    protection_note: str = ""
    """for ``protection: true``: "" when every link of the path has a detour within the
    bound, else which links lack one and why (the intent is then only partly protected)"""
    traffic: tuple[Any, ...] = field(init=False, repr=False, compare=False)
    """what the intent's flows match besides the hosts' addresses, and their priority: two
    intents with the same hosts and ``traffic`` cannot both hold flows"""

    def __post_init__(self) -> None:
        self.traffic = (_match_items(self.spec), _priority(self.spec))

    @property
    def name(self) -> str:
        return self.spec.name or f"intent-{self.id}"

    def snapshot(self) -> Intent:
        """A copy that later changes of this intent do not touch (every field but the
        history is immutable or replaced, never mutated: a shallow copy with its own
        history list is enough, at a fraction of ``copy.deepcopy``'s cost)."""
        c = object.__new__(Intent)
        c.__dict__.update(self.__dict__)
        c.history = list(self.history)
        return c

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "src": self.spec.src, "dst": self.spec.dst,
            "max_latency_ms": self.spec.max_latency_ms,
            "min_bandwidth_mbps": self.spec.min_bandwidth_mbps,
            "priority": self.spec.priority, "state": self.state, "reason": self.reason,
            "protection": self.spec.protection, "protection_note": self.protection_note,
            "police": self.spec.police, "mpls_label": self.mpls_label,
            "mpls_labels": list(self.mpls_labels),
            "path": list(self.path) if self.path else None, "latency_ms": self.latency_ms,
            "history": [{"time": h.time, "old_path": h.old_path, "new_path": h.new_path,
                         "cause": h.cause} for h in self.history],
        }


def _fmt_path(nodes: Iterable[str]) -> str:
    return "-".join(nodes)


class DeferredMessage:
    """A log message formatted when (and only if) it is logged: ``str()`` calls
    ``fn(*args)``. A big change logs one summary line and each intent at DEBUG only, so its
    thousand reroute lines are usually never formatted."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., str], *args: Any) -> None:
        self.fn = fn
        self.args = args

    def __str__(self) -> str:
        return self.fn(*self.args)


def _reroute_text(name: str | None, intent_id: int, old_path: tuple[str, ...] | None,
                  new_path: tuple[str, ...] | None, cause: str, reason: str) -> str:
    old = _fmt_path(old_path) if old_path else "none"
    new = _fmt_path(new_path) if new_path else "none"
    return (f"intent {name or f'intent-{intent_id}'} ({intent_id}): {old} -> {new} ({cause})"
            + (f": {reason}" if reason else ""))


class Router:
    """Routes intents and destinations over a :class:`NetworkState` and builds the FlowPlan.

    ``route_all`` recomputes every intent on the current network (intents with a bandwidth
    reservation first by priority, then in id order), so an intent always sits on its optimal
    feasible path: it moves away when a link fails and back when the link returns.
    """

    def __init__(self, state: NetworkState, *, fallback: str = "best_effort") -> None:
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, not {fallback!r}")
        self.state = state
        self.fallback = fallback
        self.intents: dict[int, Intent] = {}
        self._max_id: tuple[dict[int, Intent], int] | None = None
        self._order: tuple[dict[int, Intent], int, list[Intent]] | None = None
        # the plan, per owner and per switch (see refresh)
        self._owners: dict[int, dict[int, frozenset[FlowEntry]]] = {}
        """owner (cookie; 0 for the pipeline) -> dpid -> its flows there"""
        self._want: dict[int, set[FlowEntry]] = {}
        self._want_keys: dict[int, dict[tuple[int, int, Match], int]] = {}
        self._delta: dict[int, tuple[set[FlowEntry], set[FlowEntry]]] = {}
        self._trees: dict[str, dict[int, int]] = {}
        self._trees_version = -1
        self._dest_version = -1
        self._dest_sources: dict[int, list[tuple[Any, dict[int, int]]]] = {}
        self._hosts_version = state.hosts_version
        self._intent_keys: dict[int, tuple[Any, ...]] = {}
        self._intent_variants: dict[int, dict[tuple[Any, ...], _Variant]] = {}
        self._dirty_intents: set[int] = set()
        self._broken: set[int] = set()
        """ids of intents moved off a path that was broken (see :meth:`take_broken`)"""
        self.log_records: list[tuple[object, dict[str, Any]]] = []
        """reroute log lines (message, extra) not logged yet: see :meth:`take_log_records`"""
        self._tunnel_labels: dict[TunnelKey, int] = {}
        """tunnel segment -> its label"""
        self._tunnel_keys: dict[int, TunnelKey] = {}
        """label -> its segment (the reverse of ``_tunnel_labels``)"""
        self._tunnel_next: dict[int, int | None] = {}
        """label -> the label its switch swaps to (None: the last segment, which pops)"""
        self._tunnel_refs: dict[int, int] = {}
        """label -> intents entering the tunnel at this segment + segments swapping to it"""
        self._tunnel_heads: dict[int, set[int]] = {}
        """label -> ids of the intents whose ingress pushes it"""
        self._intent_tunnel: dict[int, int] = {}
        """intent id -> the label its ingress pushes"""
        self._idle_tunnels: set[int] = set()
        """labels whose references dropped to 0 in this refresh (removed at its end)"""
        self.intent_groups: dict[int, dict[int, Buckets]] = {}
        """intent id -> dpid -> fast-failover buckets (protected intents; group id = intent
        id)"""
        base = pipeline_flows()
        self._set_owner(0, {dpid: base for dpid in state.dpids()})

    # -- intents ----------------------------------------------------------------------------------
    def add(self, spec: IntentSpec, intent_id: int | None = None) -> Intent:
        """Register an intent (not routed yet: call :meth:`route_all`). Bad input raises and
        changes nothing."""
        hosts = self.state.hosts
        for end in (spec.src, spec.dst):
            if end not in hosts:
                raise NotFound(f"intent names an unknown host {end!r}")
        if spec.src == spec.dst:
            raise TopologyError(f"intent from {spec.src!r} to itself", field="src")
        if getattr(spec, "police", False) and spec.min_bandwidth_mbps <= 0:
            raise TopologyError("police needs min_bandwidth_mbps > 0 (the meter's rate)",
                                field="police")
        m = spec.match
        if m is not None and (m.src_port is not None or m.dst_port is not None) \
                and m.ip_proto not in (6, 17):
            raise TopologyError("an intent matching ports needs ip_proto tcp (6) or udp (17)",
                                field="match")
        if intent_id is None:
            intent_id = self._highest_id() + 1
        if intent_id in self.intents:
            raise ValueError(f"intent id {intent_id} is taken")
        if not 1 <= intent_id <= OWNER_ID_MASK:
            raise ValueError(f"intent id {intent_id} out of range")
        if getattr(spec, "police", False) and intent_id > METER_ID_MAX:
            raise TopologyError(f"a policed intent's id is its meter id: {intent_id} is above "
                                f"{METER_ID_MAX}", field="police")
        intent = Intent(id=intent_id, spec=spec)
        self.intents[intent_id] = intent
        self._order = None
        if self._max_id is not None and self._max_id[0] is self.intents:
            self._max_id = (self.intents, max(self._max_id[1], intent_id))
        self._dirty_intents.add(intent_id)
        return intent

    def _highest_id(self) -> int:
        """The highest intent id in use (0: none), cached (a batch of 1,000 adds scanned the
        whole table for each; the cache belongs to the current ``intents`` dict)."""
        if self._max_id is None or self._max_id[0] is not self.intents:
            self._max_id = (self.intents, max(self.intents, default=0))
        return self._max_id[1]

    def remove(self, intent_id: int) -> Intent:
        try:
            intent = self.intents.pop(intent_id)
        except KeyError:
            raise NotFound(f"no intent {intent_id}") from None
        self._max_id = None
        self._order = None
        self._dirty_intents.add(intent_id)
        return intent

    def route_all(self, now: float, cause: str) -> set[int]:
        """Route every intent on the network as it is; return the ids whose flows change.

        Intents with a bandwidth reservation are routed one by one (each takes its bandwidth
        from the residual before the next is routed: higher priority first, then lower id);
        the others in one parallel pathcore batch. Two intents for the same traffic at the same
        priority cannot both hold flows: the first in that order wins, the other is reported.
        """
        st = self.state
        g = st.graph
        order = self._route_order()
        if st.reservations_active or (order and order[0].spec.min_bandwidth_mbps > 0):
            st.reset_residuals()  # also releases the last reservation of a removed intent
        hosts = st.hosts
        present: dict[str, bool] = {}
        routes: dict[int, tuple[Any, str]] = {}
        traffic_owner: dict[tuple[Any, ...], int] = {}
        batch: list[tuple[Intent, str, str]] = []
        for intent in order:
            spec = intent.spec
            src, dst = hosts.get(spec.src), hosts.get(spec.dst)
            if src is None or dst is None:
                gone = spec.src if src is None else spec.dst
                routes[intent.id] = (None, f"host {gone} is not known any more")
                continue
            tkey = (src.ip, dst.ip, intent.traffic)
            other = traffic_owner.setdefault(tkey, intent.id)
            if other != intent.id:
                routes[intent.id] = (None, f"same traffic match and priority as intent {other}")
                continue
            a, b = src.node, dst.node
            a_up = present.get(a)
            if a_up is None:
                a_up = present[a] = st.node_present(a)
            b_up = present.get(b)
            if b_up is None:
                b_up = present[b] = st.node_present(b)
            if not a_up or not b_up:
                routes[intent.id] = (None, f"no path: switch {a if not a_up else b} is down")
            elif spec.min_bandwidth_mbps > 0:
                path = g.constrained_path(a, b, max_latency_ms=spec.max_latency_ms,
                                          min_bandwidth_mbps=spec.min_bandwidth_mbps,
                                          weight="cost")
                if path is not None:
                    st.reserve(path.links, spec.min_bandwidth_mbps)
                    routes[intent.id] = (path, "")
                else:
                    routes[intent.id] = (None, self._why_infeasible(a, b, spec))
            else:
                batch.append((intent, a, b))
        if batch:
            paths = g.batch_constrained_paths(
                [(a, b, i.spec.max_latency_ms, 0.0) for i, a, b in batch], weight="cost")
            for (intent, a, b), path in zip(batch, paths, strict=True):
                reason = "" if path is not None else self._why_infeasible(a, b, intent.spec)
                routes[intent.id] = (path, reason)
        changed: set[int] = set()
        down = st.down_link_ids()
        for intent in order:
            path, reason = routes[intent.id]
            links = None
            if path is not None:
                links = tuple(path.links)
                if links == intent.links and not intent.reason \
                        and intent.state not in ("infeasible", "degraded"):
                    # the same route (the common case): only its figures may have moved
                    intent.latency_ms, intent.cost = path.latency_ms, path.cost
                    continue
            before = (intent.links, intent.reason)
            if self._set_route(intent, path, reason, now, cause, links):
                changed.add(intent.id)
                self._dirty_intents.add(intent.id)
            elif (intent.links, intent.reason) != before:
                self._dirty_intents.add(intent.id)  # a parallel link of the same path
            else:
                continue
            if before[0] and not down.isdisjoint(before[0]):
                self._broken.add(intent.id)
        return changed

    def _route_order(self) -> list[Intent]:
        """The intents in routing order: bandwidth reservations first, by priority, then id
        (cached until an intent is added or removed, or the table is replaced)."""
        cached = self._order
        if cached is None or cached[0] is not self.intents or cached[1] != len(self.intents):
            order = sorted(self.intents.values(), key=lambda i: (
                -(i.spec.min_bandwidth_mbps > 0), -i.spec.priority, i.id))
            cached = self._order = (self.intents, len(self.intents), order)
        return cached[2]

    def _set_route(self, intent: Intent, path: Any, reason: str, now: float,
                   cause: str, links: tuple[int, ...] | None = None) -> bool:
        """Give ``intent`` the route ``path`` (None: no path, for ``reason``); ``links``:
        ``tuple(path.links)`` when the caller has it already. True when its path or state
        changed."""
        old_path, old_state = intent.path, intent.state
        if path is not None:
            new_path = tuple(path.nodes)
            intent.links = links if links is not None else tuple(path.links)
            intent.latency_ms, intent.cost = path.latency_ms, path.cost
            intent.reason = ""
            if new_path != old_path or old_state in ("infeasible", "degraded"):
                intent.state = "pending"
        else:
            new_path = None
            intent.links = None
            intent.latency_ms = intent.cost = None
            intent.reason = reason
            intent.state = "degraded" if intent.ever_installed else "infeasible"
        intent.path = new_path
        if new_path != old_path:
            history = intent.history
            history.append(PathChange(now, old_path, new_path, cause))
            if len(history) > HISTORY_MAX:
                del history[0]
            # logged by whoever sends the change, once it is sent (a log line costs ~70 us:
            # for a cut moving 1,000 intents, more than routing them); formatted only when
            # logged (a big change logs one summary line, each intent at DEBUG only)
            self.log_records.append((
                DeferredMessage(_reroute_text, intent.spec.name, intent.id, old_path,
                                new_path, cause, reason),
                {"intent": intent.id, "event": "reroute"}))
            return True
        return intent.state != old_state

    def take_broken(self) -> set[int]:
        """Ids of the intents moved since the last call off a path with a link that is down
        (or a switch that is gone): their traffic is lost already, so their new flows need
        not wait for anything (see ``Change.phase0``)."""
        out, self._broken = self._broken, set()
        return {i for i in out if i in self.intents}

    def take_log_records(self) -> list[tuple[object, dict[str, Any]]]:
        """The reroute log lines gathered since the last call (for ``logging.getLogger(
        "controller.network.routing").info(message, extra=extra)``)."""
        out, self.log_records = self.log_records, []
        return out

    def _why_infeasible(self, src: str, dst: str, spec: IntentSpec) -> str:
        g = self.state.graph
        best = g.shortest_path(src, dst, weight="latency")
        if best is None:
            return f"no path: {src} and {dst} are disconnected"
        if best.latency_ms > spec.max_latency_ms:
            return (f"max_latency_ms {spec.max_latency_ms} is below the best available latency "
                    f"{best.latency_ms:.2f} ms (path {_fmt_path(best.nodes)})")
        bw = spec.min_bandwidth_mbps
        within = g.constrained_path(src, dst, max_latency_ms=spec.max_latency_ms,
                                    min_bandwidth_mbps=0.0, weight="latency")
        wide = g.constrained_path(src, dst, max_latency_ms=_UNBOUNDED_MS,
                                  min_bandwidth_mbps=bw, weight="latency")
        msg = f"no path within {spec.max_latency_ms} ms with {bw:g} Mbps residual bandwidth"
        if within is not None:
            msg += (f"; best bottleneck within the bound {within.bottleneck_mbps:g} Mbps "
                    f"(path {_fmt_path(within.nodes)})")
        if wide is not None:
            msg += (f"; with {bw:g} Mbps the best latency is {wide.latency_ms:.2f} ms "
                    f"(path {_fmt_path(wide.nodes)})")
        else:
            msg += f"; no path has {bw:g} Mbps residual at any latency"
        return msg

    # -- the plan ---------------------------------------------------------------------------------
    # The plan is kept per owner (the pipeline, each destination host, each intent): a change
    # rebuilds the flows of the owners it touched and records per switch what left and what
    # came (``take_delta``), so the core diffs only those. Every owner's flows are a function
    # of the current state alone (routes are recomputed in full by ``route_all``, destination
    # trees in full whenever the graph changes), so the plan always equals a fresh one.
    def refresh(self) -> None:
        """Bring the per-owner plan up to date with the state and the intents' routes."""
        st = self.state
        if self._dest_version != st.version:
            self._refresh_destinations()
            self._dest_version = st.version
        if self._hosts_version != st.hosts_version:
            self._hosts_version = st.hosts_version
            self._dirty_intents.update(self.intents)
        if self._dirty_intents:
            for iid in sorted(self._dirty_intents):
                self._refresh_intent(iid)
            self._dirty_intents.clear()
        if self._idle_tunnels:
            self._drop_idle_tunnels()

    def plan(self) -> FlowPlan:
        """The full FlowPlan: pipeline + destination + intent flows for every switch."""
        self.refresh()
        return FlowPlan({dpid: frozenset(es) for dpid, es in self._want.items()})

    def wanted(self, dpid: int) -> set[FlowEntry]:
        """The flows ``dpid`` should hold (live: do not modify; call :meth:`refresh` first)."""
        return self._want.get(dpid, set())

    def wanted_keys(self, dpid: int) -> Mapping[tuple[int, int, Match], int]:
        """Keys of :meth:`wanted` with the number of wanted flows holding each."""
        return self._want_keys.get(dpid, {})

    def take_delta(self) -> dict[int, tuple[set[FlowEntry], set[FlowEntry]]]:
        """Refresh, then per dpid ``(removed, added)``: the flows that left and joined the plan
        since the last call (net: a flow removed and added back is in neither)."""
        self.refresh()
        delta, self._delta = self._delta, {}
        return {dpid: d for dpid, d in delta.items() if d[0] or d[1]}

    def set_external(self, cookie: int, flows: Mapping[int, frozenset[FlowEntry]]) -> None:
        """Flows the router does not compute itself (anycast NAT), owned by ``cookie``:
        replaces that owner's flows (empty: removes them). They join the plan like any other."""
        if cookie >> OWNER_ID_BITS in (OWNER_PIPELINE, OWNER_DESTINATION, OWNER_INTENT):
            raise ValueError(f"cookie {cookie:#x} belongs to the router's own flows")
        self._set_owner(cookie, {d: frozenset(es) for d, es in flows.items() if es})

    def external_cookies(self, kind: int) -> list[int]:
        """Cookies of the external owners of ``kind`` that hold flows."""
        return [c for c in self._owners if c >> OWNER_ID_BITS == kind]

    def _set_owner(self, owner: int, flows: dict[int, frozenset[FlowEntry]]) -> None:
        old = self._owners.get(owner)
        if old is flows:
            return
        want_of, keys_of, delta_of = self._want, self._want_keys, self._delta
        empty: frozenset[FlowEntry] = frozenset()
        for dpid in (old.keys() | flows.keys()) if old else flows:
            was = old.get(dpid, empty) if old else empty
            now = flows.get(dpid, empty)
            if was is now or was == now:
                continue
            want = want_of.get(dpid)
            if want is None:
                want = want_of[dpid] = set()
                keys_of[dpid] = {}
            keys = keys_of[dpid]
            d = delta_of.get(dpid)
            if d is None:
                d = delta_of[dpid] = (set(), set())
            removed, added = d
            for e in (was - now) if now else was:
                want.discard(e)
                k = e.key
                n = keys[k]
                if n == 1:
                    del keys[k]
                else:
                    keys[k] = n - 1
                if e in added:
                    added.discard(e)
                else:
                    removed.add(e)
            for e in (now - was) if was else now:
                want.add(e)
                k = e.key
                keys[k] = keys.get(k, 0) + 1
                if e in removed:
                    removed.discard(e)
                else:
                    added.add(e)
        if flows:
            self._owners[owner] = flows
        else:
            self._owners.pop(owner, None)

    def _refresh_destinations(self) -> None:
        """Destination flows of every host. Trees are recomputed in full when the graph or
        switch presence changed; only hosts whose tree (or own record) changed get new
        flows."""
        st = self.state
        if self._trees_version != st.graph_version:
            self._trees = {}
            self._trees_version = st.graph_version
        # switch presence, asked once per switch for all the trees below
        present = {n: st.node_present(n) for n in st.wiring.node_dpid}
        sources: dict[int, list[tuple[Any, dict[int, int]]]] = {}
        for name in sorted(st.hosts):
            if not st.host_usable(name):
                continue
            h = st.hosts[name]
            if not present[h.node]:
                continue
            tree = self._trees.get(h.node)
            if tree is None:
                tree = self._trees[h.node] = self.destination_tree(h.node, present)
            sources.setdefault(_destination_cookie(h.ip), []).append((h, tree))
        for cookie in [c for c in self._dest_sources if c not in sources]:
            del self._dest_sources[cookie]
            self._set_owner(cookie, {})
        for cookie, src in sources.items():
            prev = self._dest_sources.get(cookie)
            if prev == src:
                continue
            self._dest_sources[cookie] = src
            if prev is not None and len(src) == 1 and len(prev) == 1 and prev[0][0] == src[0][0]:
                self._move_destination(cookie, src[0][0], prev[0][1], src[0][1])
                continue
            per: dict[int, set[FlowEntry]] = {}
            for h, tree in src:
                match = ((("eth_type", ETH_TYPE_IPV4), ("ipv4_dst", h.ip)))
                for dpid, port_no in tree.items():
                    per.setdefault(dpid, set()).add(FlowEntry(
                        TABLE_DESTINATIONS, PRIORITY_DESTINATION, match,
                        (("output", port_no),), cookie))
                per.setdefault(h.dpid, set()).add(FlowEntry(
                    TABLE_DESTINATIONS, PRIORITY_DESTINATION, match,
                    (("output", h.port_no),), cookie))
            # keep the old set object where a switch's flows did not change: a cut changes
            # the next hop of a few switches per tree, and _set_owner skips an identical set
            old = self._owners.get(cookie, {})
            self._set_owner(cookie, {dpid: old[dpid] if dpid in old and old[dpid] == es
                                     else frozenset(es) for dpid, es in per.items()})

    def _move_destination(self, cookie: int, h: Any, before: dict[int, int],
                          after: dict[int, int]) -> None:
        """The destination flows of host ``h`` (the only host of ``cookie``) when its tree
        changed from ``before`` to ``after``: new flows only where the next hop changed (a cut
        moves a few switches of each tree)."""
        flows = dict(self._owners.get(cookie, {}))
        for dpid in before.keys() - after.keys():
            flows.pop(dpid, None)
        match = (("eth_type", ETH_TYPE_IPV4), ("ipv4_dst", h.ip))
        for dpid, port_no in after.items():
            if before.get(dpid) != port_no or dpid not in flows:
                flows[dpid] = frozenset({FlowEntry(TABLE_DESTINATIONS, PRIORITY_DESTINATION,
                                                   match, (("output", port_no),), cookie)})
        self._set_owner(cookie, flows)

    def destination_tree(self, node: str,
                         present: Mapping[str, bool] | None = None) -> dict[int, int]:
        """For every other switch that can reach ``node``: dpid -> out port on a least-latency
        path toward it. One reverse shortest-path tree from pathcore
        (``Graph.shortest_path_tree``): each switch's next hop leads to a switch settled
        before it, so the next hops form a tree (no loops even with equal-latency
        alternatives or zero-latency links). ``present``: node -> switch present, when the
        caller has it for every node already."""
        st = self.state
        node_dpid = st.wiring.node_dpid
        return {node_dpid[u]: st.out_port(u, lid)
                for u, lid in st.graph.shortest_path_tree(node, "latency").items()
                if (present[u] if present is not None else st.node_present(u))}

    # -- tunnels ----------------------------------------------------------------------------------
    # An unprotected intent whose path crosses switches rides a tunnel: its ingress flow
    # pushes an MPLS label and every later switch forwards by the label alone (the last one
    # pops it and delivers to the host). A tunnel is a chain of segments, one per switch
    # after the ingress: segment (switch, links from it to the egress, egress host port) has
    # one flow at its switch that matches its label, swaps it for the next segment's label
    # and outputs toward the next switch (the last segment pops the label and outputs to the
    # host). Every intent whose path has the same tail from some switch on shares the
    # segments from there, so a reroute sends one ingress FlowMod per moved intent plus the
    # flows of the segments that are new: a detour that rejoins the old path needs new
    # segments only up to where it rejoins. Labels are a stable hash of the segment, so a
    # restarted controller computes the same ones.
    def _set_tunnel(self, intent: Intent) -> int | None:
        """Put ``intent`` on the tunnel it should ride (its segments made if new), off the one
        it rode; the label its ingress pushes, or None (protected, single-switch or unrouted
        intents ride none). Segments left without references are removed at the end of the
        refresh, so an intent refreshed later in the same refresh can still take them over."""
        iid = intent.id
        path, links = intent.path, intent.links
        old = self._intent_tunnel.pop(iid, None)
        if old is not None:  # let go first: the same tunnel again must keep the intent
            self._leave_tunnel(old, iid)
        label = None
        chain: tuple[int, ...] = ()
        if path is not None and links is not None and len(path) > 1 \
                and not intent.spec.protection:
            hosts = self.state.hosts
            dst = hosts.get(intent.spec.dst)
            if dst is not None and intent.spec.src in hosts:
                label = self._tunnel_labels.get((path[1], links[1:], dst.port_no))
                if label is None:
                    label = self._segment(path, links, 1, dst.port_no)
                self._tunnel_refs[label] += 1
                heads = self._tunnel_heads.get(label)
                if heads is None:
                    heads = self._tunnel_heads[label] = set()
                heads.add(iid)
                self._intent_tunnel[iid] = label
                chain = self._chain(label)
        intent.mpls_label = label
        intent.mpls_labels = chain
        return label

    def _segment(self, path: tuple[str, ...], links: tuple[int, ...], k: int,
                 egress_port: int) -> int:
        """The label of segment ``k`` of ``path`` (its switch ``path[k]``), made with the
        segments after it if new."""
        skey = (path[k], links[k:], egress_port)
        label = self._tunnel_labels.get(skey)
        if label is not None:
            return label
        st = self.state
        last = k == len(path) - 1
        nxt = None if last else self._segment(path, links, k + 1, egress_port)
        label = self._new_label(skey)
        self._tunnel_labels[skey] = label
        self._tunnel_keys[label] = skey
        self._tunnel_refs[label] = 0
        self._tunnel_next[label] = nxt
        if nxt is None:
            inst: Instructions = (("pop_mpls", ETH_TYPE_IPV4), ("output", egress_port))
        else:
            self._tunnel_refs[nxt] += 1
            inst = (("set_field", ("mpls_label", nxt)), ("output", st.out_port(path[k], links[k])))
        cookie = make_cookie(OWNER_TUNNEL, label)
        self._set_owner(cookie, {st.wiring.node_dpid[path[k]]: frozenset({FlowEntry(
            TABLE_INTENTS, PRIORITY_TUNNEL, (("eth_type", ETH_TYPE_MPLS), ("mpls_label", label)),
            inst, cookie)})})
        return label

    def _chain(self, label: int) -> tuple[int, ...]:
        """The labels a packet pushed with ``label`` carries, switch by switch."""
        out = [label]
        nxt = self._tunnel_next[label]
        while nxt is not None:
            out.append(nxt)
            nxt = self._tunnel_next[nxt]
        return tuple(out)

    def _new_label(self, tkey: TunnelKey) -> int:
        """A free label for a new segment: a stable hash of the segment (so a restarted
        controller picks the same labels and adopts the switches' flows unchanged), moved on
        to the next free one in the rare case of a collision."""
        taken = self._tunnel_refs
        label = MPLS_LABEL_MIN + zlib.crc32(repr(tkey).encode()) % MPLS_LABEL_SPACE
        for _ in range(MPLS_LABEL_SPACE):
            if label not in taken:
                return label
            label = MPLS_LABEL_MIN + (label - MPLS_LABEL_MIN + 1) % MPLS_LABEL_SPACE
        raise RuntimeError("every MPLS label is in use")

    def _leave_tunnel(self, label: int, intent_id: int) -> None:
        """``intent_id``'s ingress pushes ``label`` no more."""
        self._tunnel_heads[label].discard(intent_id)
        self._unref_tunnel(label)

    def _unref_tunnel(self, label: int) -> None:
        n = self._tunnel_refs[label] - 1
        self._tunnel_refs[label] = n
        if n == 0:
            self._idle_tunnels.add(label)

    def _drop_idle_tunnels(self) -> None:
        """Remove the segments nothing refers to any more; a removed segment lets go of the
        next one, which may go too."""
        while self._idle_tunnels:
            idle, self._idle_tunnels = self._idle_tunnels, set()
            for label in sorted(idle):
                if self._tunnel_refs.get(label, 1) > 0:
                    continue  # taken over by an intent refreshed later
                del self._tunnel_refs[label]
                self._tunnel_heads.pop(label, None)
                del self._tunnel_labels[self._tunnel_keys.pop(label)]
                self._set_owner(make_cookie(OWNER_TUNNEL, label), {})
                nxt = self._tunnel_next.pop(label)
                if nxt is not None:
                    self._unref_tunnel(nxt)

    def tunnels(self) -> dict[int, list[int]]:
        """label -> ids of the intents whose traffic carries it (the intents whose ingress
        pushes it and those of every segment that swaps to it)."""
        riders: dict[int, set[int]] = {label: set() for label in self._tunnel_refs}
        for head, ids in self._tunnel_heads.items():
            for label in self._chain(head):
                riders[label] |= ids
        return {label: sorted(ids) for label, ids in sorted(riders.items())}

    def _refresh_intent(self, intent_id: int) -> None:
        cookie = (OWNER_INTENT << OWNER_ID_BITS) | intent_id  # make_cookie, inlined: hot
        intent = self.intents.get(intent_id)
        if intent is None:
            self._intent_keys.pop(intent_id, None)
            self._intent_variants.pop(intent_id, None)
            self.intent_groups.pop(intent_id, None)
            old = self._intent_tunnel.pop(intent_id, None)
            if old is not None:
                self._leave_tunnel(old, intent_id)
            self._set_owner(cookie, {})
            return
        st = self.state
        label = self._set_tunnel(intent)
        # what the flows are a function of (the hosts' records by their version: hashing two
        # records for every moved intent cost more than building its flows)
        key = (intent.path, intent.links, intent.state in ("infeasible", "degraded"),
               intent.reason.startswith("same traffic"), st.hosts_version, label,
               # detours depend on every link's state, not only the path's
               st.graph_version if intent.spec.protection else None)
        if self._intent_keys.get(intent_id) == key:
            return
        self._intent_keys[intent_id] = key
        # the last few flow sets of each intent are kept: a flapping link moves intents
        # back and forth between the same paths
        variants = self._intent_variants.setdefault(intent_id, {})
        entry = variants.pop(key, None)
        if entry is None:
            groups: dict[int, Buckets] = {}
            notes: list[str] = []
            raw = self._intent_flows(intent, groups, notes)
            entry = ({dpid: frozenset(es) for dpid, es in raw.items()}, groups,
                     "; ".join(notes))
            if len(variants) >= _INTENT_VARIANTS:
                del variants[next(iter(variants))]
        variants[key] = entry
        flows, groups, note = entry
        if groups:
            self.intent_groups[intent_id] = groups
        else:
            self.intent_groups.pop(intent_id, None)
        intent.protection_note = note
        self._set_owner(cookie, flows)

    def _detours(self, intent: Intent, ingress_port: int, groups: dict[int, Buckets],
                 notes: list[str]) -> dict[int, dict[int, int]]:
        """Local repair for a protected intent (see docs/controller.md, "Protection").

        For each link ``l_i`` of the primary path ``n_0 .. n_k`` the detour ``D_i`` is the
        least-latency path from ``n_i`` to ``n_k`` without ``l_i``. ``n_i`` gets a
        fast-failover group: bucket 1 watches and uses ``l_i``, bucket 2 the first link of
        ``D_i`` (``OFPP_IN_PORT`` when that is the port the traffic came in by). Every later
        switch of ``D_i`` gets a rule keyed by the port the detour enters it by (one priority
        above the intent's own flows). Returns dpid -> {in port: out port}; fills ``groups``
        (dpid -> buckets) and ``notes`` (links without a usable detour, detours over the
        latency bound)."""
        st = self.state
        g = st.graph
        path, links = intent.path, intent.links
        assert path is not None and links is not None
        node_dpid = st.wiring.node_dpid
        # where the primary traffic enters and leaves each switch of the path
        prim_in = {path[0]: ingress_port}
        prim_out = {}
        for i, lid in enumerate(links):
            prim_out[path[i]] = st.out_port(path[i], lid)
            prim_in[path[i + 1]] = st.out_port(path[i + 1], lid)
        rules: dict[int, dict[int, int]] = {}
        prefix_ms = 0.0
        bound = intent.spec.max_latency_ms
        for i, lid in enumerate(links):
            u = path[i]
            name = f"{u}-{path[i + 1]}"
            was_up = bool(g.link(lid)["up"])
            g.set_link_up(lid, False, both_directions=True)
            try:
                d = g.shortest_path(u, path[-1], weight="latency")
            finally:
                g.set_link_up(lid, was_up, both_directions=True)
            lat_ms = prefix_ms + (d.latency_ms if d is not None else 0.0)
            prefix_ms += float(g.link(lid)["latency_ms"])  # type: ignore[arg-type]
            if d is None:
                notes.append(f"no detour around {name}")
                continue
            want: list[tuple[int, int, int]] = []  # (dpid, in port, out port)
            clash = ""
            for j in range(1, len(d.nodes) - 1):
                x = d.nodes[j]
                pin, pout = st.out_port(x, d.links[j - 1]), st.out_port(x, d.links[j])
                dpid = node_dpid[x]
                if prim_in.get(x) == pin and prim_out.get(x) != pout:
                    clash = f"the detour around {name} enters {x} where the path does"
                    break
                have = rules.get(dpid, {}).get(pin)
                if have is not None and have != pout:
                    clash = f"the detour around {name} crosses another detour at {x}"
                    break
                if prim_in.get(x) != pin:
                    want.append((dpid, pin, pout))
            if clash:
                notes.append(f"no detour around {name}: {clash}")
                continue
            for dpid, pin, pout in want:
                rules.setdefault(dpid, {})[pin] = pout
            first = st.out_port(u, d.links[0])
            backup = PORT_IN_PORT if first == prim_in[u] else first
            groups[node_dpid[u]] = ((prim_out[u], prim_out[u]), (first, backup))
            if lat_ms > bound + 1e-9:
                notes.append(f"the detour around {name} takes {lat_ms:.2f} ms, over the "
                             f"bound {bound:g} ms")
        return rules

    def _intent_flows(self, intent: Intent, groups: dict[int, Buckets] | None = None,
                      notes: list[str] | None = None) -> dict[int, list[FlowEntry]]:
        st = self.state
        spec = intent.spec
        out: dict[int, list[FlowEntry]] = {}
        if groups is None:
            groups = {}
        if notes is None:
            notes = []
        if spec.src in st.hosts and spec.dst in st.hosts:
            src, dst = st.hosts[spec.src], st.hosts[spec.dst]
            match = tuple(sorted(intent_match(spec, src.ip, dst.ip).items()))
            prio = _priority(spec)
            cookie = make_cookie(OWNER_INTENT, intent.id)
            if intent.path is not None and intent.links is not None:
                node_dpid = st.wiring.node_dpid
                first: Instructions = (("meter", intent.id),) if _policed(spec) else ()
                if spec.protection and len(intent.path) > 1:
                    detours = self._detours(intent, src.port_no, groups, notes)
                    for dpid, rules in detours.items():
                        for in_port, out_port in sorted(rules.items()):
                            out.setdefault(dpid, []).append(FlowEntry(
                                TABLE_INTENTS, min(prio + 1, 0xFFFF),
                                tuple(sorted(match + (("in_port", in_port),))),
                                (("output", out_port),), cookie))
                label = self._intent_tunnel.get(intent.id)
                if label is not None:
                    # the ingress pushes the tunnel's label; the tunnel does the rest
                    u = intent.path[0]
                    out[node_dpid[u]] = [FlowEntry(
                        TABLE_INTENTS, prio, match,
                        first + (("push_mpls", ETH_TYPE_MPLS), ("set_field", ("mpls_label", label)),
                                 ("output", st.out_port(u, intent.links[0]))), cookie)]
                    return out
                for u, lid in zip(intent.path, intent.links, strict=False):
                    act = ("group", intent.id) if node_dpid[u] in groups \
                        else ("output", st.out_port(u, lid))
                    out.setdefault(node_dpid[u], []).append(
                        FlowEntry(TABLE_INTENTS, prio, match, first + (act,), cookie))
                    first = ()  # the meter polices at the ingress only
                out.setdefault(dst.dpid, []).append(
                    FlowEntry(TABLE_INTENTS, prio, match, (("output", dst.port_no),), cookie))
            elif intent.state in ("infeasible", "degraded") \
                    and not intent.reason.startswith("same traffic"):
                fallback: Instructions = () if self.fallback == "drop" \
                    else (("goto_table", TABLE_DESTINATIONS),)
                out[src.dpid] = [FlowEntry(TABLE_INTENTS, prio, match, fallback, cookie)]
        return out


@functools.lru_cache(maxsize=1 << 14)
def _destination_cookie(ip: str) -> int:
    """The cookie of the destination flows toward host address ``ip``."""
    return make_cookie(OWNER_DESTINATION, int(ipaddress.IPv4Address(ip)))


def _policed(spec: IntentSpec) -> bool:
    return bool(getattr(spec, "police", False)) and spec.min_bandwidth_mbps > 0


def meter_plan(router: Router) -> dict[int, dict[int, int]]:
    """dpid -> {meter id: rate in kbit/s}: one meter per policed intent that has a path, at
    its ingress switch, with the intent's id as meter id and its reservation as rate."""
    st = router.state
    out: dict[int, dict[int, int]] = {}
    for intent in router.intents.values():
        if intent.path is None or not _policed(intent.spec):
            continue
        dpid = st.wiring.node_dpid[intent.path[0]]
        out.setdefault(dpid, {})[intent.id] = max(1, round(intent.spec.min_bandwidth_mbps
                                                           * 1000))
    return out


def group_plan(router: Router) -> dict[int, dict[int, Buckets]]:
    """dpid -> {group id: fast-failover buckets} of every protected intent."""
    out: dict[int, dict[int, Buckets]] = {}
    for iid, per in router.intent_groups.items():
        for dpid, buckets in per.items():
            out.setdefault(dpid, {})[iid] = buckets
    return out


def _priority(spec: IntentSpec) -> int:
    """Table-1 priority of an intent: its own, but at least 1 (0 is the table miss)."""
    return max(1, min(spec.priority, 0xFFFF))


def _match_items(spec: IntentSpec) -> tuple[Any, ...]:
    m = spec.match
    return () if m is None else (m.ip_proto, m.src_port, m.dst_port, m.dscp)


def intent_match(spec: IntentSpec, src_ip: str, dst_ip: str) -> dict[str, Any]:
    """The OXM match of an intent's traffic (OpenFlow 1.3 prerequisites included)."""
    match: dict[str, Any] = {"eth_type": ETH_TYPE_IPV4, "ipv4_src": src_ip, "ipv4_dst": dst_ip}
    m = spec.match
    if m is not None:
        if m.ip_proto is not None:
            match["ip_proto"] = m.ip_proto
        proto = {6: "tcp", 17: "udp"}.get(m.ip_proto or -1)
        if m.src_port is not None and proto:
            match[f"{proto}_src"] = m.src_port
        if m.dst_port is not None and proto:
            match[f"{proto}_dst"] = m.dst_port
        if m.dscp is not None:
            match["ip_dscp"] = m.dscp
    return match
