"""ControllerCore: the controller's logic without os-ken (Faucet's ``Valve`` analogue).

Every method takes ``now`` and returns OpenFlow messages (os-ken parser objects with
``datapath=None``); the os-ken app translates events into calls and sends what comes back.

How the app drives it
---------------------
* switch handshake: read the port descriptions, call :meth:`ControllerCore.switch_connected`
  (send the returned Change), then request the switch's flows (``openflow.flow_stats_request``)
  and call :meth:`reconcile` with the entries (``openflow.flowstats_to_entry``). Until a
  switch is reconciled the core sends it nothing: its flow table is unknown.
* port status -> :meth:`port_status`; datapath gone -> :meth:`switch_lost`;
  packet-in -> :meth:`packet_in`; every few seconds -> :meth:`lldp_probes` and :meth:`tick`.
* A :class:`Change` is sent in up to three phases (make-before-break): ``phase0`` (adds and
  in-place modifies, each switch's list ends with a barrier) on all switches; ``phase1``
  (ingress flows onto the tunnels phase 0 made) to a switch once the phase-0 barriers of the
  switches its flows' traffic crosses are confirmed (``Change.phase1_after``);
  then ``phase2`` (deletes, again ending with barriers); when those are confirmed,
  :meth:`confirm`. Changes must be sent one after the other, in the order they were returned
  (a FIFO): the core diffs each new plan against the flows it expects once all earlier
  Changes have been applied, so a later change's phase 0 must not overtake an earlier one's
  phase 2 on a switch.
"""

from __future__ import annotations

import collections
import gc
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from controller.errors import CpnError, InsufficientBandwidth, NotFound
from controller.network import openflow, packets
from controller.network.change import (
    LOG_EACH_MAX,
    Change,
    ChangeKind,
    PacketInResult,
    id_ranges,
)
from controller.network.flows import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_LLDP,
    OWNER_ANYCAST,
    OWNER_ID_BITS,
    OWNER_ID_MASK,
    OWNER_INTENT,
    OWNER_TUNNEL,
    FlowEntry,
    FlowPlan,
    Match,
    diff_entries,
    packet_in_meters,
)
from controller.network.intents import WITHOUT_PATH, DeferredMessage, Intent, IntentState
from controller.network.limits import ControlPlaneLimits
from controller.network.lldpauth import LldpAuth, LldpGuard
from controller.network.router import Router
from controller.network.sla import SlaMonitor, SlaSample
from controller.network.state import NetworkState

if TYPE_CHECKING:
    from controller.topology.model import IntentSpec, Topology
    from controller.topology.wiring import Wiring

__all__ = ["Change", "ChangeKind", "ControllerCore", "PacketInResult"]

log = logging.getLogger("controller.network.core")

REMOVED_SLACK_S = 0.2
"""A flow-removed report of a flow the switch installed at least this long before the
controller last added a flow with its table, priority and match is of an older flow: the
controller's own delete of it, reported after a later change put the flow back (a switch
re-adding what it deleted is no removal behind our back). Installed within this margin, or
not stamped, the report is believed: the margin covers the error of the estimate (the
switch's clock granularity and the report's time in flight)."""
ADDED_MEMORY_S = 30.0
"""How long the controller remembers when it added each flow, for :data:`REMOVED_SLACK_S`
(a report later than that is believed and costs one needless restore)."""

PACKET_IN_MAX_BYTES = 9216
"""Largest frame a packet-in may carry (a jumbo frame of the backbone); longer is refused."""
ETH_TYPE_MPLS, ETH_TYPE_MPLS_MC = 0x8847, 0x8848
PACKET_IN_REJECTIONS = ("unknown_switch", "no_in_port", "truncated", "oversized",
                        "arp_malformed", "arp_on_trunk", "ipv4_malformed", "mpls",
                        "other_ethertype")
"""Why a packet-in is not used (LLDP's reasons are :mod:`~controller.network.lldpauth`'s):
from a switch the topology lacks, without an in_port, shorter than an Ethernet header,
longer than :data:`PACKET_IN_MAX_BYTES`, ARP that does not parse or arrives on a trunk
port, an IPv4 header cut short or not version 4, MPLS (no label reaches the controller by
design), any other Ethernet type."""


def _malformed(known_switch: bool, in_port: int | None, data: bytes) -> str | None:
    """The reason a packet-in is refused before its Ethernet type is read, or None."""
    if not known_switch:
        return "unknown_switch"
    if in_port is None:
        return "no_in_port"
    if len(data) < 14:
        return "truncated"
    if len(data) > PACKET_IN_MAX_BYTES:
        return "oversized"
    return None


def _installed_text(name: str, intent_id: int, path: tuple[str, ...]) -> str:
    return f"intent {name} ({intent_id}) installed on {'-'.join(path)}"


def _shortfalls(intent: Intent) -> int:
    """How many links of a protected intent's path lack a detour for want of bandwidth."""
    d = intent.detours
    return 0 if d is None else len(d.shortfalls)


