"""Intents: the record of a route request, its state, and routing every intent at once.

An intent is a route from one host to another with ``max_latency_ms`` (and optionally
``min_bandwidth_mbps``, a traffic match, a priority, protection, policing). Intents are
one-directional (src host -> dst host for their match); the return traffic follows the
destination flows of table 2, unless another intent covers it.

:class:`IntentTable` routes every intent on the network as it is (:meth:`IntentTable.route_all`)
so an intent always sits on its optimal feasible path: it moves away when a link fails and
back when the link returns. When no path meets an intent's bounds the intent is
``infeasible`` (never installed since it was added) or ``degraded`` (it was installed and
lost its path); its traffic then falls back to best effort or is dropped (see
:mod:`.router`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from controller.errors import NotFound, TopologyError, lookup
from controller.network.explain import fmt_path, why_no_path
from controller.network.flows import ETH_TYPE_IPV4, METER_ID_MAX, OWNER_ID_MASK
from controller.network.protection import Detours, plan_detours

if TYPE_CHECKING:
    from controller.network.state import NetworkState
    from controller.topology.model import IntentSpec

__all__ = [
    "HISTORY_MAX",
    "DeferredMessage",
    "Intent",
    "IntentState",
    "IntentTable",
    "WITHOUT_PATH",
    "PathChange",
    "intent_match",
    "intent_match_items",
    "intent_priority",
    "policed",
]


class IntentState(StrEnum):
    """Where an intent stands (a ``str``: compares equal to its value, serialises as it)."""

    PENDING = "pending"
    """routed; its flows are on their way (installed once every barrier is confirmed)"""
    INSTALLED = "installed"
    """its flows are on every switch of its path"""
    INFEASIBLE = "infeasible"
    """no path meets its bounds, and none ever did since it was added"""
    DEGRADED = "degraded"
    """it was installed and lost its path (its traffic falls back)"""


WITHOUT_PATH = frozenset({IntentState.INFEASIBLE, IntentState.DEGRADED})
"""the states of an intent that has no path (its traffic falls back); a set, because routing
asks it of every intent on every change"""


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
    state: IntentState = IntentState.PENDING
    reason: str = ""
    conflict_with: int | None = None
    """the id of the intent that holds the same traffic (hosts, match and priority): this one
    then holds no flows at all, not even a fallback"""
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
    detours: Detours | None = None
    """for ``protection: true`` with a path: its local repair, computed by
    :meth:`IntentTable.route_all` (with the backup reservation of an intent with
    ``min_bandwidth_mbps``)"""
    detours_key: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)
    """what ``detours`` of an intent without bandwidth was computed from (path, graph and
    hosts versions): kept on the intent so a trial's rollback restores it with ``detours``"""
    sla: dict[str, Any] | None = field(default=None, compare=False)
    """SLA monitoring's view of the intent (:meth:`SlaRecord.as_dict
    <controller.network.sla.SlaRecord.as_dict>`; None: not sampled, or no path)"""
    traffic: tuple[Any, ...] = field(init=False, repr=False, compare=False)
    """what the intent's flows match besides the hosts' addresses, and their priority: two
    intents with the same hosts and ``traffic`` cannot both hold flows"""

    def __post_init__(self) -> None:
        self.traffic = (_match_items(self.spec), intent_priority(self.spec))

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

    def as_dict(self, wall: Callable[[float], str] | None = None) -> dict[str, Any]:
        """The intent as JSON-ready data (the REST API's view and the state file's).
        ``wall``: turns a history entry's monotonic time into a timestamp (added as
        ``timestamp`` when given)."""
        spec = self.spec
        m = spec.match
        history = []
        for h in self.history:
            entry: dict[str, Any] = {"time": h.time}
            if wall is not None:
                entry["timestamp"] = wall(h.time)
            entry.update(old_path=list(h.old_path) if h.old_path else None,
                         new_path=list(h.new_path) if h.new_path else None, cause=h.cause)
            history.append(entry)
        return {
            "id": self.id, "name": self.name, "src": spec.src, "dst": spec.dst,
            "max_latency_ms": spec.max_latency_ms,
            "min_bandwidth_mbps": spec.min_bandwidth_mbps, "priority": spec.priority,
            "protection": spec.protection, "police": spec.police,
            "sla_reroute": spec.sla_reroute,
            "protection_note": self.protection_note,
            "match": ({k: v for k, v in (("ip_proto", m.ip_proto), ("src_port", m.src_port),
                                         ("dst_port", m.dst_port), ("dscp", m.dscp))
                       if v is not None} if m is not None else None),
            "backup_reservations": self.backup_reservations(),
            "mpls_label": self.mpls_label, "mpls_labels": list(self.mpls_labels),
            "state": str(self.state), "reason": self.reason,
            "path": list(self.path) if self.path else None,
            "latency_ms": self.latency_ms, "cost": self.cost, "history": history,
            "sla": self.sla,
        }


    def backup_reservations(self) -> list[dict[str, Any]]:
        """The links the intent's detours hold its bandwidth on beyond its path: ``link``
        ("a-b", the direction the detour crosses it), ``index`` (in the topology file),
        ``bandwidth_mbps``."""
        d = self.detours
        if d is None:
            return []
        return [{"link": b.name, "index": b.index, "bandwidth_mbps": d.bandwidth_mbps}
                for b in d.backup]


