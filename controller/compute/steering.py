"""Compute steering inside a running controller: the stateful owner of the compute site
registry, the placement scheduler and the anycast services of one :class:`ControllerService`.

The pure layer (:mod:`.sites`, :mod:`.placement`) is not thread-safe; every call into it
here runs inside ``with service.network() as net:`` (the service's lock, under which the
controller core runs), and reads the controller's live graph (``net.graph``: links down,
residual bandwidth) and switch presence (``node_present``: sites behind an absent switch are
out of reach).

Writes are serialised by a second lock (taken before the service's, never after) and follow
the intents' rule: change the pure state, then write the difference to the store in one
transaction; if the store fails, the pure state is rebuilt from the snapshot taken before the
change and the request fails, so a failed request changes nothing. The store (the
:class:`~controller.store.Store` interface) keeps sites, placements (with their
reservations), services and assignments (with theirs); on start they are loaded back.
Sites of the topology file are registered once, at the first start that sees them; after
that the store is authoritative (a site deleted over the API stays deleted).

Automatic steering (``docs/compute.md``, "The anycast data plane"): the service calls
:meth:`Steering._on_packet` and :meth:`Steering._on_topology` after the core has handled a
packet-in or a topology change, outside its lock and in the app's event thread. They only
queue work; one worker thread assigns a client on its first packet to an anycast address
(:meth:`Steering.assign_on_packet`, re-injecting that packet) and moves clients off sites
that became unreachable (:meth:`Steering.reassign_on_change`), through the same write path
as the REST calls (persisted, NAT flows pushed, barriers awaited). Every
``compute.rebalance_interval_s`` the worker also reads the packet counters of the clients'
ingress NAT flows and runs :meth:`AnycastServices.rebalance` (:meth:`Steering.rebalance_tick`):
failure moves at once, load moves dampened and only for clients whose counters stood still
since the last look (affinity: a busy client's connections are never cut for load). Each
look also samples every assignment's SLA (:meth:`Steering.sla_tick`): the measured latency
of its path plus, under ``cats``, its site's reported compute delay, against the service's
bound; ``sla_violation`` / ``sla_restored`` events as for intents.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import Counter, Gauge

from controller.compute.anycast import AnycastServices, FlowTuple, Move, Service
from controller.compute.dampening import Dampener, Dampening
from controller.compute.metrics import is_fresh
from controller.compute.placement import Placement, Scheduler, latency_circles
from controller.compute.sites import ComputeRegistry, Site
from controller.errors import CpnError, StaleWrite
from controller.network import openflow, packets
from controller.network.counters import PROCESS_REGISTRY
from controller.network.flows import (
    ETH_TYPE_IPV4,
    OWNER_ANYCAST,
    TABLE_INTENTS,
    FlowEntry,
    flow,
    make_cookie,
)
from controller.network.sla import SlaMonitor, SlaSample

if TYPE_CHECKING:
    import pathcore
    from controller.compute.sitemetrics import SiteMetricsPlane
    from controller.network.service import ControllerService
    from controller.network.views import NetworkView
    from controller.settings import ComputeSettings
    from controller.store import Store

__all__ = ["ANYCAST_MAC", "ANYCAST_PRIORITY", "FILE_SITES_SEEDED", "Steering", "anycast_flows",
           "idle_clients"]

log = logging.getLogger("controller.compute.steering")

FILE_SITES_SEEDED = "compute.file_sites_seeded"
"""Store setting: ids of topology-file sites already registered (never re-added)."""

T = TypeVar("T")
_Snapshot = dict[str, dict[Any, str]]

ANYCAST_PRIORITY = 65000
"""Table-1 priority of the NAT flows: above every intent of the usual priorities, so a client's
anycast traffic is steered even where an intent matches the same addresses."""
ANYCAST_MAC = "02:cb:00:00:00:01"
"""The (locally administered) MAC proxy ARP answers for every anycast address; the ingress
switch rewrites the destination MAC to the site host's."""
PUSH_TIMEOUT_S = 5.0
RETRY_HOLDOFF_S = 2.0
"""after a first packet could not be assigned (no capacity), that client's packets to the
service are ignored this long (they all reach the controller while it has no NAT flows)"""
ACTIVITY_READ_TIMEOUT_S = 1.0
"""a client switch that does not answer the flow-stats read of a rebalance look this fast
leaves its clients out of that look (busy): the worker must not stall failure moves"""
WORK_QUEUE_SIZE = 1024
ASSIGNMENT_SLA_VIOLATIONS = Counter(
    "cpn_assignment_sla_violations", "Anycast assignments that went over their service's "
    "bound (measured path latency plus reported compute delay, smoothed) for the configured "
    "number of samples", registry=PROCESS_REGISTRY)
