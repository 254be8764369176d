"""The Router: intents, destinations, tunnels, protection and external flows -> one plan.

Each concern is a contributor that owns its flows under cookies and writes them into one
:class:`~.plan.OwnerPlan` (Faucet's ``Valve`` handing work to its managers):

* :class:`~.intents.IntentTable` routes the intents (``route_all``);
* :class:`~.destinations.Destinations` keeps table 2, the least-latency flows to every host;
* :class:`~.tunnels.Tunnels` keeps the MPLS segments unprotected intents ride;
* :func:`~.protection.plan_detours` gives protected intents a local detour around every
  link (computed by ``route_all``, which reserves their backup bandwidth; the router turns
  them into flows and fast-failover groups);
* external owners (anycast NAT flows of compute steering) are set with :meth:`set_external`.

The router builds each intent's own flows (its ingress flow onto its tunnel, or its flows
along a protected path, or its fallback) and its meters and fast-failover groups. Every
owner's flows are a function of the current state alone (routes are recomputed in full by
``route_all``, destination trees whenever the graph changes), so the plan always equals a
fresh one; a change rebuilds only the owners it touched, and the plan records per switch what
left and what came, so the core diffs only those.

When no path meets an intent's bounds its traffic falls back to ``best_effort`` (the default:
its flows are replaced by one flow at the ingress switch that sends its traffic to table 2,
i.e. along the least-latency destination flows) or, with ``fallback="drop"``, to a drop flow
at the ingress switch. Keeping an ingress flow rather than deleting all the intent's flows
serves make-before-break: the ingress flow is modified in place in phase 0, so traffic leaves
a dead path at once instead of after the phase-2 deletes, and its packet counter shows how
much of the intent's traffic runs best effort.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from controller.network.bypass import Bypasses
from controller.network.destinations import Destinations
from controller.network.flows import (
    ETH_TYPE_MPLS,
    OWNER_DESTINATION,
    OWNER_ID_BITS,
    OWNER_INTENT,
    OWNER_PIPELINE,
    TABLE_DESTINATIONS,
    TABLE_HEADS,
    TABLE_INTENTS,
    Action,
    Buckets,
    FlowEntry,
    FlowPlan,
    Instructions,
    Match,
    pipeline_flows,
)
from controller.network.intents import (
    WITHOUT_PATH,
    Intent,
    IntentTable,
    intent_match_items,
    policed,
)
from controller.network.limits import ControlPlaneLimits
from controller.network.plan import OwnerPlan
from controller.network.tunnels import Tunnels

if TYPE_CHECKING:
    from controller.network.state import NetworkState
    from controller.topology.model import IntentSpec

__all__ = ["FALLBACKS", "Router"]

FALLBACKS = ("best_effort", "drop")
_INTENT_VARIANTS = 3  # flow sets kept per intent (see Router._refresh_intents)
_PUSH_INSTRUCTIONS_MAX = 1 << 14
_Variant = tuple[dict[int, frozenset[FlowEntry]], dict[int, Buckets]]
"""an intent's flows per switch, its fast-failover groups per switch"""