def intent_priority(spec: IntentSpec) -> int:
    """Table-1 priority of an intent: its own, but at least 1 (0 is the table miss)."""
    return max(1, min(spec.priority, 0xFFFF))


def _match_items(spec: IntentSpec) -> tuple[Any, ...]:
    m = spec.match
    return () if m is None else (m.ip_proto, m.src_port, m.dst_port, m.dscp)


def policed(spec: IntentSpec) -> bool:
    """The intent's traffic is policed to its reservation by a meter at its ingress."""
    return bool(getattr(spec, "police", False)) and spec.min_bandwidth_mbps > 0


_PORT_FIELDS = {6: ("tcp_dst", "tcp_src"), 17: ("udp_dst", "udp_src")}
"""ip_proto -> the names of its destination and source port fields"""


def intent_match_items(spec: IntentSpec, src_ip: str, dst_ip: str) -> tuple[Any, ...]:
    """:func:`intent_match` as a FlowEntry's match: its items sorted by field name, built
    in that order (no dict, no sort: a batch or a cut builds a thousand of them). The
    names sort eth_type < ip_dscp < ip_proto < ipv4_dst < ipv4_src < tcp_*/udp_* (dst
    before src); ``tests/unit/test_core_batch.py`` holds it to :func:`intent_match`."""
    m = spec.match
    if m is None:
        return (("eth_type", ETH_TYPE_IPV4), ("ipv4_dst", dst_ip), ("ipv4_src", src_ip))
    items: list[tuple[str, Any]] = [("eth_type", ETH_TYPE_IPV4)]
    if m.dscp is not None:
        items.append(("ip_dscp", m.dscp))
    if m.ip_proto is not None:
        items.append(("ip_proto", m.ip_proto))
    items.append(("ipv4_dst", dst_ip))
    items.append(("ipv4_src", src_ip))
    ports = _PORT_FIELDS.get(m.ip_proto or -1)
    if ports is not None:
        if m.dst_port is not None:
            items.append((ports[0], m.dst_port))
        if m.src_port is not None:
            items.append((ports[1], m.src_port))
    return tuple(items)


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


class DeferredMessage(tuple[Any, ...]):
    """A log message formatted when (and only if) it is logged: ``(fn, *args)``, and
    ``str()`` calls ``fn(*args)``. A big change logs one summary line and each intent at
    DEBUG only, so its thousand reroute lines are usually never formatted. A tuple, made by
    ``DeferredMessage((fn, *args))`` with no Python ``__init__`` to run: a cut makes one per
    moved intent."""

    __slots__ = ()

    def __str__(self) -> str:
        return str(self[0](*self[1:]))


def _reroute_text(name: str | None, intent_id: int, old_path: tuple[str, ...] | None,
                  new_path: tuple[str, ...] | None, cause: str, reason: str) -> str:
    old = fmt_path(old_path) if old_path else "none"
    new = fmt_path(new_path) if new_path else "none"
    return (f"intent {name or f'intent-{intent_id}'} ({intent_id}): {old} -> {new} ({cause})"
            + (f": {reason}" if reason else ""))


_PENDING = IntentState.PENDING
_new_tuple = tuple.__new__


RouteTuple = tuple[tuple[str, ...], tuple[int, ...], float, float]
"""a route as :meth:`pathcore.Graph.batch_routes` gives it: (nodes, directed link ids,
latency_ms, cost)"""

_Route = tuple["RouteTuple | None", str, "int | None"]
"""(route or None, why not, the id of the intent holding the same traffic)"""