ASSIGNMENT_SLA_VIOLATED = Gauge(
    "cpn_assignments_sla_violated", "Anycast assignments whose measured latency is over "
    "their service's bound now", registry=PROCESS_REGISTRY)
"""first packets and topology changes waiting for the steering worker; more are dropped"""


def anycast_flows(net: NetworkView, steered: list[FlowTuple]
                  ) -> dict[int, dict[int, set[FlowEntry]]]:
    """NAT flows per owner cookie and dpid for the assignments ``steered``, on the live
    network ``net``.

    At the client's switch (the path's first node): ``ipv4_src`` client, ``ipv4_dst``
    anycast -> set ``ipv4_dst``/``eth_dst`` to the site host's, out toward the next hop;
    on the way back ``ipv4_src`` site host, ``ipv4_dst`` client -> set ``ipv4_src`` to the
    anycast address, out of the client's port. On every later switch of the path: client ->
    site host out toward the next hop (the site's port at the last). The return traffic
    follows the destination flows (table 2) to the client's switch. Clients or sites whose
    host is not known (not present) get no flows."""
    out: dict[int, dict[int, set[FlowEntry]]] = {}
    for t in steered:
        client_ip, anycast_ip, path = t.client_ip, t.anycast_ip, t.path
        c = net.host(t.client_host)
        h = net.host(t.site_host)
        if c is None or h is None or not path or c.node != path[0] or h.node != path[-1]:
            continue
        cookie = make_cookie(OWNER_ANYCAST, int(ipaddress.IPv4Address(client_ip)))
        per = out.setdefault(cookie, {})
        node_dpid = net.wiring.node_dpid
        ports = [net.out_port(n, lid) for n, lid in zip(path[:-1], t.link_ids, strict=True)]
        ports.append(h.port_no)
        ip4 = {"eth_type": ETH_TYPE_IPV4}
        for i, (node, port) in enumerate(zip(path, ports, strict=True)):
            d = node_dpid[node]
            if i == 0:
                e = flow(TABLE_INTENTS, ANYCAST_PRIORITY,
                         {**ip4, "ipv4_src": client_ip, "ipv4_dst": anycast_ip},
                         (("set_field", ("ipv4_dst", h.ip)), ("set_field", ("eth_dst", h.mac)),
                          ("output", port)), cookie)
            else:
                e = flow(TABLE_INTENTS, ANYCAST_PRIORITY,
                         {**ip4, "ipv4_src": client_ip, "ipv4_dst": h.ip},
                         (("output", port),), cookie)
            per.setdefault(d, set()).add(e)
        back = flow(TABLE_INTENTS, ANYCAST_PRIORITY,
                    {**ip4, "ipv4_src": h.ip, "ipv4_dst": client_ip},
                    (("set_field", ("ipv4_src", anycast_ip)), ("output", c.port_no)), cookie)
        per.setdefault(node_dpid[path[0]], set()).add(back)
    return out


def idle_clients(seen: Mapping[str, int], before: Mapping[str, int],
                 active_at: Mapping[str, float], now: float, idle_s: float
                 ) -> tuple[set[str], dict[str, float]]:
    """Which clients are idle at a look at ``now``, from their NAT flows' packet counts now
    (``seen``) and at the previous look (``before``), and when each was last seen active
    (``active_at``): idle is unchanged since the previous look and for at least ``idle_s``
    since the count last moved (a client first seen, or seen moving now, is active now).
    Returns the idle clients and the new ``active_at`` (clients no longer seen drop out)."""
    out: dict[str, float] = {}
    idle: set[str] = set()
    for ip, n in seen.items():
        last = active_at.get(ip) if before.get(ip) == n else None
        out[ip] = now if last is None else last
        if last is not None and now - last >= idle_s:
            idle.add(ip)
    return idle, out


