"""NetworkState: what the controller knows of the network (pure: no os-ken, no sockets).

Built from a :class:`~controller.topology.model.Topology` and its
:class:`~controller.topology.wiring.Wiring`;
owns the ``pathcore.Graph`` of the topology and keeps it in step: a link is usable (up in the
graph, both directions) when

* both of its switches are present - connected, or never seen yet while the startup grace
  period lasts (a restarted controller then computes the same plan as before and adopts the
  switches' flows as they reconnect instead of tearing down routes through switches that have
  not reconnected yet; a network coming up gets every switch's flows once, computed on the
  whole network, instead of every arrival moving the routes of the switches already there).
  The grace lasts until ``startup_grace_s`` has passed with no switch arriving for the first
  time: it is counted from the state's creation and, once a switch has arrived, from the
  latest first arrival, at most :data:`GRACE_MAX_FACTOR` x ``startup_grace_s`` after the
  first. A grace that ran out before any switch arrived (the controller started long before
  its network) opens again at the first arrival;
* neither of its ports is known to be down (port description at connect, port status after);
* LLDP has not seen a different neighbour on either of its ports (miswired).

A link in the file that LLDP has not confirmed is still used (port status says it is alive)
but is listed by :meth:`link_report`; a link seen by LLDP but not in the file is reported and
never used (the controller has no latency for it).

Hosts come from the file and from learning (ARP and IPv4 packet-ins on host ports). A learned
host that conflicts with the file (the file's IP at another MAC or port, a file host's MAC or
port with another IP) is reported as an event and in :attr:`host_conflicts`, never used.
Several hosts may be learned at one port; learning is limited by :attr:`host_guard`
(:class:`~controller.network.limits.HostGuard`: hosts per port, a ban on addresses that move
too often).

Methods take ``now`` (seconds, any monotonic clock) where time matters. Events go to a bounded
deque of dicts ``{"time", "kind", ...details}`` for the REST ``/events``.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.errors import NotFound, lookup
from controller.network.explain import fmt_ms
from controller.network.limits import ControlPlaneLimits, HostGuard
from controller.network.measure import (
    DIRECTIONS,
    DirectionMeasurement,
    effective_delay_ms,
    parse_measurements,
    path_delay_ms,
)
from controller.topology.wiring import Wiring, port_plan

if TYPE_CHECKING:
    import pathcore
    from controller.topology.model import Topology

__all__ = ["HostRecord", "NetworkState", "SwitchRecord"]

log = logging.getLogger("controller.network.state")

GRACE_MAX_FACTOR = 6.0
"""the startup grace ends at the latest this many ``startup_grace_s`` after the first switch
arrived, however long the network keeps arriving"""

DELAY_MARGIN_RATIO = 1.5
DELAY_MARGIN_MS = 0.5
"""a link whose measured delay exceeds configured x 1.5 + 0.5 ms raises ``link_delay_high``"""
DELAY_FLAP_S = 60.0
"""a link whose delay goes high again within this long of going normal raises no new event"""
LOAD_HISTORY = 30
"""measured load samples kept per link (at the default 2 s poll: a minute)"""


@dataclass
class SwitchRecord:
    name: str
    dpid: int
    connected: bool = False
    ever_connected: bool = False
    since: float | None = None
    ports: dict[int, bool] | None = None
    """port_no -> live, as the switch reported it; None until it connects"""


@dataclass(frozen=True, slots=True)
class HostRecord:
    name: str
    ip: str
    mac: str
    node: str
    dpid: int
    port_no: int
    source: str  # "file" | "learned"


@dataclass(frozen=True, slots=True)
class LldpSeen:
    src_dpid: int
    src_port: int
    time: float


class NetworkState:
    """The network as the controller sees it; see the module docstring for the rules."""

    def __init__(self, topology: Topology, wiring: Wiring | None = None, *,
                 now: float = 0.0, startup_grace_s: float = 10.0,
                 lldp_timeout_s: float = 10.0, max_events: int = 1000,
                 limits: ControlPlaneLimits | None = None) -> None:
        self.topology = topology
        self.wiring = wiring if wiring is not None else port_plan(topology)
        self.graph, self.link_ids = topology.to_graph()
        self._link_of_id: dict[int, tuple[int, bool]] = {}
        for i, lid in self.link_ids.items():
            self._link_of_id[lid] = (i, True)
            rev = self.graph.reverse_link(lid)
            if rev is not None:
                self._link_of_id[rev] = (i, False)
        self._down_ids: tuple[int, frozenset[int]] | None = None
        self._out_ports: dict[tuple[str, int], int] = {}
        self.started = now
        self.startup_grace_s = startup_grace_s
        self.lldp_timeout_s = lldp_timeout_s
        self.switches: dict[int, SwitchRecord] = {
            n.dpid: SwitchRecord(n.name, n.dpid) for n in topology.nodes}
        self._grace_over = startup_grace_s <= 0
        self._first_arrival: float | None = None
        """when the first switch connected (None: none yet)"""
        self._last_arrival: float | None = None
        """when a switch last connected for the first time"""
        self.link_up: list[bool] = [True] * len(topology.links)
        self.hosts: dict[str, HostRecord] = {}
        for h in topology.hosts:
            node, port_no = self.wiring.host_port[h.name]
            self.hosts[h.name] = HostRecord(h.name, h.ip, h.mac.lower(), node,
                                            self.wiring.node_dpid[node], port_no, "file")
        self._host_by_ip = {h.ip: h.name for h in self.hosts.values()}
        self._host_by_mac = {h.mac: h.name for h in self.hosts.values()}
        self._host_by_port = {(h.dpid, h.port_no): h.name for h in self.hosts.values()}
        """file hosts by port (learned hosts are in ``_learned_at``)"""
        self._learned_at: dict[tuple[int, int], set[str]] = {}
        """(dpid, port_no) -> names of the hosts learned there"""
        self.host_conflicts: dict[str, dict[str, Any]] = {}
        self._conflicts_at: dict[tuple[int, int], int] = {}
        """(dpid, port_no) -> conflicts recorded there (bounded like learned hosts)"""
        self.host_guard = HostGuard(limits)
        self.lldp_seen: dict[tuple[int, int], LldpSeen] = {}
        """(receiving dpid, port_no) -> the latest probe that arrived there"""
        self.events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self.version = 0
        """bumped on every change that can move a route (links, switches, hosts)"""
        self.graph_version = 0
        """bumped when the path graph or switch presence changes (destination trees)"""
        self.hosts_version = 0
        """bumped when a host is learned, moves or is forgotten"""
        self.ports_version = 0
        """bumped when a switch connects or is lost or a port goes up or down"""
        self.lldp_sent: dict[tuple[int, int], float] = {}
        """(dpid, port_no) -> when the latest LLDP probe left by it (controller clock)"""
        self.echo_rtt_s: dict[int, float] = {}
        """dpid -> latest control-channel round trip (echo request/reply)"""
        self._lldp_transit: dict[tuple[int, int], float] = {}
        """(link index, sending dpid) -> controller -> switch -> link -> switch -> controller"""
        self.link_delay_ms: dict[int, float] = {}
        """link index -> measured one-way delay (see :meth:`lldp_observed`)"""
        self.link_measurements: dict[int, dict[str, DirectionMeasurement]] = {}
        """link index -> direction -> the latest external measurement
        (:mod:`controller.network.measure`)"""
        self.delay_source = "external"
        """``network.delay_source``: which measured delay counts (lldp, external, max)"""
        self.measurement_max_age_s = 30.0
        """``network.measurement_max_age_s``: older external measurements are not used"""
        self.bandwidth_admission = "reserved"
        """``network.bandwidth_admission``: what a reservation is admitted against: the
        capacity minus the reservations (``reserved``), or minus the best-effort traffic the
        port statistics measured too (``measured``; :meth:`reset_residuals`)"""
        self.best_effort_mbps: dict[int, float] = {}
        """directed link id -> measured traffic beyond the link's reservations, taken off its
        residual at the last :meth:`reset_residuals` (``measured`` admission only)"""
        self._measured_graph: pathcore.Graph | None = None
        self.measurements_version = 0
        """bumped by every external measurement"""
        self._delay_high: set[int] = set()
        self._delay_normal_at: dict[int, float] = {}
        """link index -> when its measured delay last went back to normal"""
        self._delay_flapping: set[int] = set()
        """links high again within :data:`DELAY_FLAP_S` of going normal (no events)"""
        self._port_prev: dict[tuple[int, int], tuple[float, int, int]] = {}
        """(dpid, port_no) -> (switch-side seconds, tx_bytes, drops) of the last poll"""
        self._link_now: dict[int, dict[str, Any]] = {}
        self.link_load_history: dict[int, deque[dict[str, Any]]] = {}
        """link index -> the latest LOAD_HISTORY samples (see :meth:`port_counters`)"""
        self._refresh(now, cause="start")

    # -- lookups ------------------------------------------------------------------------------
    def dpids(self) -> list[int]:
        return sorted(self.switches)

    def switch(self, dpid: int) -> SwitchRecord:
        return lookup(self.switches, dpid, "no switch with dpid {:#x} in the topology")

    def node_present(self, node: str) -> bool:
        """Connected, or not seen yet during the startup grace period."""
        sw = self.switches[self.wiring.node_dpid[node]]
        return sw.connected or (not sw.ever_connected and not self._grace_over)

    def host_usable(self, name: str) -> bool:
        """A host the controller routes to (a conflicting claim never becomes a host)."""
        return name in self.hosts

    def link_index(self, link_id: int) -> int:
        """Topology link index of a pathcore link id (either direction)."""
        return self._link_of_id[link_id][0]

    def down_link_ids(self) -> frozenset[int]:
        """Pathcore link ids (both directions) of the links that are not usable now."""
        cached = self._down_ids
        if cached is None or cached[0] != self.graph_version:
            ids = frozenset(lid for lid, (i, _) in self._link_of_id.items()
                            if not self.link_up[i])
            cached = self._down_ids = (self.graph_version, ids)
        return cached[1]

    def out_port(self, node: str, link_id: int) -> int:
        """The port of ``node`` that pathcore link ``link_id`` (leaving ``node``) uses
        (memoised: the wiring never changes, and every plan asks thousands of times)."""
        key = (node, link_id)
        port = self._out_ports.get(key)
        if port is None:
            port = self._out_ports[key] = self.wiring.link_port(self._link_of_id[link_id][0],
                                                                node)
        return port

    def record(self, kind: str, now: float, **details: Any) -> dict[str, Any]:
        event = {"time": now, "kind": kind, **details}
        self.events.append(event)
        return event

    # -- switches and ports -------------------------------------------------------------------
    def switch_connected(self, dpid: int, ports: Mapping[int, bool], now: float) -> list[int]:
        """A switch (re)connected with its ports (port_no -> live). Returns the indices of the
        links whose usability changed."""
        sw = self.switch(dpid)
        if not sw.ever_connected:
            if self._first_arrival is None:
                self._first_arrival = now
                if self._grace_over and self.startup_grace_s > 0:
                    # the grace ran out before the network came: it covers its coming now
                    self._grace_over = False
                    self.record("startup_grace_reopened", now, switch=sw.name)
            self._last_arrival = now
        sw.connected, sw.ever_connected, sw.since = True, True, now
        sw.ports = {int(p): bool(up) for p, up in ports.items()}
        self.ports_version += 1
        for port_no, up in sw.ports.items():
            if not up:
                self.lldp_seen.pop((dpid, port_no), None)
        expected = set(self.wiring.ports_of(dpid))
        missing = sorted(expected - set(sw.ports))
        self.record("switch_connected", now, dpid=dpid, switch=sw.name,
                    ports=sorted(sw.ports), missing_ports=missing)
        return self._refresh(now, cause=f"switch {sw.name} connected", presence=True)

    def switch_lost(self, dpid: int, now: float) -> list[int]:
        sw = self.switch(dpid)
        sw.connected, sw.since, sw.ports = False, now, None
        self.ports_version += 1
        for key in [k for k in self.lldp_seen if k[0] == dpid or self.lldp_seen[k].src_dpid
                    == dpid]:
            del self.lldp_seen[key]
        self.record("switch_lost", now, dpid=dpid, switch=sw.name)
        return self._refresh(now, cause=f"switch {sw.name} lost", presence=True)

    def port_status(self, dpid: int, port_no: int, up: bool, now: float) -> list[int]:
        sw = self.switch(dpid)
        if not sw.connected or sw.ports is None:
            self.record("port_status_ignored", now, dpid=dpid, port_no=port_no, up=up,
                        why="switch not connected")
            return []
        sw.ports[port_no] = up
        self.ports_version += 1
        if not up:
            self.lldp_seen.pop((dpid, port_no), None)
        self.record("port_up" if up else "port_down", now, dpid=dpid, switch=sw.name,
                    port_no=port_no)
        return self._refresh(now, cause=f"port {sw.name}:{port_no} {'up' if up else 'down'}")

    def tick(self, now: float) -> list[int]:
        """Time passes: the startup grace period may end (unseen switches count as down)."""
        if not self._grace_over and self._grace_ended(now):
            self._grace_over = True
            unseen = [sw.name for sw in self.switches.values() if not sw.ever_connected]
            self.record("startup_grace_over", now, unseen_switches=unseen)
            return self._refresh(now, cause="startup grace over", presence=True)
        return []

    def _grace_ended(self, now: float) -> bool:
        """No switch arrived for the first time within ``startup_grace_s``, or the network
        has been arriving for :data:`GRACE_MAX_FACTOR` graces (see the module docstring)."""
        if self._first_arrival is None or self._last_arrival is None:
            return now - self.started >= self.startup_grace_s
        return (now - self._last_arrival >= self.startup_grace_s
                or now - self._first_arrival >= GRACE_MAX_FACTOR * self.startup_grace_s)

    def _port_ok(self, dpid: int, port_no: int) -> bool:
        sw = self.switches[dpid]
        if sw.ports is None:
            return True  # not connected: presence decides
        return sw.ports.get(port_no, False)

    def _miswired(self, i: int) -> bool:
        """LLDP saw another neighbour than the file says on one of link i's ports."""
        a, b = self.wiring.link_ends[i]
        pa, pb = self.wiring.link_ports[i]
        da, db = self.wiring.node_dpid[a], self.wiring.node_dpid[b]
        for here, there in (((da, pa), (db, pb)), ((db, pb), (da, pa))):
            seen = self.lldp_seen.get(here)
            if seen is not None and (seen.src_dpid, seen.src_port) != there:
                return True
        return False

    def link_usable(self, i: int) -> bool:
        a, b = self.wiring.link_ends[i]
        pa, pb = self.wiring.link_ports[i]
        da, db = self.wiring.node_dpid[a], self.wiring.node_dpid[b]
        return (self.node_present(a) and self.node_present(b) and self._port_ok(da, pa)
                and self._port_ok(db, pb) and not self._miswired(i))

    def _refresh(self, now: float, cause: str, presence: bool = False,
                 only: Iterable[int] | None = None) -> list[int]:
        """Bring every link's usability (or only the links ``only``) up to date; the links
        whose usability changed."""
        changed = []
        for i in range(len(self.topology.links)) if only is None else only:
            up = self.link_usable(i)
            if up != self.link_up[i] or cause == "start":
                if up != self.link_up[i]:
                    changed.append(i)
                self.link_up[i] = up
                self.graph.set_link_up(self.link_ids[i], up, both_directions=True)
        if changed:
            self.version += 1
            self.graph_version += 1
            lk = self.topology.links
            for i in changed:
                self.record("link_up" if self.link_up[i] else "link_down", now, link=i,
                            a=lk[i].a, b=lk[i].b, cause=cause)
        if presence:
            self.version += 1  # presence changes which switches get destination flows
            self.graph_version += 1
        return changed

    # -- LLDP ------------------------------------------------------------------------------------
    def lldp_observed(self, src_dpid: int, src_port: int, dpid: int, port_no: int,
                      now: float) -> list[int]:
        """Our probe sent from (src_dpid, src_port) arrived at (dpid, port_no)."""
        key = (dpid, port_no)
        prev = self.lldp_seen.get(key)
        self.lldp_seen[key] = LldpSeen(src_dpid, src_port, now)
        expected = self.wiring.peer(dpid, port_no)
        link = self.wiring.link_peer(dpid, port_no)
        ok = link is not None and (link[1], link[2]) == (src_dpid, src_port)
        sent = self.lldp_sent.get((src_dpid, src_port))
        if ok and link is not None and sent is not None and now >= sent:
            self._measure_delay(int(link[0]), src_dpid, dpid, now - sent, now)
        if not ok and (prev is None or (prev.src_dpid, prev.src_port) != (src_dpid, src_port)):
            self.record("lldp_unexpected", now, dpid=dpid, port_no=port_no,
                        src_dpid=src_dpid, src_port=src_port, expected=expected)
            log.warning(f"LLDP: {src_dpid:#x}:{src_port} -> {dpid:#x}:{port_no} is not in the "
                        f"topology file (expected {expected})",
                        extra={"dpid": dpid, "event": "lldp_unexpected"})
        # what LLDP saw at a port bears only on the file's link at that port (miswired or
        # not): one link looked at, not all of them for every probe
        return self._refresh(now, cause=f"lldp at {dpid:#x}:{port_no}",
                             only=() if link is None else (int(link[0]),))

    def echo_rtt(self, dpid: int, rtt_s: float) -> None:
        """A control-channel round trip to ``dpid`` (echo request -> reply)."""
        if dpid in self.switches and rtt_s >= 0:
            self.echo_rtt_s[dpid] = rtt_s

    def _measure_delay(self, index: int, src_dpid: int, dpid: int, transit_s: float,
                       now: float) -> None:
        """Link delay from LLDP: ``T_ab`` (probe out of a, in at b, up to the controller) and
        ``T_ba`` the other way each hold the link once and both control channels half a
        round trip each, so delay = (T_ab + T_ba - rtt_a - rtt_b) / 2 (at least 0)."""
        self._lldp_transit[(index, src_dpid)] = transit_s
        back = self._lldp_transit.get((index, dpid))
        rtt_a, rtt_b = self.echo_rtt_s.get(src_dpid), self.echo_rtt_s.get(dpid)
        if back is None or rtt_a is None or rtt_b is None:
            return
        delay_ms = max(0.0, (transit_s + back - rtt_a - rtt_b) / 2) * 1000.0
        self.link_delay_ms[index] = delay_ms
        lk = self.topology.links[index]
        high = delay_ms > lk.latency_ms * DELAY_MARGIN_RATIO + DELAY_MARGIN_MS
        if high and index not in self._delay_high:
            self._delay_high.add(index)
            if now - self._delay_normal_at.get(index, -math.inf) < DELAY_FLAP_S:
                # high again soon after it was normal: one pair of events per flap window,
                # not one per probe (a loaded control channel makes a link's measurement
                # swing across the threshold: 41,000 warnings in one Kdl bring-up)
                self._delay_flapping.add(index)
                return
            self.record("link_delay_high", now, link=index, a=lk.a, b=lk.b,
                        measured_ms=round(delay_ms, 3), configured_ms=lk.latency_ms)
            log.warning(f"link {lk.a}-{lk.b}: measured delay {fmt_ms(delay_ms)} exceeds the "
                        f"configured {lk.latency_ms:g} ms",
                        extra={"event": "link_delay_high"})
        elif not high and index in self._delay_high:
            self._delay_high.discard(index)
            self._delay_normal_at[index] = now
            if index in self._delay_flapping:
                self._delay_flapping.discard(index)
                return
            self.record("link_delay_normal", now, link=index, a=lk.a, b=lk.b,
                        measured_ms=round(delay_ms, 3), configured_ms=lk.latency_ms)

    # -- measured delay (controller.network.measure) -------------------------------------------
    def set_link_measurement(self, index: int, body: Any, now: float) -> dict[str, Any]:
        """Keep an external measurement of link ``index`` (:func:`parse_measurements`;
        :class:`NotFound` for an index the topology lacks, BadRequest for nonsense: nothing
        kept). The link's measurement view."""
        if isinstance(index, bool) or not 0 <= index < len(self.topology.links):
            raise NotFound(f"no link {index} (the topology has {len(self.topology.links)})")
        parsed = parse_measurements(body, now)
        self.link_measurements.setdefault(index, {}).update(parsed)
        self.measurements_version += 1
        return self.link_measurement_view(index, now)

    def directed_delay_ms(self, link_id: int, now: float) -> tuple[float | None, str | None]:
        """The measured delay that counts for the directed pathcore link ``link_id`` and its
        origin (``external``/``lldp``; None: not measured)."""
        index, forward = self._link_of_id[link_id]
        ext = self.link_measurements.get(index, {}).get(DIRECTIONS[0 if forward else 1])
        return effective_delay_ms(self.delay_source, self.link_delay_ms.get(index), ext, now,
                                  self.measurement_max_age_s)

    def path_measured_ms(self, link_ids: Iterable[int], now: float) -> tuple[float, int]:
        """A path's measured latency and how many of its links had no measurement (their
        configured latency counted)."""
        g = self.graph
        return path_delay_ms(link_ids, lambda lid: (self.directed_delay_ms(lid, now)[0],
                                                    g.link(lid).latency_ms))

    def link_measurement_view(self, index: int, now: float) -> dict[str, Any]:
        """Per direction of link ``index``: the external measurement (or None), the delay
        that counts and its origin; and the delay source setting."""
        out: dict[str, Any] = {"delay_source": self.delay_source,
                               "lldp_delay_ms": self.link_delay_ms.get(index)}
        ext = self.link_measurements.get(index, {})
        for direction, forward in zip(DIRECTIONS, (True, False), strict=True):
            lid = self.link_ids[index] if forward else self.graph.reverse_link(
                self.link_ids[index])
            m = ext.get(direction)
            ms, origin = (None, None) if lid is None else self.directed_delay_ms(lid, now)
            out[direction] = {"external": None if m is None else m.as_dict(now),
                              "delay_ms": ms, "origin": origin}
        return out

    def measured_graph(self, now: float) -> pathcore.Graph:
        """A copy of the path graph whose link latencies are the measured delays (the
        configured latency where nothing is measured), with the live graph's link states
        and residual bandwidths: what an intent is routed on once its measured latency
        broke its bound (``sla_reroute``)."""
        if self._measured_graph is None:
            self._measured_graph = self.topology.to_graph()[0]
        mg = self._measured_graph
        for lk in self.graph.links():
            ms = self.directed_delay_ms(lk.id, now)[0]
            mg.set_link_up(lk.id, lk.up)
            mg.set_link_latency(lk.id, lk.latency_ms if ms is None else ms)
            mg.set_residual_bandwidth(lk.id, lk.residual_mbps)
        return mg

    def link_report(self, now: float) -> dict[str, list[dict[str, Any]]]:
        """LLDP against the file: ``verified`` (seen both ways within ``lldp_timeout_s``),
        ``missing`` (in the file, not seen lately) and ``unexpected`` (seen, not in the file)."""
        verified, missing = [], []
        for i, lk in enumerate(self.topology.links):
            a, b = self.wiring.link_ends[i]
            pa, pb = self.wiring.link_ports[i]
            da, db = self.wiring.node_dpid[a], self.wiring.node_dpid[b]
            ages = []
            for here, there in (((db, pb), (da, pa)), ((da, pa), (db, pb))):
                seen = self.lldp_seen.get(here)
                ok = seen is not None and (seen.src_dpid, seen.src_port) == there
                ages.append(now - seen.time if ok and seen is not None else None)
            item = {"link": i, "a": lk.a, "b": lk.b, "a_port": pa, "b_port": pb,
                    "usable": self.link_up[i]}
            if all(age is not None and age <= self.lldp_timeout_s for age in ages):
                verified.append(item)
            else:
                item["seen_age_s"] = ages
                missing.append(item)
        unexpected = []
        for (dpid, port_no), seen in sorted(self.lldp_seen.items()):
            expected = self.wiring.peer(dpid, port_no)
            link = self.wiring.link_peer(dpid, port_no)
            if link is not None and (link[1], link[2]) == (seen.src_dpid, seen.src_port):
                continue
            unexpected.append({"src_dpid": seen.src_dpid, "src_port": seen.src_port,
                               "dst_dpid": dpid, "dst_port": port_no, "time": seen.time,
                               "expected": expected})
        return {"verified": verified, "missing": missing, "unexpected": unexpected}

    # -- hosts ----------------------------------------------------------------------------------
    def learn_host(self, mac: str, ip: str, dpid: int, port_no: int, now: float) -> str:
        """A host spoke at (dpid, port_no). Returns what that meant: ``"ignored"`` (a link
        port, an unknown switch or no address), ``"known"``, ``"new"``, ``"moved"`` (learned
        hosts only), ``"conflict"`` (disagrees with the file: reported, not used) or
        ``"refused"`` (a limit of :attr:`host_guard`: the port is full, or the address is
        banned from learning; counted, not used)."""
        mac = mac.lower()
        if ip in ("0.0.0.0", "") or dpid not in self.switches \
                or self.wiring.is_link_port(dpid, port_no):
            return "ignored"
        node = self.switches[dpid].name
        port = (dpid, port_no)
        by_ip = self._host_by_ip.get(ip)
        by_port = self._host_by_port.get(port)
        by_mac = self._host_by_mac.get(mac)
        file_host = next((n for n in (by_ip, by_port, by_mac)
                          if n is not None and self.hosts[n].source == "file"), None)
        guard = self.host_guard
        if file_host is not None:
            h = self.hosts[file_host]
            if (h.ip, h.mac, h.dpid, h.port_no) == (ip, mac, dpid, port_no):
                return "known"
            key = f"{ip}@{dpid:#x}:{port_no}"
            if key not in self.host_conflicts:
                if guard.port_full(self._conflicts_at.get(port, 0)):
                    return self._refuse("port_full", ip, mac, dpid, port_no, now)
                self._conflicts_at[port] = self._conflicts_at.get(port, 0) + 1
                detail = {"file_host": h.name, "file_ip": h.ip, "file_mac": h.mac,
                          "file_dpid": h.dpid, "file_port": h.port_no, "ip": ip, "mac": mac,
                          "dpid": dpid, "port_no": port_no}
                self.host_conflicts[key] = detail
                self.record("host_conflict", now, **detail)
                log.warning(f"host {ip} ({mac}) at {node}:{port_no} conflicts with file host "
                            f"{h.name} ({h.ip}, {h.mac} at port {h.port_no}); not used",
                            extra={"dpid": dpid, "event": "host_conflict"})
            return "conflict"
        name = f"learned-{ip}"
        old = self.hosts.get(name)
        if old is not None and (old.mac, old.dpid, old.port_no) == (mac, dpid, port_no):
            return "known"
        if guard.banned(ip, now):
            return self._refuse("banned", ip, mac, dpid, port_no, now)
        # the record this one replaces (this address elsewhere, or this MAC with another
        # address) makes room at the port
        here = self._learned_at.get(port, set())
        if guard.port_full(len(here - {by_mac, name})):
            return self._refuse("port_full", ip, mac, dpid, port_no, now)
        if old is not None and guard.moved(ip, now):
            self.record("host_banned", now, ip=ip, mac=mac, dpid=dpid, port_no=port_no,
                        until=now + guard.limits.learn_ban_s)
            log.warning(f"host {ip} moved more than {guard.limits.host_move_limit} times in "
                        f"{guard.limits.host_move_window_s:g} s; not learned for "
                        f"{guard.limits.learn_ban_s:g} s",
                        extra={"dpid": dpid, "event": "host_banned"})
            return self._refuse("banned", ip, mac, dpid, port_no, now)
        # a learned host with this IP's MAC (the host changed its address) is replaced
        if by_mac is not None and by_mac != name:
            self._forget(by_mac)
        rec = HostRecord(name, ip, mac, node, dpid, port_no, "learned")
        if old is not None:
            self._forget(name, keep_moves=True)
        self.hosts[name] = rec
        self._host_by_ip[ip] = name
        self._host_by_mac[mac] = name
        self._learned_at.setdefault(port, set()).add(name)
        self.version += 1
        self.hosts_version += 1
        what = "moved" if old is not None else "new"
        self.record(f"host_{what}", now, host=name, ip=ip, mac=mac, dpid=dpid, port_no=port_no)
        return what

    def _refuse(self, reason: str, ip: str, mac: str, dpid: int, port_no: int,
                now: float) -> str:
        detail = self.host_guard.refuse(reason, dpid, port_no, now)
        if detail is not None:
            self.record("host_refused", now, ip=ip, mac=mac, **detail)
            log.warning(f"host {ip} ({mac}) at {self.switches[dpid].name}:{port_no} not "
                        f"learned: {reason} ({detail['refused']} refused at the port since "
                        "the last report)", extra={"dpid": dpid, "event": "host_refused"})
        return "refused"

    def _forget(self, name: str | None, *, keep_moves: bool = False) -> None:
        if name is None or name not in self.hosts:
            return
        h = self.hosts.pop(name)
        if self._host_by_ip.get(h.ip) == name:
            del self._host_by_ip[h.ip]
        if self._host_by_mac.get(h.mac) == name:
            del self._host_by_mac[h.mac]
        here = self._learned_at.get((h.dpid, h.port_no))
        if here is not None:
            here.discard(name)
            if not here:
                del self._learned_at[(h.dpid, h.port_no)]
        if not keep_moves:
            self.host_guard.forget(h.ip)

    def host_by_ip(self, ip: str) -> HostRecord | None:
        name = self._host_by_ip.get(ip)
        return self.hosts[name] if name is not None and self.host_usable(name) else None

    # -- measured load (port statistics) ----------------------------------------------------------
    def port_counters(self, dpid: int, rows: Iterable[Mapping[str, Any]], now: float) -> int:
        """Take one poll of ``dpid``'s port statistics (``ControllerService.read_ports`` rows:
        ``port_no``, ``tx_bytes``, ``tx_dropped``, ``rx_dropped``, ``duration_s``). For each
        link port the rate is the tx-bytes delta over the switch's own clock (the port's
        ``duration_s``) since the previous poll: the load of the link in the direction leaving
        ``dpid``. A counter that went backwards (port or switch restarted) starts over.
        Appends a sample per link touched to :attr:`link_load_history`; returns how many."""
        wiring = self.wiring
        n = 0
        for row in rows:
            port_no, tx = row.get("port_no"), row.get("tx_bytes")
            if port_no is None or tx is None:
                continue
            peer = wiring.peer(dpid, int(port_no))
            if peer is None or peer[0] != "link":
                continue
            index = int(peer[1])
            t = float(row["duration_s"]) if row.get("duration_s") is not None else now
            drops = int(row.get("tx_dropped") or 0) + int(row.get("rx_dropped") or 0)
            prev = self._port_prev.get((dpid, int(port_no)))
            self._port_prev[(dpid, int(port_no))] = (t, int(tx), drops)
            if prev is None or t <= prev[0] or tx < prev[1] or drops < prev[2]:
                continue
            mbps = (int(tx) - prev[1]) * 8 / (t - prev[0]) / 1e6
            lk = self.topology.links[index]
            forward = wiring.node_dpid[lk.a] == dpid and wiring.link_port(index, lk.a) \
                == port_no
            cur = self._link_now.setdefault(index, {"a_to_b_mbps": 0.0, "b_to_a_mbps": 0.0,
                                                    "drops": 0})
            cur["a_to_b_mbps" if forward else "b_to_a_mbps"] = mbps
            cur["drops"] = drops - prev[2]
            cap = lk.bandwidth_mbps
            sample = {"time": now, **cur,
                      "utilisation": max(cur["a_to_b_mbps"], cur["b_to_a_mbps"]) / cap
                      if cap > 0 else 0.0}
            self.link_load_history.setdefault(index, deque(maxlen=LOAD_HISTORY)).append(sample)
            n += 1
        return n

    def link_load(self, index: int) -> dict[str, Any] | None:
        """The latest measured load of link ``index`` (None before two polls)."""
        hist = self.link_load_history.get(index)
        return dict(hist[-1]) if hist else None

    # -- bandwidth reservations -----------------------------------------------------------------
    reservations_active = False
    """some residual is below its capacity (reset before routing, or a release is lost)"""

    def reset_residuals(self) -> None:
        """Every directed link's residual back to its capacity, before routing again.

        With ``measured`` admission each direction also loses its best-effort traffic: the
        load of the last port-statistics sample beyond what the reservations held on it
        until now (reserved traffic is counted once, as its reservation, so an intent never
        competes with its own packets). Only routing reads it: a link whose best-effort
        load grows sends reservations elsewhere at the next replan, none is made on load
        changes alone."""
        measured = self.bandwidth_admission == "measured"
        best: dict[int, float] = {}
        g = self.graph
        for i, lk in enumerate(self.topology.links):
            lid, cap = self.link_ids[i], lk.bandwidth_mbps
            load = self.link_load(i) if measured else None
            if load is None:
                g.set_residual_bandwidth(lid, cap, both_directions=True)
                continue
            for d, key in ((lid, "a_to_b_mbps"), (g.reverse_link(lid), "b_to_a_mbps")):
                if d is None:
                    continue
                reserved = cap - g.link(d).residual_mbps - self.best_effort_mbps.get(d, 0.0)
                extra = min(cap, load[key] - max(0.0, reserved))
                if extra > 0:
                    best[d] = extra
                g.set_residual_bandwidth(d, cap - best.get(d, 0.0), both_directions=False)
        self.best_effort_mbps = best
        self.reservations_active = bool(best)

    def reserved_mbps(self, lid: int, capacity_mbps: float) -> float:
        """What reservations hold on directed link ``lid`` now (its residual's shortfall
        from capacity, less the best-effort traffic measured admission took off)."""
        return capacity_mbps - self.graph.link(lid).residual_mbps \
            - self.best_effort_mbps.get(lid, 0.0)

    def reserve(self, link_ids: Iterable[int], bandwidth_mbps: float) -> None:
        """Take ``bandwidth_mbps`` from the residual of each directed link."""
        self.reservations_active = True
        for lid in link_ids:
            residual_mbps = self.graph.link(lid).residual_mbps
            self.graph.set_residual_bandwidth(lid, max(0.0, residual_mbps - bandwidth_mbps))