_UNROUTED: _Route = (None, "", None)
"""the place of an intent routed in the batch, until its answer comes"""


def _as_route(path: Any) -> RouteTuple:
    """A pathcore ``Path`` as a route tuple."""
    return (tuple(path.nodes), tuple(path.links), path.latency_ms, path.cost)


_INSERT_MAX = 64
"""intents added between two routings that are put into the cached routing order one by
one; more and the order is sorted anew"""


def _route_key(intent: Intent) -> tuple[bool, int, int]:
    """Routing order: bandwidth reservations first, by priority, then id."""
    spec = intent.spec
    return (not spec.min_bandwidth_mbps > 0, -spec.priority, intent.id)


class IntentTable:
    """The intents by id, and their routes over a :class:`NetworkState`.

    ``dirty``: ids whose flows must be rebuilt (the router takes them on its next refresh).
    """

    def __init__(self, state: NetworkState) -> None:
        self.state = state
        self.intents: dict[int, Intent] = {}
        self.dirty: set[int] = set()
        self._max_id: int | None = 0
        """the highest id in use (None: to be recomputed after a removal)"""
        self._order: list[Intent] | None = None
        self._broken: set[int] = set()
        """ids of intents moved off a path that was broken (see :meth:`take_broken`)"""
        self.log_records: list[tuple[object, dict[str, Any]]] = []
        """reroute log lines (message, extra) not logged yet: see :meth:`take_log_records`"""
        self.backup_mbps: dict[int, float] = {}
        """directed pathcore link id -> bandwidth the detours of protected intents hold on it
        (their backup reservations, part of what the graph's residual has taken)"""
        self.policed: set[int] = set()
        """ids of the intents whose traffic a meter polices (:func:`policed`)"""
        self.incremental = True
        """route only the intents added since the last routing when the others' routes
        cannot have moved (see :meth:`route_all`); False routes every intent every time (the
        reference the tests hold the shortcut to)"""
        self._routed: tuple[int, int] | None = None
        """(graph version, hosts version) of the last :meth:`route_all` that routed every
        intent; None when something since may move an intent routed then (a removal that
        frees bandwidth or traffic, a trial's rollback)"""
        self._fresh: list[int] = []
        """ids added since the last :meth:`route_all`"""
        self._traffic_owner: dict[tuple[Any, ...], int] = {}
        """(src address, dst address, traffic) -> the id of the intent holding that traffic,
        as the last :meth:`route_all` found it"""
        self._conflicts = False
        """some intent was refused its traffic (held by another) at the last routing"""
        self.measured_routing: set[int] = set()
        """ids of intents (``sla_reroute``) routed on measured link delays since their
        measured latency broke their bound (:mod:`controller.network.sla`); when no path
        meets the bound on measured delays they are routed as the others"""

    def __getitem__(self, intent_id: int) -> Intent:
        return lookup(self.intents, intent_id, "no intent {}")

    def add(self, spec: IntentSpec, intent_id: int | None = None) -> Intent:
        """Register an intent (not routed yet: call :meth:`route_all`). Bad input raises and
        changes nothing."""
        self.check(spec)
        if self._max_id is None:
            self._max_id = max(self.intents, default=0)
        if intent_id is None:
            intent_id = self._max_id + 1
        if intent_id in self.intents:
            raise ValueError(f"intent id {intent_id} is taken")
        if not 1 <= intent_id <= OWNER_ID_MASK:
            raise ValueError(f"intent id {intent_id} out of range")
        if getattr(spec, "police", False) and intent_id > METER_ID_MAX:
            raise TopologyError(f"a policed intent's id is its meter id: {intent_id} is above "
                                f"{METER_ID_MAX}", field="police")
        intent = Intent(id=intent_id, spec=spec)
        self.intents[intent_id] = intent
        if self._order is not None:
            if len(self._fresh) < _INSERT_MAX:
                # one intent beside thousands: its place in the order, not a new sort
                bisect.insort(self._order, intent, key=_route_key)
            else:
                self._order = None
        if policed(spec):
            self.policed.add(intent_id)
        self._max_id = max(self._max_id, intent_id)
        self.dirty.add(intent_id)
        self._fresh.append(intent_id)
        return intent

    def check(self, spec: IntentSpec) -> None:
        """Raise what :meth:`add` raises for ``spec`` itself (an unknown host, a loop, a
        match or police setting that cannot work), whatever its id; changes nothing."""
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

    def remove(self, intent_id: int) -> Intent:
        try:
            intent = self.intents.pop(intent_id)
        except KeyError:
            raise NotFound(f"no intent {intent_id}") from None
        self._max_id = None
        order = self._order
        if order is not None:
            k = bisect.bisect_left(order, _route_key(intent), key=_route_key)
            if k < len(order) and order[k] is intent:
                del order[k]
            else:
                self._order = None
        self.policed.discard(intent_id)
        if intent.spec.min_bandwidth_mbps > 0 or self._conflicts:
            # its bandwidth, or its traffic, may pass to another intent: route all again
            self._routed = None
        else:
            src, dst = self.state.hosts.get(intent.spec.src), self.state.hosts.get(intent.spec.dst)
            if src is not None and dst is not None:
                tkey = (src.ip, dst.ip, intent.traffic)
                if self._traffic_owner.get(tkey) == intent_id:
                    del self._traffic_owner[tkey]
        self.dirty.add(intent_id)
        self.measured_routing.discard(intent_id)
        return intent

    @contextmanager
    def trial(self) -> Iterator[Callable[[], None]]:
        """Try changes to the intents and their routes; call the yielded ``rollback()`` to
        put every intent back as it was when the trial began (routes, states, histories,
        log lines and broken marks included). Intents added in the trial are forgotten;
        their ids are marked dirty so their flows (none yet) are settled by the router."""
        saved = {i: x.snapshot() for i, x in self.intents.items()}
        n_records, broken = len(self.log_records), set(self._broken)
        backup = dict(self.backup_mbps)

        def rollback() -> None:
            added = self.intents.keys() - saved.keys()
            self.intents = saved
            self._max_id = None
            self._order = None
            del self.log_records[n_records:]
            self._broken = broken
            self.backup_mbps = backup
            self._routed = None
            self.policed = {i for i, x in saved.items() if policed(x.spec)}
            self.dirty.update(added)

        yield rollback

    def route_all(self, now: float, cause: str) -> set[int]:
        """Route every intent on the network as it is; return the ids whose flows change.

        Intents with a bandwidth reservation are routed one by one (each takes its bandwidth
        from the residual before the next is routed: higher priority first, then lower id);
        the others in one parallel pathcore batch. Two intents for the same traffic at the same
        priority cannot both hold flows: the first in that order wins, the other is reported.
        Then every protected intent gets its detours (:meth:`_route_detours`): those of
        intents with a reservation, in the same order, take it on the links they add (after
        every intent's path: traffic first, protection against the next failure second).

        When only intents without bandwidth were added (or removed without freeing
        bandwidth or traffic) since the last routing, on the same graph and hosts, only the
        new ones are routed (the others' routes are what routing all would give them again;
        ``incremental = False`` turns this off).
        """
        st = self.state
        order = self._route_order()
        fresh, self._fresh = self._fresh, []
        context = (st.graph_version, st.hosts_version)
        if self.incremental and self._routed == context and not self.measured_routing \
                and getattr(st, "bandwidth_admission", "reserved") == "reserved":
            # only intents were added, or removed without freeing bandwidth or traffic, since
            # every intent was routed on this very graph: the routes of the others stand
            # (reservations are routed first and take what the others' routes do not
            # depend on), so route the new ones alone, unless one reserves bandwidth or
            # would take the traffic of an intent routed before it
            new = self._fresh_in_order(fresh)
            if new is not None:
                changed = self._route(new, self._traffic_owner, now, cause)
                self._route_detours(new, fresh=True)
                return changed
        reserving = order and order[0].spec.min_bandwidth_mbps > 0
        if st.reservations_active or reserving:
            st.reset_residuals()  # also releases the last reservation of a removed intent
        self._traffic_owner = {}
        self._conflicts = False
        changed = self._route(order, self._traffic_owner, now, cause)
        self._routed = context
        self._route_detours(order)
        return changed

    def _fresh_in_order(self, fresh: list[int]) -> list[Intent] | None:
        """The intents of ``fresh`` (added since the last :meth:`route_all`) in routing
        order, or None when one reserves bandwidth or holds the traffic of an intent routed
        before it (an explicit lower id): routing all is needed then."""
        owner_of = self._traffic_owner
        hosts = self.state.hosts
        new = []
        for iid in fresh:
            intent = self.intents.get(iid)
            if intent is None:
                continue
            spec = intent.spec
            if spec.min_bandwidth_mbps > 0:
                return None
            src, dst = hosts.get(spec.src), hosts.get(spec.dst)
            if src is not None and dst is not None:
                other = owner_of.get((src.ip, dst.ip, intent.traffic))
                if other is not None and other > iid:
                    return None
            new.append(intent)
        new.sort(key=_route_key)
        return new

    def _route(self, order: list[Intent], traffic_owner: dict[tuple[Any, ...], int],
               now: float, cause: str) -> set[int]:
        """Route the intents of ``order`` (in that order; ``traffic_owner``: the traffic
        held so far, updated); the ids whose flows change."""
        st = self.state
        g = st.graph
        hosts = st.hosts
        present: dict[str, bool] = {}
        routes: list[_Route] = []
        """per intent of ``order``, in its place"""
        batch: list[tuple[int, Intent, str, str]] = []
        """(place in ``order``, intent, src node, dst node) of the intents routed together"""
        measured = self.measured_routing
        for k, intent in enumerate(order):
            spec = intent.spec
            src, dst = hosts.get(spec.src), hosts.get(spec.dst)
            if src is None or dst is None:
                gone = spec.src if src is None else spec.dst
                routes.append((None, f"host {gone} is not known any more", None))
                continue
            tkey = (src.ip, dst.ip, intent.traffic)
            other = traffic_owner.setdefault(tkey, intent.id)
            if other != intent.id:
                routes.append((None, f"same traffic match and priority as intent {other}",
                               other))
                self._conflicts = True
                continue
            a, b = src.node, dst.node
            a_up = present.get(a)
            if a_up is None:
                a_up = present[a] = st.node_present(a)
            b_up = present.get(b)
            if b_up is None:
                b_up = present[b] = st.node_present(b)
            if not a_up or not b_up:
                routes.append((None, f"no path: switch {a if not a_up else b} is down", None))
            elif intent.id in measured and (mpath := st.measured_graph(now).constrained_path(
                    a, b, max_latency_ms=spec.max_latency_ms,
                    min_bandwidth_mbps=spec.min_bandwidth_mbps, weight="cost")) is not None:
                if spec.min_bandwidth_mbps > 0:
                    st.reserve(mpath.links, spec.min_bandwidth_mbps)
                routes.append((_as_route(mpath), "", None))
            elif spec.min_bandwidth_mbps > 0:
                path = g.constrained_path(a, b, max_latency_ms=spec.max_latency_ms,
                                          min_bandwidth_mbps=spec.min_bandwidth_mbps,
                                          weight="cost")
                if path is not None:
                    st.reserve(path.links, spec.min_bandwidth_mbps)
                    routes.append((_as_route(path), "", None))
                else:
                    routes.append((None, self._why(a, b, spec), None))
            else:
                routes.append(_UNROUTED)
                batch.append((k, intent, a, b))
        if batch:
            # each distinct path comes once, as tuples shared by every intent on it
            index, found = g.batch_routes(
                [(a, b, i.spec.max_latency_ms, 0.0) for _, i, a, b in batch], weight="cost")
            for (k, intent, a, b), n in zip(batch, index, strict=True):
                routes[k] = (found[n], "", None) if n >= 0 else (
                    None, self._why(a, b, intent.spec), None)
        changed: set[int] = set()
        dirty = self.dirty
        down = st.down_link_ids()
        for intent, (route, reason, conflict) in zip(order, routes, strict=True):
            if route is not None:
                if route[1] == intent.links and not intent.reason \
                        and intent.state not in WITHOUT_PATH:
                    # the same route (the common case): only its figures may have moved
                    intent.latency_ms, intent.cost = route[2], route[3]
                    continue
            before = (intent.links, intent.reason, intent.conflict_with)
            intent.conflict_with = conflict
            if self._set_route(intent, route, reason, now, cause):
                changed.add(intent.id)
                dirty.add(intent.id)
            elif (intent.links, intent.reason, intent.conflict_with) != before:
                dirty.add(intent.id)  # a parallel link of the same path
            else:
                continue
            if before[0] and not down.isdisjoint(before[0]):
                self._broken.add(intent.id)
        return changed

    def _route_detours(self, order: list[Intent], fresh: bool = False) -> None:
        """Give every protected intent with a path its detours (:func:`plan_detours`),
        in routing order; an intent with ``min_bandwidth_mbps`` reserves it on the links its
        detours use beyond its path (one backup reservation per intent and link: backups of
        different intents do not share). An intent whose detours changed is marked dirty.
        With ``fresh``, ``order`` holds only intents added since the last routing, none with
        bandwidth: the backup reservations stay as they are."""
        st = self.state
        hosts = st.hosts
        backup_mbps: dict[int, float] = {}
        # the residuals, read from the graph once and kept along with the reservations below
        # (reading every link for every intent cost more than its detours)
        residual: dict[int, float] | None = None
        for intent in order:
            path, links = intent.path, intent.links
            if not intent.spec.protection or path is None or links is None or len(path) < 2:
                if intent.detours is not None or intent.protection_note:
                    intent.detours, intent.detours_key, intent.protection_note = None, None, ""
                    self.dirty.add(intent.id)
                continue
            spec = intent.spec
            bw = spec.min_bandwidth_mbps
            src = hosts[spec.src]  # routed: its hosts are known
            key = None
            if bw <= 0:
                # without bandwidth the detours are a function of the path and the graph
                key = (links, st.graph_version, st.hosts_version)
                if intent.detours_key == key:
                    continue
            if bw > 0 and residual is None:
                residual = {lk.id: lk.residual_mbps for lk in st.graph.links()}
            d = plan_detours(st, path, links, src.port_no, spec.max_latency_ms, bw, residual)
            if d.backup:
                st.reserve([b.link_id for b in d.backup], bw)
                for b in d.backup:
                    backup_mbps[b.link_id] = backup_mbps.get(b.link_id, 0.0) + bw
                    if residual is not None:
                        residual[b.link_id] = max(0.0, residual[b.link_id] - bw)
            intent.detours_key = key
            if d != intent.detours:
                intent.detours, intent.protection_note = d, d.note
                self.dirty.add(intent.id)
        if not fresh:
            self.backup_mbps = backup_mbps

    def _why(self, src: str, dst: str, spec: IntentSpec) -> str:
        return why_no_path(self.state.graph, src, dst, max_latency_ms=spec.max_latency_ms,
                           min_bandwidth_mbps=spec.min_bandwidth_mbps).text

    def _route_order(self) -> list[Intent]:
        """The intents in routing order: bandwidth reservations first, by priority, then id
        (cached until an intent is added or removed, or the table is replaced)."""
        if self._order is None:
            self._order = sorted(self.intents.values(), key=_route_key)
        return self._order

    def _set_route(self, intent: Intent, route: RouteTuple | None, reason: str, now: float,
                   cause: str) -> bool:
        """Give ``intent`` the route ``route`` (None: no path, for ``reason``). True when its
        path or state changed."""
        old_path, old_state = intent.path, intent.state
        if route is not None:
            new_path, intent.links, intent.latency_ms, intent.cost = route
            intent.reason = ""
            if new_path != old_path or old_state in WITHOUT_PATH:
                intent.state = _PENDING
        else:
            new_path = None
            intent.links = None
            intent.latency_ms = intent.cost = None
            intent.reason = reason
            intent.state = (IntentState.DEGRADED if intent.ever_installed
                            else IntentState.INFEASIBLE)
        intent.path = new_path
        if new_path != old_path:
            history = intent.history
            # PathChange's own __new__ is Python code: the tuple is made directly
            history.append(_new_tuple(PathChange, (now, old_path, new_path, cause)))
            if len(history) > HISTORY_MAX:
                del history[0]
            # logged by whoever sends the change, once it is sent (a log line costs ~70 us:
            # for a cut moving 1,000 intents, more than routing them); formatted only when
            # logged (a big change logs one summary line, each intent at DEBUG only)
            iid = intent.id
            self.log_records.append((
                DeferredMessage((_reroute_text, intent.spec.name, iid, old_path, new_path,
                                 cause, reason)),
                {"intent": iid, "event": "reroute"}))
            return True
        return intent.state != old_state

    def take_broken(self) -> set[int]:
        """Ids of the intents moved since the last call off a path with a link that is down
        (or a switch that is gone): their traffic is lost already, so their new flows need
        not wait for anything (see ``Change.phase0``)."""
        out, self._broken = self._broken, set()
        return {i for i in out if i in self.intents}

    def take_log_records(self) -> list[tuple[object, dict[str, Any]]]:
        """The reroute log lines gathered since the last call."""
        out, self.log_records = self.log_records, []
        return out