class Steering:
    """Compute sites, placements and anycast services of one controller (thread-safe).

    ``store`` None keeps everything in memory (tests, tools).

    In a cluster every member runs one, rebuilt from the shared store whenever a compute
    record changes (:meth:`reload`); ``leader`` says whether this member is the one that
    re-examines assignments after a topology change (None: always, a lone controller), and
    ``sync(revision)`` waits until this member has applied ``revision``, so a write that
    lost a race to another member (:class:`StaleWrite`) is computed again on the newer state.
    """

    STALE_RETRIES = 3
    """a write that keeps losing races to other members fails after this many tries"""

    def __init__(self, service: ControllerService, store: Store | None = None, *,
                 leader: Callable[[], bool] | None = None,
                 sync: Callable[[int], None] | None = None,
                 compute: ComputeSettings | None = None,
                 sla_samples: int = 3, sla_alpha: float = 0.3) -> None:
        self.service = service
        self.sla = SlaMonitor(samples=sla_samples, alpha=sla_alpha,
                              metrics=(ASSIGNMENT_SLA_VIOLATIONS, ASSIGNMENT_SLA_VIOLATED))
        """per ``(service, client host)``: sampled at every rebalance look"""
        self._scheduler_kw: dict[str, Any] = {} if compute is None else {
            "metrics_interval_s": compute.metrics_interval_s,
            "stale_policy": compute.stale_policy}
        self.dampener = Dampener(None if compute is None else Dampening(
            gain_ms=compute.move_gain_ms, gain_pct=compute.move_gain_pct,
            hold_s=compute.move_hold_s, max_moves=compute.max_moves,
            interval_s=compute.move_interval_s))
        """kept across rebuilds: hold timers and move budgets outlive a reload"""
        self.rebalance_interval_s = 2.0 if compute is None else compute.rebalance_interval_s
        self.move_idle_s = 4.0 if compute is None else compute.move_idle_s
        self._next_rebalance = time.monotonic() + self.rebalance_interval_s
        self._activity: dict[str, int] = {}
        """client IPv4 -> packets its ingress NAT flow counted at the last look"""
        self._active_at: dict[str, float] = {}
        """client IPv4 -> when a look last saw its counter move (or first saw it)"""
        self.store = store
        self.leader = leader
        self.sync = sync
        self.topology = service.topology
        self._write = threading.Lock()
        self._anycast_by_ip: dict[str, str] = {}
        """anycast IPv4 -> service name, replaced whole on every push (read lock-free by
        the packet-in listener)"""
        self._work: queue.Queue[tuple[Any, ...] | None] = queue.Queue(WORK_QUEUE_SIZE)
        self._busy = threading.Condition()
        self._pending = 0
        self._inflight: set[tuple[str, str]] = set()
        self._holdoff: dict[tuple[str, str], float] = {}
        self._reassign_queued = False
        self.moves_log: list[dict[str, Any]] = []
        """automatic reassignments (cause, moves, duration_ms), most recent last (<= 100)"""
        self.metrics_plane: SiteMetricsPlane | None = None
        """the sites' live metrics (push, pull, freshness); set by the composition root"""
        initial = self._initial_state()
        with service.network() as net:
            self._build(initial, net.graph)
        self._push()
        self._worker = threading.Thread(target=self._run, name="cpn-steering", daemon=True)
        self._worker.start()
        service.packet_listeners.append(self._on_packet)
        service.topology_listeners.append(self._on_topology)

    def close(self) -> None:
        """Stop listening to the service and end the worker thread (and the metrics
        scraper)."""
        if self.metrics_plane is not None:
            self.metrics_plane.stop()
        if self._on_packet in self.service.packet_listeners:
            self.service.packet_listeners.remove(self._on_packet)
        if self._on_topology in self.service.topology_listeners:
            self.service.topology_listeners.remove(self._on_topology)
        try:
            self._work.put_nowait(None)
        except queue.Full:
            pass
        self._worker.join(timeout=5)

    # -- construction and persistence -----------------------------------------------------------
    def _node_up(self, node: str) -> bool:
        return self.service.node_present(node)

    def _initial_state(self) -> dict[str, Any]:
        """The stored state plus the topology file's sites not registered before."""
        file_sites = ComputeRegistry.from_topology(self.topology).to_dict()["sites"]
        if self.store is None:
            return {"sites": file_sites, "placements": [], "services": [], "assignments": []}
        for attempt in range(1, self.STALE_RETRIES + 1):
            stored = self.store.compute_state()
            seeded = set(self.store.setting(FILE_SITES_SEEDED, []))
            known = {s["id"] for s in stored["sites"]}
            new = [s for s in file_sites if s["id"] not in seeded and s["id"] not in known]
            if not new:
                break
            try:
                self.store.write_compute(sites={s["id"]: s for s in new})
            except StaleWrite:
                # members of a cluster starting together seed the same sites: the one that
                # lost the race reads what the other wrote and seeds what is still missing
                if attempt == self.STALE_RETRIES:
                    raise
                continue
            stored["sites"].extend(new)
            log.info(f"registered {len(new)} compute site(s) of the topology file",
                     extra={"event": "sites_seeded"})
            break
        if seeded != seeded | {s["id"] for s in file_sites}:
            self.store.set_setting(FILE_SITES_SEEDED,
                                   sorted(seeded | {s["id"] for s in file_sites}))
        return stored

    def _build(self, state: Mapping[str, Any], graph: pathcore.Graph) -> None:
        """(Re)build the pure objects from stored-form state on the live ``graph`` (call it
        inside ``service.network()``). Records that no longer fit the topology (a node or
        host gone) are logged and left out rather than stopping the controller."""
        probe = ComputeRegistry(self.topology)
        sites = []
        for s in state.get("sites", []):
            try:
                probe.add_site(s)
            except CpnError as exc:
                log.error(f"stored compute site {s.get('id')!r} not loaded: {exc}",
                          extra={"event": "site_reload_failed"})
                continue
            sites.append(s)
        ok = {s["id"] for s in sites}
        placements = [d for d in state.get("placements", [])
                      if d["reservation"]["site_id"] in ok]
        services = state.get("services", [])
        names = {s["name"] for s in services}
        assignments = [d for d in state.get("assignments", [])
                       if d["reservation"]["site_id"] in ok and d["assignment"]["service"]
                       in names]
        dropped = (len(state.get("placements", [])) - len(placements)
                   + len(state.get("assignments", [])) - len(assignments))
        if dropped:
            log.error(f"{dropped} stored placement(s)/assignment(s) name sites or services "
                      "that are gone; not loaded", extra={"event": "compute_reload_dropped"})
        self.scheduler = Scheduler.from_dict(
            {"registry": {"sites": sites,
                          "reservations": [d["reservation"] for d in (*placements,
                                                                      *assignments)]},
             "placements": [d["placement"] for d in placements]},
            self.topology, graph, node_up=self._node_up, **self._scheduler_kw)
        before: ComputeRegistry | None = getattr(self, "registry", None)
        self.registry: ComputeRegistry = self.scheduler.registry
        if before is not None:
            self.registry.adopt_metrics(before)  # live metrics are not stored: keep them
        self.anycast = AnycastServices(self.scheduler, self.dampener)
        self.anycast.restore({"services": services,
                              "assignments": [d["assignment"] for d in assignments]})

    def _snapshot(self) -> _Snapshot:
        """The state in stored form, one JSON text per record (for diffs and undo)."""
        reg = self.registry
        res = {r.id: r.to_dict() for r in reg.reservations()}

        def text(v: Any) -> str:
            return json.dumps(v, sort_keys=True)

        assignments: dict[Any, str] = {}
        for svc in self.anycast.services():
            for a in self.anycast.assignments(svc.name):
                assignments[(a.service, a.client_host)] = text(
                    {"assignment": a.to_dict(), "reservation": res[a.reservation_id]})
        return {
            "sites": {s["id"]: text(s) for s in reg.to_dict()["sites"]},
            "placements": {p.id: text({"placement": p.to_dict(), "reservation": res[p.id]})
                           for p in self.scheduler.placements()},
            "services": {s.name: text(s.to_dict()) for s in self.anycast.services()},
            "assignments": assignments,
        }

    @staticmethod
    def _as_state(snap: _Snapshot) -> dict[str, list[Any]]:
        return {table: [json.loads(v) for v in rows.values()] for table, rows in snap.items()}

    @contextmanager
    def _locked(self) -> Iterator[NetworkView]:
        """The service's lock, with the scheduler reading the controller's current graph."""
        with self.service.network() as net:
            self.scheduler.graph = net.graph
            yield net

    def reload(self) -> None:
        """Rebuild the compute state from the store and push its NAT flows (a cluster
        member, after another member changed compute records)."""
        if self.store is None:
            return
        with self._write:
            state = self.store.compute_state()
            with self._locked() as net:
                if self._as_state(self._snapshot()) == state:
                    return
                self._build(state, net.graph)
            self._push()

    def _change(self, fn: Callable[[], T]) -> T:
        """:meth:`_change_once`, again on the newer state when the write lost a race to
        another member of the cluster (at most :attr:`STALE_RETRIES` tries)."""
        for attempt in range(1, self.STALE_RETRIES + 1):
            try:
                return self._change_once(fn)
            except StaleWrite as exc:
                if self.sync is None or exc.revision is None or attempt == self.STALE_RETRIES:
                    raise
                log.info(f"compute write lost a race ({exc}); computing it again",
                         extra={"event": "stale_write"})
                self.sync(exc.revision)
        raise AssertionError("unreachable")

    def _change_once(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the pure state, then store the difference (one transaction); undo
        the pure change when ``fn`` or the store fails."""
        with self._write:
            with self._locked():
                before = self._snapshot()
                try:
                    result = fn()
                except BaseException:
                    # the pure layer changes nothing when it raises; rebuild anyway if a
                    # multi-step change (reassignments) failed half-way
                    if self._snapshot() != before:
                        self._build(self._as_state(before), self.scheduler.graph)
                    raise
                after = self._snapshot()
            diff = {table: {k: (None if k not in after[table] else json.loads(after[table][k]))
                            for k in set(before[table]) | set(after[table])
                            if before[table].get(k) != after[table].get(k)}
                    for table in before}
            if self.store is not None and any(diff.values()):
                try:
                    self.store.write_compute(**diff)
                except BaseException:
                    with self._locked() as net:
                        self._build(self._as_state(before), net.graph)
                    raise
            if diff["assignments"] or diff["services"]:
                self._push()
            return result

    # -- the data plane -------------------------------------------------------------------------
    def _push(self, timeout_s: float = PUSH_TIMEOUT_S) -> None:
        """Hand the NAT flows of every assignment to the core (one Change) and wait, bounded,
        for the switches' barriers."""

        def plan(net: NetworkView) -> tuple[dict[int, dict[int, set[FlowEntry]]],
                                            dict[str, str]]:
            # under the service's lock: the pure state and the network are read together
            self.scheduler.graph = net.graph
            services = self.anycast.services()
            self._anycast_by_ip = {s.anycast_ip: s.name for s in services}
            return (anycast_flows(net, self.anycast.flow_tuples()),
                    {s.anycast_ip: ANYCAST_MAC for s in services})

        self.service.set_anycast(plan, timeout_s=timeout_s)

    # -- compute sites --------------------------------------------------------------------------
    def sites(self, kind: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        with self._locked():
            return [s.to_dict() for s in self.registry.sites(kind=kind, state=state)]

    def site(self, site_id: str) -> dict[str, Any]:
        """One site with its reservations."""
        with self._locked():
            site = self.registry.site(site_id)
            return {**site.to_dict(),
                    "reservation_list": [r.to_dict() for r in self.registry.reservations(
                        site_id)]}

    def add_site(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return self._change(lambda: self.registry.add_site(data).to_dict())

    def update_site(self, site_id: str, changes: Mapping[str, Any]
                    ) -> tuple[dict[str, Any], list[Move]]:
        """Update a site; when it is marked down, its anycast clients move (the moves)."""
        def run() -> tuple[dict[str, Any], list[Move]]:
            site: Site = self.registry.update_site(site_id, changes)
            moves = self.anycast.reassign_after(site_id) if site.state == "down" else []
            return site.to_dict(), moves

        return self._change(run)

    def remove_site(self, site_id: str) -> dict[str, Any]:
        return self._change(lambda: self.registry.remove_site(site_id).to_dict())

    # -- placements -----------------------------------------------------------------------------
    def place(self, source: str, demand: float, kind: str, **kw: Any) -> Placement:
        return self._change(lambda: self.scheduler.place(source, demand, kind, **kw))

    def release(self, placement_id: str) -> Placement:
        return self._change(lambda: self.scheduler.release(placement_id))

    def placements(self) -> list[Placement]:
        with self._locked():
            return list(self.scheduler.placements())

    def placement(self, placement_id: str) -> Placement:
        with self._locked():
            return self.scheduler.placement(placement_id)

    # -- anycast services -----------------------------------------------------------------------
    def add_service(self, service: Service) -> Service:
        return self._change(lambda: self.anycast.add_service(service))

    def remove_service(self, name: str) -> list[dict[str, Any]]:
        """Remove a service, releasing its clients' capacity; returns their assignments."""
        return self._change(lambda: [a.to_dict() for a in self.anycast.remove_service(name)])

    def services(self) -> list[tuple[Service, int]]:
        """Services with their number of clients."""
        with self._locked():
            return [(s, len(self.anycast.assignments(s.name))) for s in self.anycast.services()]

    def get_service(self, name: str) -> tuple[Service, int]:
        with self._locked():
            return self.anycast.service(name), len(self.anycast.assignments(name))

    def assignments(self, name: str) -> list[dict[str, Any]]:
        """The service's assignments, each with ``sla`` (None before its first sample)."""
        with self._locked():
            out = [a.to_dict() for a in self.anycast.assignments(name)]
        for a in out:
            rec = self.sla.records.get((name, a["client_host"]))
            a["sla"] = None if rec is None else rec.as_dict()
        return out

    def assign(self, name: str, client: str) -> dict[str, Any]:
        """The client's site (sticky; a new choice, reserved, when it has none or its site
        is no longer usable)."""
        return self._change(lambda: self.anycast.assign(name, client).to_dict())

    def unassign(self, name: str, client: str) -> dict[str, Any]:
        return self._change(lambda: self.anycast.unassign(name, client).to_dict())

    def reassign(self, site_id: str | None = None) -> list[Move]:
        """Move clients off down or unreachable sites (after a site or network change)."""
        return self._change(lambda: self.anycast.reassign_after(site_id))

    # -- automatic steering: first packets and topology changes -------------------------------
    def _enqueue(self, job: tuple[Any, ...]) -> bool:
        with self._busy:
            self._pending += 1
        try:
            self._work.put_nowait(job)
        except queue.Full:
            with self._busy:
                self._pending -= 1
                self._busy.notify_all()
            log.warning(f"steering work queue full; dropped {job[0]}",
                        extra={"event": "steering_queue_full"})
            return False
        return True

    def _on_packet(self, dpid: int, in_port: int, data: bytes) -> None:
        """Packet-in listener (the app's event thread, no lock held; must not block): an
        IPv4 packet to a service's anycast address reached the controller, so its sender has
        no NAT flows yet. Queue its assignment for the worker."""
        dst_ip = packets.ipv4_dst_of(data)
        name = self._anycast_by_ip.get(dst_ip) if dst_ip is not None else None
        if name is None:
            return
        src_ip = packets.ipv4_src_of(data)
        if src_ip is None:
            return
        key = (name, src_ip)
        with self._busy:
            if key in self._inflight or self._holdoff.get(key, 0.0) > time.monotonic():
                return
            self._inflight.add(key)
        if not self._enqueue(("packet", name, src_ip, dpid, in_port, bytes(data))):
            with self._busy:
                self._inflight.discard(key)

    def _on_topology(self, cause: str, t_event: float) -> None:
        """Topology listener (event thread, no lock held): queue one re-examination of every
        assignment (coalesced while one is queued); in a cluster only on the leader."""
        if self.leader is not None and not self.leader():
            return
        with self._busy:
            if self._reassign_queued:
                return
            self._reassign_queued = True
        if not self._enqueue(("topology", cause, t_event)):
            with self._busy:
                self._reassign_queued = False

    def _run(self) -> None:
        while True:
            try:
                job = self._work.get(
                    timeout=max(0.0, self._next_rebalance - time.monotonic()))
            except queue.Empty:
                self._next_rebalance = time.monotonic() + self.rebalance_interval_s
                try:
                    if self.leader is None or self.leader():
                        self.rebalance_tick()
                    self.sla_tick()
                except Exception:  # noqa: BLE001 - the worker must survive one bad look
                    log.exception("anycast rebalance failed",
                                  extra={"event": "steering_job_failed"})
                continue
            if job is None:
                return
            try:
                if job[0] == "packet":
                    _, name, src_ip, dpid, in_port, data = job
                    try:
                        self.assign_on_packet(name, src_ip, dpid, in_port, data)
                    finally:
                        with self._busy:
                            self._inflight.discard((name, src_ip))
                else:
                    with self._busy:
                        self._reassign_queued = False
                    self.reassign_on_change(job[1], job[2])
            except Exception:  # noqa: BLE001 - the worker must survive one bad job
                log.exception(f"steering job {job[0]} failed",
                              extra={"event": "steering_job_failed"})
            finally:
                with self._busy:
                    self._pending -= 1
                    self._busy.notify_all()

    def idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until the worker has handled everything queued; False on timeout."""
        with self._busy:
            return self._busy.wait_for(lambda: self._pending == 0, timeout=timeout_s)

    def assign_on_packet(self, name: str, src_ip: str, dpid: int, in_port: int,
                         data: bytes | None = None) -> dict[str, Any] | None:
        """Assign the sender of a packet to service ``name``'s anycast address (seen at
        ``dpid``:``in_port``) by the service's policy, install its NAT flows (persisted, as
        ``POST .../assignments``) and re-inject ``data`` into the switch's pipeline
        (``OFPP_TABLE``, from the client's port) so the first packet is not lost.

        Only packets from a known host, at that host's own switch port, count; anything
        else (or a client that cannot be assigned: no capacity, the service gone) returns
        None and changes nothing; a client that cannot be assigned is ignored for
        :data:`RETRY_HOLDOFF_S`. The packet is re-injected only when the assignment is new
        or changed (else its flows are already on the switch or on their way, and the
        client's retry goes through)."""
        with self._locked() as net:
            host = net.host_by_ip(src_ip)
            if host is None or host.dpid != dpid or host.port_no != in_port:
                return None
            try:
                before = self.anycast.assignment(name, host.name)
            except CpnError:
                return None  # the service is gone
            was = None if before is None else (before.site_id, before.path)
        t = time.perf_counter()
        try:
            a = self.assign(name, host.name)
        except CpnError as exc:
            with self._busy:
                self._holdoff[(name, src_ip)] = time.monotonic() + RETRY_HOLDOFF_S
            log.warning(f"first packet of {host.name} to service {name!r}: not assigned: "
                        f"{exc}", extra={"event": "anycast_unassigned"})
            return None
        changed = was != (a["site_id"], tuple(a["path"]))
        if changed:
            log.info(f"{host.name} assigned to {a['site_id']} for service {name!r} on its "
                     f"first packet ({(time.perf_counter() - t) * 1000:.1f} ms)",
                     extra={"event": "anycast_first_packet"})
            if data is not None:
                self.service.send_packet(dpid, openflow.packet_out(
                    openflow.ofp.OFPP_TABLE, data, in_port=in_port))
        return a

    def reassign_on_change(self, cause: str, t_event: float | None = None) -> list[Move]:
        """After a topology change the core has processed: move clients whose site is now
        absent or beyond the bound, refresh the paths of the others (their NAT flows follow)."""
        moves = self.reassign()
        if moves:
            ms = (time.perf_counter() - t_event) * 1000.0 if t_event is not None else None
            self._log_moves(cause, moves, ms)
        return moves

    def client_activity(self) -> dict[str, int]:
        """Packets each assigned client's ingress NAT flows have counted, read from the
        switches now (one flow-stats read per client switch; a switch that does not answer
        leaves its clients out)."""
        with self._locked() as net:
            per_dpid: dict[int, set[str]] = {}
            for t in self.anycast.flow_tuples():
                c = net.host(t.client_host)
                if c is not None:
                    per_dpid.setdefault(c.dpid, set()).add(t.client_ip)
        counts: dict[str, int] = {}
        for dpid, clients in per_dpid.items():
            try:
                stats = self.service.read_flow_stats(dpid, timeout_s=ACTIVITY_READ_TIMEOUT_S)
            except CpnError:
                continue
            for st in stats:
                src = dict(st.entry.match).get("ipv4_src")
                if src in clients and st.entry.cookie == make_cookie(
                        OWNER_ANYCAST, int(ipaddress.IPv4Address(src))):
                    counts[src] = counts.get(src, 0) + st.packets
        return counts

    def rebalance_tick(self, now: float | None = None) -> list[Move]:
        """One look at every assignment (:meth:`AnycastServices.rebalance`): failure moves
        at once; load moves dampened, and only for clients idle since the last look (their
        ingress NAT flows counted no packet in between, nor for ``move_idle_s``; a client not
        seen before is busy)."""
        seen = self.client_activity()
        at = time.monotonic()
        before, self._activity = self._activity, seen
        idle, self._active_at = idle_clients(seen, before, self._active_at, at,
                                             self.move_idle_s)
        t = time.perf_counter()

        def ready(_service: str, client_host: str) -> bool:
            return self.topology.host(client_host).ip in idle

        moves = self._change(lambda: self.anycast.rebalance(now, ready))
        if moves:
            self._log_moves("rebalance", moves, (time.perf_counter() - t) * 1000.0)
        return moves

    def sites_marker(self, now: float | None = None) -> tuple[Any, ...]:
        """What the web map's compute table shows, as a value that changes when it does:
        each site's state, free capacity, last report and freshness (the stream sends a new
        message when it moves, and the page reads the sites again)."""
        now = time.monotonic() if now is None else now
        interval = self.scheduler.metrics_interval_s
        with self._locked():
            reg = self.registry
            return tuple((s.id, s.state, s.free_micro,
                          None if (m := reg.metrics(s.id)) is None else m.received_at,
                          is_fresh(m, now, interval)) for s in reg.sites())

    def sla_tick(self, now: float | None = None) -> list[dict[str, Any]]:
        """One SLA round over every assignment: the measured latency of its path (measured
        link delays, configured where none), plus under ``cats`` its site's last reported
        compute delay (the bound is then end to end), against the service's bound. Logs and
        records the events (``sla_violation``, ``sla_restored``) and returns them."""
        now = time.monotonic() if now is None else now
        with self._locked():
            rows = []
            for svc in self.anycast.services():
                for a in self.anycast.assignments(svc.name):
                    m = self.registry.metrics(a.site_id) if svc.policy == "cats" else None
                    rows.append(((svc.name, a.client_host), a.link_ids, svc.max_latency_ms,
                                 0.0 if m is None else m.compute_delay_ms, a.site_id))
        samples, sites = [], {}
        for key, link_ids, bound, compute_ms, site in rows:
            measured = self.service.path_measured_ms(link_ids)
            if measured is None:
                continue
            samples.append(SlaSample(key, link_ids, bound, measured[0] + compute_ms,
                                     measured[1]))
            sites[key] = site
        out = []
        for ev in self.sla.sample(now, samples):
            name, client = ev["key"]
            kind, details = ev["kind"], {"service": name, "client": client,
                                         "site": sites[(name, client)],
                                         "measured_ms": ev["measured_ms"],
                                         "bound_ms": ev["bound_ms"]}
            self.service.record_event(kind, **details)
            (log.warning if kind == "sla_violation" else log.info)(
                f"service {name}: client {client} on {details['site']}: measured latency "
                f"{ev['measured_ms']:g} ms " + ("over" if kind == "sla_violation" else
                                                "back within") +
                f" the bound {ev['bound_ms']:g} ms", extra={"event": kind})
            out.append({"kind": kind, **details})
        return out

    def _log_moves(self, cause: str, moves: list[Move], ms: float | None) -> None:
        log.info(f"{cause}: {len(moves)} anycast client(s) moved"
                 + (f" in {ms:.1f} ms" if ms is not None else "") + ": "
                 + ", ".join(f"{m.client_host} {m.from_site} -> {m.to_site} ({m.reason})"
                             for m in moves),
                 extra={"event": "anycast_moved"})
        self.moves_log.append({"cause": cause, "moves": [asdict(m) for m in moves],
                               "duration_ms": ms})
        del self.moves_log[:-100]

    def candidates(self, name: str) -> dict[str, list[dict[str, Any]]]:
        """Client host -> the candidates as its service's policy sees them now
        (:meth:`AnycastServices.explain`)."""
        with self._locked():
            return {a.client_host: self.anycast.explain(name, a.client_host)
                    for a in self.anycast.assignments(name)}

    def decision(self, name: str, client_host: str) -> list[dict[str, Any]]:
        """The candidates of the client's last choice (empty after a restart)."""
        with self._locked():
            return list(self.anycast.explained.get((name, client_host), []))

    def placement_explained(self, placement_id: str) -> list[dict[str, Any]]:
        with self._locked():
            return list(self.scheduler.explained.get(placement_id, []))

    # -- latency circles ------------------------------------------------------------------------
    def circles(self, *, tiers_ms: tuple[float, ...] | list[float] | None = None,
                cities: list[str] | None = None) -> dict[str, Any]:
        """Hubs -> cities per tier and cities -> usable sites per tier, with live site state."""
        with self._locked() as net:
            kw: dict[str, Any] = {}
            if tiers_ms is not None:
                kw["tiers_ms"] = tiers_ms
            return latency_circles(self.topology, net.graph, self.registry.sites(),
                                   cities=cities, **kw)