class Router:
    """Routes intents and destinations over a :class:`NetworkState` and builds the plan."""

    def __init__(self, state: NetworkState, *, fallback: str = "best_effort",
                 limits: ControlPlaneLimits | None = None, fast_reroute: bool = False) -> None:
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, not {fallback!r}")
        self.state = state
        self.fallback = fallback
        self.owner_plan = OwnerPlan()
        self.table = IntentTable(state)
        self.bypasses = Bypasses(state, self.owner_plan, enabled=fast_reroute)
        self.destinations = Destinations(
            state, self.owner_plan, self.bypasses.ip_action if fast_reroute else None)
        self._tunnels = Tunnels(state, self.owner_plan, self.bypasses.action)
        self._hosts_version = state.hosts_version
        self._intent_keys: dict[int, tuple[Any, ...]] = {}
        self._intent_variants: dict[int, dict[tuple[Any, ...], _Variant]] = {}
        self._push_instructions: dict[tuple[int, Action | None], Instructions] = {}
        """(label, action or None) -> the instructions of an ingress flow entering that way"""
        self.intent_groups: dict[int, dict[int, Buckets]] = {}
        """intent id -> dpid -> fast-failover buckets (protected intents; group id = intent
        id)"""
        self.limits = limits if limits is not None else ControlPlaneLimits()
        base = pipeline_flows(self.limits.packet_in_pps, self.limits.packet_in_control_pps)
        # owner 0: the pipeline (its flows carry cookies of kind OWNER_PIPELINE)
        self.owner_plan.set_owner(0, {dpid: base for dpid in state.dpids()})

    # -- intents ----------------------------------------------------------------------------------
    @property
    def intents(self) -> dict[int, Intent]:
        """The intents by id (live: change them through the router only)."""
        return self.table.intents

    def add(self, spec: IntentSpec, intent_id: int | None = None) -> Intent:
        """Register an intent (not routed yet: call :meth:`route_all`). Bad input raises and
        changes nothing."""
        return self.table.add(spec, intent_id)

    def remove(self, intent_id: int) -> Intent:
        return self.table.remove(intent_id)

    def route_all(self, now: float, cause: str) -> set[int]:
        """Route every intent on the network as it is; the ids whose flows change."""
        return self.table.route_all(now, cause)

    @contextmanager
    def trial(self) -> Iterator[Callable[[], None]]:
        """See :meth:`IntentTable.trial`: try adding and routing intents, roll back on
        demand. Call :meth:`refresh` before the trial so the plan is settled."""
        with self.table.trial() as rollback:
            yield rollback

    def take_broken(self) -> set[int]:
        return self.table.take_broken()

    def take_log_records(self) -> list[tuple[object, dict[str, Any]]]:
        """The reroute log lines gathered since the last call (message, extra)."""
        return self.table.take_log_records()

    # -- the plan ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring the per-owner plan up to date with the state and the intents' routes."""
        st = self.state
        self.bypasses.refresh()
        self.destinations.refresh()
        dirty = self.table.dirty
        if self._hosts_version != st.hosts_version:
            self._hosts_version = st.hosts_version
            dirty.update(self.intents)
        if dirty:
            self._refresh_intents(sorted(dirty))
            dirty.clear()
        self._tunnels.drop_idle()

    def plan(self) -> FlowPlan:
        """The full FlowPlan: pipeline + destination + intent flows for every switch."""
        self.refresh()
        return self.owner_plan.snapshot()

    def wanted(self, dpid: int) -> set[FlowEntry]:
        """The flows ``dpid`` should hold (live: do not modify; call :meth:`refresh` first)."""
        return self.owner_plan.wanted(dpid)

    def wanted_keys(self, dpid: int) -> Mapping[tuple[int, int, Match], int]:
        """Keys of :meth:`wanted` with the number of wanted flows holding each."""
        return self.owner_plan.wanted_keys(dpid)

    def take_delta(self) -> dict[int, tuple[set[FlowEntry], set[FlowEntry]]]:
        """Refresh, then per dpid ``(removed, added)``: the flows that left and joined the plan
        since the last call (net: a flow removed and added back is in neither)."""
        self.refresh()
        return self.owner_plan.take_delta()

    def set_external(self, cookie: int, flows: Mapping[int, frozenset[FlowEntry]]) -> None:
        """Flows the router does not compute itself (anycast NAT), owned by ``cookie``:
        replaces that owner's flows (empty: removes them). They join the plan like any other."""
        if cookie >> OWNER_ID_BITS in (OWNER_PIPELINE, OWNER_DESTINATION, OWNER_INTENT):
            raise ValueError(f"cookie {cookie:#x} belongs to the router's own flows")
        self.owner_plan.set_owner(cookie, {d: frozenset(es) for d, es in flows.items() if es})

    def external_cookies(self, kind: int) -> list[int]:
        """Cookies of the external owners of ``kind`` that hold flows."""
        return [c for c in self.owner_plan.owners() if c >> OWNER_ID_BITS == kind]

    def head_target(self, label: int) -> int | None:
        """The first label of the tunnel that head ``label`` points at (None: not a head)."""
        return self._tunnels.head_target(label)

    def first_segment(self, label: int) -> int:
        """The first label of the tunnel a packet pushed with ``label`` rides (a head's
        target, or the label itself)."""
        return self._tunnels.first_segment(label)

    def head_riders(self, label: int) -> set[int]:
        """The intents whose ingress pushes head ``label`` (live: do not modify)."""
        return self._tunnels.head_riders(label)

    def tunnels(self) -> dict[int, list[int]]:
        """label -> ids of the intents whose traffic carries it."""
        return self._tunnels.riders()

    def meter_plan(self) -> dict[int, dict[int, int]]:
        """dpid -> {meter id: rate in kbit/s}: one meter per policed intent that has a path,
        at its ingress switch, with the intent's id as meter id and its reservation as
        rate."""
        node_dpid = self.state.wiring.node_dpid
        out: dict[int, dict[int, int]] = {}
        intents = self.intents
        for iid in sorted(self.table.policed):
            intent = intents[iid]
            if intent.path is None:
                continue
            out.setdefault(node_dpid[intent.path[0]], {})[intent.id] = max(
                1, round(intent.spec.min_bandwidth_mbps * 1000))
        return out

    def group_plan(self) -> dict[int, dict[int, Buckets]]:
        """dpid -> {group id: fast-failover buckets} of every protected intent and of the
        bypasses (fast reroute)."""
        out: dict[int, dict[int, Buckets]] = {d: dict(g) for d, g in self.bypasses.groups().items()}
        for iid, per in self.intent_groups.items():
            for dpid, buckets in per.items():
                out.setdefault(dpid, {})[iid] = buckets
        return out

    # -- each intent's own flows --------------------------------------------------------------
    def _refresh_intents(self, ids: list[int]) -> None:
        """Rebuild the flows of the intents ``ids`` whose route, state, tunnel, detours or
        hosts changed, and of those whose tunnel head changed with them. One loop for all: a
        batch or a cut refreshes a thousand intents, and the per-intent work is what such a
        change costs."""
        intents = self.table.intents
        tunnels = self._tunnels
        keys_of, variants_of = self._intent_keys, self._intent_variants
        intent_groups = self.intent_groups
        set_owner = self.owner_plan.set_owner
        hosts_version = self.state.hosts_version
        changed = [intents[iid] for iid in ids if iid in intents]
        extra = tunnels.update(changed, [iid for iid in ids if iid not in intents])
        if extra:
            ids = sorted(set(ids) | extra)
        ingress_of = tunnels.ingress
        for iid in ids:
            cookie = (OWNER_INTENT << OWNER_ID_BITS) | iid  # make_cookie, inlined: hot
            intent = intents.get(iid)
            if intent is None:
                keys_of.pop(iid, None)
                variants_of.pop(iid, None)
                intent_groups.pop(iid, None)
                set_owner(cookie, {})
                continue
            ingress = ingress_of(intent)
            # what the flows are a function of (the hosts' records by their version: hashing
            # two records for every moved intent cost more than building its flows). An
            # intent on a tunnel: what its ingress pushes alone (a head follows the route),
            # so a reroute that keeps the head changes none of its flows
            key = (ingress, intent.path[0] if intent.path else None, hosts_version,
                   intent.conflict_with is not None) if ingress is not None else (
                intent.path, intent.links, intent.state in WITHOUT_PATH,
                intent.conflict_with is not None, hosts_version,
                # detours depend on every link's state and the residuals, not only the
                # path (route_all recomputes them and marks the intent dirty when they
                # change)
                intent.detours)
            if keys_of.get(iid) == key:
                continue
            keys_of[iid] = key
            # the last few flow sets of each intent are kept: a flapping link moves intents
            # back and forth between the same paths
            variants = variants_of.get(iid)
            if variants is None:
                variants = variants_of[iid] = {}
                entry = None
            else:
                entry = variants.pop(key, None)
            if entry is None:
                groups: dict[int, Buckets] = {}
                entry = (self._intent_flows(intent, ingress, groups, cookie), groups)
                if len(variants) >= _INTENT_VARIANTS:
                    del variants[next(iter(variants))]
            variants[key] = entry
            flows, groups = entry
            if groups:
                intent_groups[iid] = groups
            elif iid in intent_groups:
                del intent_groups[iid]
            set_owner(cookie, flows)

    def _intent_flows(self, intent: Intent, ingress: tuple[int, Action | None] | None,
                      groups: dict[int, Buckets], cookie: int) -> dict[int, frozenset[FlowEntry]]:
        """The flows of ``intent`` (its cookie: ``cookie``) per dpid (``ingress``: the label
        its ingress pushes and the port it outputs on, None for a head's label, see
        :meth:`Tunnels.ingress`); fills ``groups`` for a protected intent (from its
        detours)."""
        st = self.state
        spec = intent.spec
        hosts = st.hosts
        src, dst = hosts.get(spec.src), hosts.get(spec.dst)
        if src is None or dst is None:
            return {}
        match = intent_match_items(spec, src.ip, dst.ip)
        prio = intent.traffic[1]  # intent_priority(spec)
        first: Instructions = (("meter", intent.id),) if policed(spec) else ()
        path, links = intent.path, intent.links
        if ingress is not None and path is not None:
            # the ingress pushes a head's label (the head and the tunnel do the rest) or its
            # tunnel's first label
            push = self._push_instructions.get(ingress)
            if push is None:
                # one tuple for every intent entering this way (a batch builds a thousand
                # ingress flows onto a few dozen heads and tunnels)
                if len(self._push_instructions) >= _PUSH_INSTRUCTIONS_MAX:
                    self._push_instructions.clear()
                label, action = ingress
                push = self._push_instructions[ingress] = (
                    ("push_mpls", ETH_TYPE_MPLS), ("set_field", ("mpls_label", label)),
                    ("goto_table", TABLE_HEADS) if action is None else action)
            return {st.wiring.node_dpid[path[0]]: frozenset((FlowEntry(
                TABLE_INTENTS, prio, match, first + push if first else push, cookie),))}
        out: dict[int, list[FlowEntry]] = {}
        if path is not None and links is not None:
            node_dpid = st.wiring.node_dpid
            d = intent.detours
            if d is not None:
                groups.update(d.groups)
                for dpid, per_port in d.rules:
                    for in_port, out_port in per_port:
                        out.setdefault(dpid, []).append(FlowEntry(
                            TABLE_INTENTS, min(prio + 1, 0xFFFF),
                            tuple(sorted(match + (("in_port", in_port),))),
                            (("output", out_port),), cookie))
            for u, lid in zip(path, links, strict=False):
                act = ("group", intent.id) if node_dpid[u] in groups \
                    else ("output", st.out_port(u, lid))
                out.setdefault(node_dpid[u], []).append(
                    FlowEntry(TABLE_INTENTS, prio, match, first + (act,), cookie))
                first = ()  # the meter polices at the ingress only
            out.setdefault(dst.dpid, []).append(
                FlowEntry(TABLE_INTENTS, prio, match, (("output", dst.port_no),), cookie))
        elif intent.state in WITHOUT_PATH and intent.conflict_with is None:
            fallback: Instructions = () if self.fallback == "drop" \
                else (("goto_table", TABLE_DESTINATIONS),)
            out[src.dpid] = [FlowEntry(TABLE_INTENTS, prio, match, fallback, cookie)]
        return {dpid: frozenset(es) for dpid, es in out.items()}