class ControllerCore:
    """The whole controller logic for one topology; see the module docstring."""

    def __init__(self, topology: Topology, *, wiring: Wiring | None = None,
                 fallback: str = "best_effort", now: float = 0.0,
                 startup_grace_s: float = 10.0, lldp_timeout_s: float = 10.0,
                 load_intents: bool = True, lldp_auth: LldpAuth | None = None,
                 limits: ControlPlaneLimits | None = None, fast_reroute: bool = False) -> None:
        self.state = NetworkState(topology, wiring, now=now, startup_grace_s=startup_grace_s,
                                  lldp_timeout_s=lldp_timeout_s, limits=limits)
        self.router = Router(self.state, fallback=fallback, limits=limits,
                             fast_reroute=fast_reroute)
        self._packet_in_meters = {
            mid: (pps, True) for mid, pps in packet_in_meters(
                self.router.limits.packet_in_pps,
                self.router.limits.packet_in_control_pps).items()}
        """meter id -> (rate packets/s, True): the packet-in meters every switch holds"""
        self.lldp = LldpGuard(lldp_auth)
        """signs the probes and judges received LLDP (None auth: unsigned discovery)"""
        self._views: dict[int, set[FlowEntry]] = {}
        """dpid -> the flows the switch holds once every Change returned so far is applied;
        absent for a switch not reconciled since it (re)connected"""
        self._group_views: dict[int, dict[int, Any]] = {}
        """dpid -> {group id: buckets}, like ``_meter_views``"""
        self._meter_views: dict[int, dict[int, tuple[int, bool]]] = {}
        """dpid -> {meter id: (rate, in packets/s)} the switch holds once every Change is
        applied (kbit/s for policed intents, packets/s for the packet-in meters); absent when
        unknown (not reconciled since it connected)"""
        self._unsure: set[int] = set()
        """dpids whose view may differ from the plan of the last change (just read from the
        switch, or flows lost behind our back): the next change diffs them in full"""
        self._added_log: collections.deque[tuple[float, Mapping[int, Sequence[FlowEntry]]]] = \
            collections.deque()
        """(``now``, its adds per dpid) of each change of the last :data:`ADDED_MEMORY_S`,
        oldest first: when the controller last added a flow (see :meth:`flows_removed`)"""
        self._tokens = itertools.count(1)
        self._last_token = 0
        self.freeze_gc = False
        """After each change, move every object to the collector's permanent generation
        (``gc.freeze``). For a long-running controller (the service sets it, and unfreezes
        and collects now and then, when idle, to reclaim reference cycles); off by default,
        so a test process that makes thousands of cores does not keep their garbage."""
        self.anycast_arp: dict[str, str] = {}
        self.sla = SlaMonitor()
        """SLA monitoring of the intents' measured latency (sampled by :meth:`tick`)"""
        self.sla_reroute = True
        """intents with ``sla_reroute`` may be routed on measured delays (False in a cluster:
        each member measures for itself, and members must route alike)"""
        self._sla_routed_version = -1
        """``state.measurements_version`` when intents were last routed on measured delays"""
        self.packet_in_rejected: dict[str, int] = {}
        """reason -> packet-ins not used since start (:data:`PACKET_IN_REJECTIONS`)"""
        """anycast IPv4 -> the MAC proxy ARP answers with (set by :meth:`set_anycast`)"""
        if load_intents:
            for spec in topology.intents:
                self.router.add(spec)
        self.router.route_all(now, cause="start")

    # -- views ----------------------------------------------------------------------------------
    @property
    def wiring(self) -> Wiring:
        return self.state.wiring

    def installed_plan(self) -> FlowPlan:
        """What the reconciled switches hold once all Changes returned so far are applied."""
        return FlowPlan({dpid: frozenset(es) for dpid, es in self._views.items()})

    def wanted_plan(self) -> FlowPlan:
        return self.router.plan()

    def intents(self) -> list[Intent]:
        return [self.router.intents[i] for i in sorted(self.router.intents)]

    def intent(self, intent_id: int) -> Intent:
        return self.router.table[intent_id]

    def synced(self, dpid: int) -> bool:
        return dpid in self._views

    # -- the one place plans become messages ----------------------------------------------------
    def _replan(self, now: float, kind: ChangeKind, cause: str, *,
                reroute: bool = True) -> Change:
        # A big change allocates ~100,000 objects; the cyclic collector would scan the whole
        # plan several times meanwhile (a full collection of a 1,000-intent plan costs tens of
        # ms). Nothing here builds reference cycles, so collection waits until the end.
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._replan_now(now, kind, cause, reroute=reroute)
        finally:
            if enabled:
                if self.freeze_gc:
                    # the plan just built lives until a later change replaces it (and then
                    # dies by reference count): out of the collector's sight, it is neither
                    # scanned by the collection its allocations would set off at once (4-16
                    # ms in the lab, right between a cut's compute and its sending) nor by
                    # every later full collection (50-120 ms with a 1,000-intent plan)
                    gc.freeze()
                gc.enable()

    def _apply_delta(self, delta: Mapping[int, tuple[set[FlowEntry], set[FlowEntry]]]
                     ) -> tuple[dict[int, tuple[FlowEntry, ...]],
                                dict[int, tuple[FlowEntry, ...]]]:
        """Per switch, the adds and deletes that move its view to the plan, and the views
        moved. A switch whose view may differ from the plan (``_unsure``) is diffed in
        full."""
        router = self.router
        adds: dict[int, tuple[FlowEntry, ...]] = {}
        deletes: dict[int, tuple[FlowEntry, ...]] = {}
        for dpid, view in self._views.items():
            if dpid in self._unsure:
                # the view is what the switch reported (or lost): diff it in full
                want = router.wanted(dpid)
                d = diff_entries(view, want)
                view.clear()
                view.update(want)
                add, dele = d.adds, d.deletes
            else:
                # the view is the plan as of the last change: only the delta can differ
                moved_flows = delta.get(dpid)
                if moved_flows is None:
                    continue
                removed, added = moved_flows
                keys = router.wanted_keys(dpid)
                # in no particular order: the messages are put in theirs when they are made
                # (openflow.flowentry_to_msgs), and sorting a thousand entries twice showed
                add = tuple(added)
                dele = tuple(e for e in removed if e.key not in keys)
                view.difference_update(removed)
                view.update(added)
            if add:
                adds[dpid] = add
            if dele:
                deletes[dpid] = dele
        return adds, deletes

    def _remember_adds(self, adds: Mapping[int, Sequence[FlowEntry]], now: float) -> None:
        """Keep ``adds`` for :meth:`_last_added` (one append: a cut's change on Cogentco adds
        9,000 flows, and flows removed are rare); forget what is older than
        :data:`ADDED_MEMORY_S`."""
        log_ = self._added_log
        log_.append((now, adds))
        while log_[0][0] < now - ADDED_MEMORY_S:
            log_.popleft()

    def _last_added(self, dpid: int, keys: Iterable[tuple[int, int, Match]]
                    ) -> dict[tuple[int, int, Match], float]:
        """When the controller last added a flow with each of ``keys`` on ``dpid``, for those
        added within :data:`ADDED_MEMORY_S`."""
        want = set(keys)
        out: dict[tuple[int, int, Match], float] = {}
        for then, adds in reversed(self._added_log):
            for e in adds.get(dpid, ()):
                if e.key in want:
                    out[e.key] = then
                    want.discard(e.key)
            if not want:
                break
        return out

    def _replan_now(self, now: float, kind: ChangeKind, cause: str, *,
                    reroute: bool) -> Change:
        t0 = time.perf_counter()
        moved = self.router.route_all(now, cause) if reroute else set()
        router = self.router
        delta = router.take_delta()
        token = next(self._tokens)
        self._last_token = token
        adds, deletes = self._apply_delta(delta)
        self._unsure.clear()
        if adds:
            self._remember_adds(adds, now)
        for iid in moved:
            intent = self.router.intents[iid]
            if intent.state is IntentState.PENDING:
                intent.pending_since_token = token
        # flows of intents now in fallback are deleted in phase 0 (nothing to make first), and
        # so are destination flows: one whose next hop became its switch's default route
        # must go for the default (made or moved in the same phase, before it) to carry its
        # host's traffic, and a default route leaves once its hosts' exact flows are made
        intents = self.router.intents
        early: dict[int, list[FlowEntry]] = {}
        late: dict[int, list[FlowEntry]] = {}
        for dpid, entries in deletes.items():
            for e in entries:
                owner = e.owner
                fell = None if owner is None or owner[0] != "intent" else intents.get(owner[1])
                is_early = (fell is not None and fell.state in WITHOUT_PATH) \
                    or (owner is not None and owner[0] == "destination")
                (early if is_early else late).setdefault(dpid, []).append(e)
        # everything goes in phase 0 but what moves live traffic onto a tunnel made in this
        # change: the ingress flows that push the label of a head pointing at it, and the
        # heads that point at it. Those wait in phase 1 until the tunnel is confirmed (see
        # Change.phase0); a head's flow and its riders' ingress flows sit on one switch and
        # go in one bundle. Traffic cut off by the failure moves at once.
        head_target, first_segment = router.head_target, router.first_segment
        new_segments = {label for label in (
            e.cookie & OWNER_ID_MASK for es in adds.values() for e in es
            if e.cookie >> OWNER_ID_BITS == OWNER_TUNNEL) if head_target(label) is None}
        broken = router.take_broken()
        if router.bypasses.enabled:
            # under fast reroute the traffic of a cut link rides its bypass meanwhile (a link
            # without one has no other way at all: nothing moves): it is live traffic, and
            # moves onto its new tunnel only once the tunnel is confirmed, like any other
            broken = set()
        first: dict[int, Sequence[FlowEntry]] = {}
        then: dict[int, Sequence[FlowEntry]] = {}
        for dpid, entries in adds.items():
            if not new_segments:
                first[dpid] = entries
                continue
            now_: list[FlowEntry] = []
            later: list[FlowEntry] = []
            for e in entries:
                cookie = e.cookie
                kind_ = cookie >> OWNER_ID_BITS
                if kind_ == OWNER_INTENT:
                    rider = intents.get(cookie & OWNER_ID_MASK)
                    if rider is not None and rider.mpls_label is not None \
                            and first_segment(rider.mpls_label) in new_segments \
                            and cookie & OWNER_ID_MASK not in broken:
                        later.append(e)
                        continue
                elif kind_ == OWNER_TUNNEL:
                    label = cookie & OWNER_ID_MASK
                    if head_target(label) in new_segments \
                            and not router.head_riders(label) <= broken:
                        later.append(e)
                        continue
                now_.append(e)
            if now_:
                first[dpid] = now_
            if later:
                then[dpid] = later
        phase0, phase2 = openflow.two_phase(first, late, early)
        phase1 = {dpid: openflow.flowentry_to_msgs(adds=es) for dpid, es in then.items()}
        self._meters_into(phase0, phase2)
        self._groups_into(phase0, phase2)
        # a switch's phase 1 waits only for the phase-0 switches its riders' traffic crosses
        # (their paths after it: every segment of their tunnels is there), not for all
        node_dpid = self.wiring.node_dpid
        phase1_after: dict[int, frozenset[int]] = {}
        for dpid, moving in then.items():
            crossed: set[int] = set()
            for e in moving:
                oid = e.cookie & OWNER_ID_MASK
                if e.cookie >> OWNER_ID_BITS == OWNER_TUNNEL:  # a head: its riders' way
                    oid = min(router.head_riders(oid), default=-1)
                rider = intents.get(oid)
                path = rider.path if rider is not None else None
                if path is not None:
                    crossed.update(node_dpid[n] for n in path)
            crossed.discard(dpid)  # its own phase 0 goes before its phase 1 anyway
            phase1_after[dpid] = frozenset(crossed.intersection(phase0))
        pending = tuple(sorted(i.id for i in self.router.intents.values()
                               if i.state is IntentState.PENDING))
        change = Change(token=token, cause=cause, kind=kind,
                        phase0=phase0, phase1=phase1, phase2=phase2,
                        phase1_after=phase1_after, intents=pending, adds=adds, deletes=deletes,
                        log_records=self.router.take_log_records(),
                        compute_ms=(time.perf_counter() - t0) * 1000.0, compute_started=t0)
        if not change.empty or moved:
            log.info(f"{cause}: {sum(len(v) for v in adds.values())} adds, "
                     f"{sum(len(v) for v in deletes.values())} deletes on "
                     f"{len(change.dpids)} switches, {len(moved)} intents moved",
                     extra={"event": "change", "duration_ms": round(change.compute_ms, 3),
                            "token": token})
        return change

    def meter_plan(self) -> dict[int, dict[int, tuple[int, bool]]]:
        """dpid -> {meter id: (rate, in packets/s)}: the meters of policed intents (kbit/s)
        and on every switch the packet-in meters (packets/s)."""
        # the switches without a policed intent share one mapping (read only)
        base = self._packet_in_meters
        out: dict[int, dict[int, tuple[int, bool]]] = dict.fromkeys(self.state.dpids(), base)
        for dpid, meters in self.router.meter_plan().items():
            out[dpid] = {**base, **{mid: (rate, False) for mid, rate in meters.items()}}
        return out

    def _meters_into(self, phase0: dict[int, list[Any]], phase2: dict[int, list[Any]]) -> None:
        """Meters of policed intents and the packet-in meters (see
        :meth:`_side_table_into`)."""
        ofp = openflow.ofp
        commands = {"add": ofp.OFPMC_ADD, "modify": ofp.OFPMC_MODIFY, "delete": ofp.OFPMC_DELETE}
        self._side_table_into(phase0, phase2, self.meter_plan(), self._meter_views,
                              lambda cmd, mid, rate=(0, False): openflow.meter_mod(
                                  commands[cmd], mid, rate[0], pktps=rate[1]))

    def _groups_into(self, phase0: dict[int, list[Any]], phase2: dict[int, list[Any]]) -> None:
        """Fast-failover groups of protected intents (see :meth:`_side_table_into`)."""
        ofp = openflow.ofp
        commands = {"add": ofp.OFPGC_ADD, "modify": ofp.OFPGC_MODIFY, "delete": ofp.OFPGC_DELETE}
        self._side_table_into(phase0, phase2, self.router.group_plan(), self._group_views,
                              lambda cmd, gid, buckets=(): openflow.group_mod_ff(
                                  commands[cmd], gid, buckets))

    def _side_table_into(self, phase0: dict[int, list[Any]], phase2: dict[int, list[Any]],
                         wanted: Mapping[int, Mapping[int, Any]],
                         views: dict[int, dict[int, Any]],
                         mod: Callable[..., Any]) -> None:
        """Meters or groups (id -> rate or buckets per switch): added (or modified) at the
        head of phase 0, before the flows that use them; deleted at the end of phase 2, after
        those flows (deleting a meter or group deletes the flows that still use it). A switch
        whose table is unknown (just reconciled, no entry in ``views``) gets ADD then MODIFY
        of each: one of the two answers an error (exists / unknown) and the entry ends right
        either way. ``mod(command, id[, value])`` builds one message; ``views`` is updated."""
        nothing: Mapping[int, Any] = {}
        for dpid in self._views:
            want = wanted.get(dpid, nothing)
            have = views.get(dpid)
            if have == want:
                continue  # most switches, most changes: compared, not rebuilt
            head: list[Any] = []
            for key, value in sorted(want.items()):
                if have is None:
                    head += [mod("add", key, value), mod("modify", key, value)]
                elif key not in have:
                    head.append(mod("add", key, value))
                elif have[key] != value:
                    head.append(mod("modify", key, value))
            last = [mod("delete", key) for key in sorted(set(have or ()) - set(want))]
            views[dpid] = dict(want)
            if head:
                phase0[dpid] = head + phase0.get(dpid, [openflow.barrier_request()])
            if last:
                msgs = phase2.get(dpid, [openflow.barrier_request()])
                phase2[dpid] = msgs[:-1] + last + msgs[-1:]

    def confirm(self, change: Change, now: float) -> list[Intent]:
        """The app saw every barrier of ``change`` confirmed. Pending intents whose route
        was computed by this change or an earlier one, and whose switches are all reconciled,
        become ``installed``; returns them."""
        done = []
        intents, views = self.router.intents, self._views
        unsynced = {n for n, d in self.wiring.node_dpid.items() if d not in views}
        records = change.log_records
        for iid in change.intents:
            intent = intents.get(iid)
            if intent is None or intent.state is not IntentState.PENDING or intent.path is None:
                continue
            if intent.pending_since_token > change.token:
                continue
            if unsynced and not unsynced.isdisjoint(intent.path):
                continue
            intent.state = IntentState.INSTALLED
            intent.ever_installed = True
            done.append(intent)
            records.append((DeferredMessage((_installed_text, intent.name, iid, intent.path)),
                            {"intent": iid, "event": "installed"}))
        # the event log keeps the last 1,000 events: a big change is one event, not one per
        # intent that would push every link and switch event out of it
        if len(done) <= LOG_EACH_MAX:
            for intent in done:
                self.state.record("intent_installed", now, intent=intent.id,
                                  path=list(intent.path or ()))
        else:
            self.state.record("intents_installed", now, count=len(done), token=change.token,
                              intents=id_ranges([i.id for i in done]))
        return done

    # -- switch events --------------------------------------------------------------------------
    def switch_connected(self, dpid: int, ports: Mapping[int, bool], now: float) -> Change:
        """A switch finished its handshake; ``ports``: port_no -> live. The switch's flow
        table is unknown until :meth:`reconcile`, so the Change only concerns other switches."""
        self._views.pop(dpid, None)
        self._meter_views.pop(dpid, None)
        self._group_views.pop(dpid, None)
        self._unsure.discard(dpid)
        self.state.switch_connected(dpid, ports, now)
        log.info(f"switch {dpid:#x} connected with ports {sorted(ports)}",
                 extra={"dpid": dpid, "event": "switch_connected"})
        return self._replan(now, ChangeKind.SWITCH_CONNECTED,
                            f"switch {self.state.switches[dpid].name} connected")

    def switch_lost(self, dpid: int, now: float) -> Change:
        self._views.pop(dpid, None)
        self._meter_views.pop(dpid, None)
        self._group_views.pop(dpid, None)
        self._unsure.discard(dpid)
        self.state.switch_lost(dpid, now)
        log.warning(f"switch {dpid:#x} lost", extra={"dpid": dpid, "event": "switch_lost"})
        return self._replan(now, ChangeKind.SWITCH_LOST,
                            f"switch {self.state.switches[dpid].name} lost")

    def desync(self, dpid: int, now: float) -> bool:
        """Forget what switch ``dpid`` holds: it did not confirm a change within the barrier
        bound, so whether it applied that change (and any after it) is unknown until its
        table is read again and handed to :meth:`reconcile`. Until then it is treated like a
        switch that has just connected: it is still routed through (it is connected and may
        well forward), it gets no FlowMod (a diff against an unknown table would be a
        guess), and no intent whose path crosses it is confirmed (``installed`` would claim
        flows it may lack). False when it was not synced anyway."""
        if self._views.pop(dpid, None) is None:
            return False
        self._meter_views.pop(dpid, None)
        self._group_views.pop(dpid, None)
        self._unsure.discard(dpid)
        self.state.record("switch_unconfirmed", now, dpid=dpid)
        log.warning(f"switch {dpid:#x} did not confirm a change; its flow table is unknown "
                    "until it is read again",
                    extra={"dpid": dpid, "event": "switch_unconfirmed"})
        return True

    def port_status(self, dpid: int, port_no: int, up: bool, now: float) -> Change:
        changed = self.state.port_status(dpid, port_no, up, now)
        name = self.state.switch(dpid).name
        log.info(f"port {name}:{port_no} {'up' if up else 'down'}",
                 extra={"dpid": dpid, "event": "port_status", "port_no": port_no})
        if not changed:
            return Change(token=self._last_token, cause=f"port {name}:{port_no}",
                          kind=ChangeKind.PORT)
        return self._replan(now, ChangeKind.PORT_UP if up else ChangeKind.PORT_DOWN,
                            f"port {name}:{port_no} {'up' if up else 'down'}")

    def tick(self, now: float) -> Change:
        """Call every few seconds: ends the startup grace period when it is due, and samples
        the intents' measured latency when due (:meth:`sla_sample`)."""
        if self.state.tick(now):
            return self._replan(now, ChangeKind.GRACE_OVER, "startup grace over")
        if self.sla.due(now) and self.sla_sample(now):
            return self._replan(now, ChangeKind.INTENTS, "sla reroute")
        return Change(token=self._last_token, cause="tick")

    def sla_sample(self, now: float) -> set[int]:
        """One SLA round (:class:`~controller.network.sla.SlaMonitor`): every routed intent's
        measured path latency against its bound; events ``sla_violation`` and
        ``sla_restored``. Returns the ids of the intents with ``sla_reroute`` that are now
        violated and were not yet routed on measured delays, or that were and stay violated
        while new measurements came (routing them is the caller's replan)."""
        st = self.state
        table = self.router.table
        samples = []
        for intent in table.intents.values():
            if intent.links is None or intent.state in WITHOUT_PATH:
                intent.sla = None
                continue
            ms, unmeasured = st.path_measured_ms(intent.links, now)
            samples.append(SlaSample(intent.id, intent.links, intent.spec.max_latency_ms, ms,
                                     unmeasured))
        for ev in self.sla.sample(now, samples):
            kind = ev.pop("kind")
            ev["intent"] = ev.pop("key")
            intent = table.intents[ev["intent"]]
            st.record(kind, now, name=intent.name, **ev)
            text = (f"intent {intent.name} ({intent.id}): measured latency "
                    f"{ev['measured_ms']:g} ms " + ("over" if kind == "sla_violation" else
                                                    "back within") +
                    f" its bound {ev['bound_ms']:g} ms")
            (log.warning if kind == "sla_violation" else log.info)(
                text, extra={"intent": intent.id, "event": kind})
        for iid, rec in self.sla.records.items():
            table.intents[cast(int, iid)].sla = rec.as_dict()
        if not self.sla_reroute:
            return set()
        violated = cast(set[int], self.sla.violated())
        wanted = {i for i in violated if table.intents[i].spec.sla_reroute} \
            - table.measured_routing
        table.measured_routing |= wanted
        again = set()
        if st.measurements_version != self._sla_routed_version:
            again = violated & table.measured_routing
        if wanted or again:
            self._sla_routed_version = st.measurements_version
        return wanted | again

    def reconcile(self, dpid: int, flows: Iterable[FlowEntry], now: float) -> Change:
        """Adopt a switch's flow table (as read by flow stats): flows in the plan are kept
        untouched, missing ones added, changed ones replaced in place, strays deleted (ours
        by cookie and any foreign flow in our tables). Make-before-break as everywhere."""
        t0 = time.perf_counter()
        if dpid not in self.state.switches:
            raise NotFound(f"no switch with dpid {dpid:#x} in the topology")
        have = set(flows)
        n_read = len(have)
        read_keys = {e.key for e in have}
        self._views[dpid] = have  # becomes the plan in _replan
        self._meter_views.pop(dpid, None)
        self._group_views.pop(dpid, None)  # unknown: re-added idempotently
        self._unsure.add(dpid)
        name = self.state.switches[dpid].name
        change = self._replan(now, ChangeKind.RECONCILE, f"reconcile {name}", reroute=False)
        # what the switch lacked goes out in this change: an intent through it is installed
        # when this change is confirmed, not by an earlier change still in flight (a switch
        # read again in the middle of a change, after it refused part of it, counts as synced
        # from here on, and that change's confirmation must not vouch for its flows)
        intents = self.router.intents
        for iid in change.intents:
            path = intents[iid].path
            if path is not None and name in path:
                intents[iid].pending_since_token = change.token
        d_adds, d_dels = len(change.adds.get(dpid, ())), len(change.deletes.get(dpid, ()))
        replaced = sum(1 for e in change.adds.get(dpid, ()) if e.key in read_keys)
        self.state.record("reconciled", now, dpid=dpid, read=n_read,
                          kept=n_read - d_dels - replaced,
                          added=d_adds, deleted=d_dels)
        log.info(f"switch {dpid:#x} reconciled: {n_read} flows read, {d_adds} added, "
                 f"{d_dels} deleted",
                 extra={"dpid": dpid, "event": "reconcile",
                        "duration_ms": round((time.perf_counter() - t0) * 1000, 3)})
        return change

    # -- intents ----------------------------------------------------------------------------------
    def add_intent(self, spec: IntentSpec, now: float, intent_id: int | None = None, *,
                   admit: bool = False) -> tuple[Intent, Change]:
        """Add an intent and route it. With ``admit`` (the REST API), an intent with
        ``min_bandwidth_mbps`` is admission-controlled: if its bandwidth does not fit beside
        the reservations of the intents already routed, or routing it would take a path from
        an intent that has one, :class:`InsufficientBandwidth` is raised and nothing
        changes."""
        if not admit or spec.min_bandwidth_mbps <= 0:
            intent = self.router.add(spec, intent_id)
            self.state.record("intent_added", now, intent=intent.id, name=intent.name)
            return intent, self._replan(now, ChangeKind.INTENTS, f"intent {intent.name} added")
        self.router.refresh()
        self._check_bandwidth(spec)
        router = self.router
        with router.trial() as rollback:
            intent = self._admit(spec, now, intent_id, rollback)
        self.state.record("intent_added", now, intent=intent.id, name=intent.name)
        return intent, self._replan(now, ChangeKind.INTENTS, f"intent {intent.name} added")

    def _check_bandwidth(self, spec: IntentSpec) -> None:
        """Raise InsufficientBandwidth (naming the bottleneck link and its residual) if no
        path within the latency bound has ``spec.min_bandwidth_mbps`` residual now."""
        st = self.state
        src, dst = st.hosts.get(spec.src), st.hosts.get(spec.dst)
        if src is None or dst is None:
            return  # router.add reports the unknown host
        g = st.graph
        bw = spec.min_bandwidth_mbps
        if not st.node_present(src.node) or not st.node_present(dst.node):
            return  # not an admission question: the intent waits (infeasible)
        if g.constrained_path(src.node, dst.node, max_latency_ms=spec.max_latency_ms,
                              min_bandwidth_mbps=bw, weight="cost") is not None:
            return
        within = g.constrained_path(src.node, dst.node, max_latency_ms=spec.max_latency_ms,
                                    min_bandwidth_mbps=0.0, weight="latency")
        if within is None:
            return  # the latency bound fails whatever the bandwidth: reported as infeasible
        links = [g.link(lid) for lid in within.links]
        tight = min(links, key=lambda lk: lk.residual_mbps)
        index = st.link_index(tight.id)
        bottleneck = {"link": f"{tight.u}-{tight.v}", "index": index,
                      "residual_mbps": tight.residual_mbps,
                      "bandwidth_mbps": tight.bandwidth_mbps}
        raise InsufficientBandwidth(
            f"{bw:g} Mbps from {spec.src} to {spec.dst} does not fit within "
            f"{spec.max_latency_ms:g} ms: bottleneck link {bottleneck['link']} (link "
            f"{index}) has {bottleneck['residual_mbps']:g} of "
            f"{bottleneck['bandwidth_mbps']:g} Mbps left (path "
            f"{'-'.join(within.nodes)})", bottleneck=bottleneck,
            best_latency_ms=within.latency_ms)

    def add_intents(self, specs: Iterable[IntentSpec], now: float,
                    intent_ids: Iterable[int | None] | None = None
                    ) -> tuple[list[Intent], Change]:
        """Add many intents with one routing pass and one Change (what a batch from the REST
        API or the store should use: adding 1,000 one by one routes 1,000 times). All or
        nothing: if one spec is bad, none is added and the error is raised."""
        specs = list(specs)
        ids = list(intent_ids) if intent_ids is not None else [None] * len(specs)
        if len(ids) != len(specs):
            raise ValueError("intent_ids must match specs one to one")
        added: list[Intent] = []
        try:
            for spec, iid in zip(specs, ids, strict=True):
                added.append(self.router.add(spec, iid))
        except Exception:
            for intent in added:
                self.router.remove(intent.id)
            raise
        self.state.record("intents_added", now, intents=[i.id for i in added])
        return added, self._replan(now, ChangeKind.INTENTS, f"{len(added)} intents added")

    def flows_removed(self, dpid: int, flows: Iterable[FlowEntry], now: float,
                      installed_at: Mapping[FlowEntry, float] | None = None) -> Change:
        """The switch reported flows removed (OFPFlowRemoved; our flows carry
        OFPFF_SEND_FLOW_REM). Those the plan still wants were removed behind our back
        (``ovs-ofctl del-flows``, a table eviction): they are added again. Removals we caused
        ourselves are not in the expected view any more and are ignored, and so are those of
        a flow the switch installed (``installed_at``: the report's receipt less the flow's
        age, on the clock of ``now``) before a later change added it again
        (:data:`REMOVED_SLACK_S`): our own delete reported late. ``flows`` come from
        ``openflow.flowremoved_to_entry``: compared by table, priority, match and cookie (a
        flow-removed message has no instructions)."""
        view = self._views.get(dpid)
        if view is None:
            return Change(token=self._last_token, cause="flows removed (switch not synced)",
                          kind=ChangeKind.RESTORE)
        gone = {(e.key, e.cookie): installed_at.get(e) if installed_at else None
                for e in flows}
        lost = [e for e in view if (e.key, e.cookie) in gone]
        if lost and installed_at:
            # a flow installed before the controller last added it: our own delete, late
            added = self._last_added(dpid, (e.key for e in lost))
            lost = [e for e in lost
                    if (t := gone[e.key, e.cookie]) is None or e.key not in added
                    or t + REMOVED_SLACK_S >= added[e.key]]
        if not lost:
            return Change(token=self._last_token, cause="flows removed (ours)",
                          kind=ChangeKind.RESTORE)
        view.difference_update(lost)
        self._unsure.add(dpid)
        self._meter_views.pop(dpid, None)
        self._group_views.pop(dpid, None)  # a meter deleted behind our back takes its flows
        log.warning(f"switch {dpid:#x}: {len(lost)} flows removed behind our back; restoring",
                    extra={"dpid": dpid, "event": "flows_removed"})
        self.state.record("flows_removed", now, dpid=dpid, count=len(lost))
        return self._replan(now, ChangeKind.RESTORE,
                            f"restore {len(lost)} flows on {dpid:#x}", reroute=False)

    def apply_intents(self, adds: Iterable[tuple[int, IntentSpec]], removes: Iterable[int],
                      now: float) -> tuple[list[Intent], list[tuple[int, str]], Change]:
        """Apply committed changes to the operator intents (a cluster member applying what
        the store committed): remove ``removes`` (ids not held are ignored), then add
        ``adds`` with their ids (an id already held is replaced), routed in one pass and one
        Change. Unlike :meth:`add_intents` each add stands alone: a spec this core refuses
        is returned in the second list as ``(id, reason)`` and the others go on. Admission
        control is the writer's (it validated before committing)."""
        adds = list(adds)
        gone = [*removes, *(i for i, _ in adds)]
        removed = [self.router.remove(i) for i in dict.fromkeys(gone) if i in self.router.intents]
        added: list[Intent] = []
        refused: list[tuple[int, str]] = []
        for iid, spec in adds:
            try:
                added.append(self.router.add(spec, iid))
            except CpnError as exc:
                refused.append((iid, str(exc)))
        if removed:
            self.state.record("intents_removed", now, intents=[i.id for i in removed])
        if added:
            self.state.record("intents_added", now, intents=[i.id for i in added])
        cause = (f"{len(added)} intents added, {len(removed)} removed" if len(added) != 1
                 or removed else f"intent {added[0].name} added")
        return added, refused, self._replan(now, ChangeKind.INTENTS, cause)

    def validate_intent(self, spec: IntentSpec, now: float, *, admit: bool = False) -> None:
        """Raise what :meth:`add_intent` would raise for ``spec`` (an unknown host, a bad
        match, with ``admit`` a bandwidth that is not admitted) and change nothing: no
        intent, no route, no Change."""
        router = self.router
        router.table.check(spec)
        if not admit or spec.min_bandwidth_mbps <= 0:
            return
        router.refresh()
        probe_id = max(router.intents, default=0) + 1
        self._check_bandwidth(spec)
        with router.trial() as rollback:
            try:
                self._admit(spec, now, probe_id, rollback)
            finally:
                rollback()
                router.route_all(now, "admission check")

    def _admit(self, spec: IntentSpec, now: float, intent_id: int | None,
               rollback: Callable[[], None]) -> Intent:
        """Inside a router trial: add and route ``spec``; if it finds no path or would take
        one from an intent that has one, roll back and raise InsufficientBandwidth."""
        router = self.router
        had_path = {i for i, x in router.intents.items() if x.path is not None}
        # detours short of bandwidth per intent: a newcomer must not take an admitted
        # intent's backup reservation either
        short_before = {i: _shortfalls(x) for i, x in router.intents.items()}
        intent = router.add(spec, intent_id)
        router.route_all(now, f"admission of {intent.name}")
        lost = sorted(i for i in had_path if router.intents[i].path is None)
        unprotected = sorted(i for i, n in short_before.items()
                             if _shortfalls(router.intents[i]) > n)
        own = intent.detours.shortfalls if intent.detours is not None else ()
        if intent.path is None or lost or unprotected or own:
            # the greedy order (higher priority first) could not place all: roll back
            bottleneck = None
            if lost:
                why = (f"it would displace intents {lost} (their bandwidth, or the same "
                       "traffic at the same priority)")
            elif intent.path is None:
                why = intent.reason
            elif unprotected:
                why = (f"it would take the detour bandwidth of protected intents "
                       f"{unprotected}")
            else:
                # protected and reserving: its detours need the bandwidth too (refused
                # rather than admitted unprotected: see docs/controller.md, "Protection")
                bottleneck = own[0].as_bottleneck()
                why = "its detours need the bandwidth too: " + "; ".join(
                    f"the detour around {s.around} crosses {s.link} (link {s.index}), which "
                    f"has {s.residual_mbps:g} of {s.bandwidth_mbps:g} Mbps left" for s in own)
            rollback()
            router.route_all(now, "admission rolled back")
            raise InsufficientBandwidth(
                f"{spec.min_bandwidth_mbps:g} Mbps from {spec.src} to {spec.dst} not "
                f"admitted: {why}", bottleneck=bottleneck)
        return intent

    def remove_intent(self, intent_id: int, now: float) -> Change:
        intent = self.router.remove(intent_id)
        self.state.record("intent_removed", now, intent=intent_id, name=intent.name)
        return self._replan(now, ChangeKind.INTENTS, f"intent {intent.name} removed")

    def set_anycast(self, flows: Mapping[int, Mapping[int, Iterable[FlowEntry]]],
                    arp: Mapping[str, str], now: float) -> Change:
        """Replace every anycast NAT flow (compute steering, ``controller/compute/steering.py``):
        ``flows`` maps an owner cookie (kind 4, anycast) to its flows per dpid; owners not in
        it lose theirs. ``arp``: anycast IPv4 -> MAC that proxy ARP answers with."""
        for cookie in self.router.external_cookies(OWNER_ANYCAST):
            if cookie not in flows:
                self.router.set_external(cookie, {})
        for cookie, per in flows.items():
            if cookie >> OWNER_ID_BITS != OWNER_ANYCAST:
                raise ValueError(f"cookie {cookie:#x} is not an anycast cookie")
            self.router.set_external(cookie, {d: frozenset(es) for d, es in per.items()})
        self.anycast_arp = dict(arp)
        return self._replan(now, ChangeKind.ANYCAST, "anycast flows", reroute=False)

    # -- packets ----------------------------------------------------------------------------------
    def packet_in(self, dpid: int, in_port: int | None, data: bytes, now: float, *,
                  wall_s: float | None = None) -> PacketInResult:
        """A frame the switch sent up. ``wall_s``: the wall clock (seconds since the epoch)
        that signed LLDP probes are checked against (None: ``now``). Never raises on what a
        switch sends: a frame not used is counted by reason (:attr:`packet_in_rejected`)."""
        result = PacketInResult()
        reason = _malformed(dpid in self.state.switches, in_port, data)
        if reason is not None or in_port is None:
            self._reject(reason or "no_in_port")
            return result
        eth_type = packets.eth_type_of(data)
        if eth_type == ETH_TYPE_LLDP:
            self._lldp_in(dpid, in_port, data, now, now if wall_s is None else wall_s, result)
        elif eth_type == ETH_TYPE_ARP:
            info = packets.parse_arp(data)
            if info is None or self.wiring.is_link_port(dpid, in_port):
                self._reject("arp_malformed" if info is None else "arp_on_trunk")
                return result
            self._learn(info.src_mac, info.src_ip, dpid, in_port, now, result)
            target = self.state.host_by_ip(info.dst_ip)
            if info.opcode == 1 and target is not None and info.dst_ip != info.src_ip:
                reply = packets.arp_reply(target_mac=target.mac, target_ip=target.ip,
                                           requester_mac=info.src_mac,
                                           requester_ip=info.src_ip)
                result.messages.append((dpid, openflow.packet_out(in_port, reply)))
            elif info.opcode == 1 and info.dst_ip in self.anycast_arp:
                reply = packets.arp_reply(target_mac=self.anycast_arp[info.dst_ip],
                                           target_ip=info.dst_ip, requester_mac=info.src_mac,
                                           requester_ip=info.src_ip)
                result.messages.append((dpid, openflow.packet_out(in_port, reply)))
        elif eth_type == ETH_TYPE_IPV4:
            if not packets.ipv4_header_ok(data):
                self._reject("ipv4_malformed")
                return result
            src_ip, src_mac = packets.ipv4_src_of(data), packets.eth_src_of(data)
            if src_ip and src_mac:
                self._learn(src_mac, src_ip, dpid, in_port, now, result)
        else:
            self._reject("mpls" if eth_type in (ETH_TYPE_MPLS, ETH_TYPE_MPLS_MC)
                         else "other_ethertype")
        return result

    def _reject(self, reason: str) -> None:
        self.packet_in_rejected[reason] = self.packet_in_rejected.get(reason, 0) + 1

    def host_facing(self, dpid: int, port_no: int) -> bool:
        """A port the file gives a host, or where a host was learned. A port the file does
        not know is not host-facing until a host speaks there: LLDP on it can only show up
        in the link report's ``unexpected`` list, never mark a link of the file miswired."""
        peer = self.wiring.peer(dpid, port_no)
        if peer is not None:
            return peer[0] == "host"
        return any(h.dpid == dpid and h.port_no == port_no for h in self.state.hosts.values())

    def _lldp_in(self, dpid: int, in_port: int, data: bytes, now: float, wall_s: float,
                 result: PacketInResult) -> None:
        """LLDP at ``(dpid, in_port)``: used if it passes :class:`LldpGuard`'s checks, else
        counted and (paced) recorded as ``lldp_rejected``."""
        probe = packets.parse_lldp(data)
        reason = "host_port" if self.host_facing(dpid, in_port) \
            else self.lldp.check(probe, dpid, in_port, wall_s)
        if reason is not None:
            dropped = self.lldp.reject(reason, dpid, in_port, now)
            if dropped is not None:
                claimed = None if probe is None else {"dpid": probe.dpid,
                                                      "port_no": probe.port_no}
                sw = self.state.switches[dpid].name
                self.state.record("lldp_rejected", now, dpid=dpid, switch=sw, port_no=in_port,
                                  reason=reason, claimed=claimed, dropped=dropped)
                log.warning(f"LLDP dropped at {sw}:{in_port} ({reason}); {dropped} dropped "
                            "on this port since its last report",
                            extra={"dpid": dpid, "event": "lldp_rejected"})
            return
        if probe is not None and probe.dpid in self.state.switches:
            if self.state.lldp_observed(probe.dpid, probe.port_no, dpid, in_port, now):
                result.change = self._replan(now, ChangeKind.LLDP,
                                             f"lldp at {dpid:#x}:{in_port}")

    def _learn(self, mac: str, ip: str, dpid: int, port_no: int, now: float,
               result: PacketInResult) -> None:
        what = self.state.learn_host(mac, ip, dpid, port_no, now)
        if what in ("new", "moved"):
            log.info(f"host {ip} ({mac}) {what} at {dpid:#x}:{port_no}",
                     extra={"dpid": dpid, "event": f"host_{what}"})
            result.change = self._replan(now, ChangeKind.HOST, f"host {ip} {what}")

    def probe_ports(self) -> list[tuple[int, int]]:
        """``(dpid, port_no)`` of every live port of every connected switch that gets LLDP
        probes: host-facing ports (:meth:`host_facing`) excepted, as a host needs none, and
        could replay it."""
        out: list[tuple[int, int]] = []
        for dpid in self.state.dpids():
            sw = self.state.switches[dpid]
            if not sw.connected or sw.ports is None:
                continue
            out.extend((dpid, port_no) for port_no, live in sorted(sw.ports.items())
                       if live and port_no < 0xFFFFFF00 and not self.host_facing(dpid, port_no))
        return out

    def lldp_probes(self, now: float, *, wall_s: float | None = None,
                    ports: Iterable[tuple[int, int]] | None = None) -> list[tuple[int, Any]]:
        """One LLDP probe out of each of ``ports`` (None: every port of :meth:`probe_ports`),
        signed at ``wall_s`` (None: ``now``) when signing is on."""
        wall = now if wall_s is None else wall_s
        out = []
        for dpid, port_no in (self.probe_ports() if ports is None else ports):
            self.state.lldp_sent[(dpid, port_no)] = now
            out.append((dpid, openflow.packet_out(port_no,
                                                  self.lldp.probe(dpid, port_no, wall))))
        return out
