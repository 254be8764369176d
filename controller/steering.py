"""Compute steering inside a running controller: the stateful owner of the compute site
registry, the placement scheduler and the anycast services of one :class:`ControllerService`.

The pure layer (:mod:`controller.compute`, :mod:`controller.placement`) is not thread-safe;
every call into it here holds ``service.lock`` (the lock the controller core runs under), and
reads the controller's live graph (``service.core.state.graph``: links down, residual
bandwidth) and switch presence (``state.node_present``: sites behind an absent switch are out
of reach).

Writes are serialised by a second lock (taken before ``service.lock``, never after) and follow
the intents' rule: change the pure state, then write the difference to the store in one
transaction; if the store fails, the pure state is rebuilt from the snapshot taken before the
change and the request fails, so a failed request changes nothing. The store keeps sites,
placements (with their reservations), services and assignments (with theirs); on start they
are loaded back. Sites of the topology file are registered once, at the first start that sees
them; after that the store is authoritative (a site deleted over the API stays deleted).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from controller.compute import ComputeRegistry, Site
from controller.errors import CpnError
from controller.placement import (
    AnycastServices,
    Move,
    Placement,
    Scheduler,
    Service,
    latency_circles,
)
from controller.routing import (
    ETH_TYPE_IPV4,
    OWNER_ANYCAST,
    TABLE_INTENTS,
    FlowEntry,
    flow,
    make_cookie,
)

if TYPE_CHECKING:
    from controller.service import ControllerService
    from controller.state import NetworkState
    from controller.store import Store

__all__ = ["ANYCAST_MAC", "ANYCAST_PRIORITY", "FILE_SITES_SEEDED", "Steering", "anycast_flows"]

log = logging.getLogger("controller.steering")

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


def anycast_flows(state: NetworkState,
                  steered: list[tuple[str, str, str, str, str, tuple[str, ...], tuple[int, ...]]]
                  ) -> dict[int, dict[int, set[FlowEntry]]]:
    """NAT flows per owner cookie and dpid for ``(client host, client ip, anycast ip, site
    host, service, path, link ids)`` tuples.

    At the client's switch (the path's first node): ``ipv4_src`` client, ``ipv4_dst``
    anycast -> set ``ipv4_dst``/``eth_dst`` to the site host's, out toward the next hop;
    on the way back ``ipv4_src`` site host, ``ipv4_dst`` client -> set ``ipv4_src`` to the
    anycast address, out of the client's port. On every later switch of the path: client ->
    site host out toward the next hop (the site's port at the last). The return traffic
    follows the destination flows (table 2) to the client's switch. Clients or sites whose
    host is not known (not present) get no flows."""
    out: dict[int, dict[int, set[FlowEntry]]] = {}
    for client, client_ip, anycast_ip, site_host, _svc, path, link_ids in steered:
        c = state.hosts.get(client)
        h = state.hosts.get(site_host)
        if c is None or h is None or not path or c.node != path[0] or h.node != path[-1]:
            continue
        cookie = make_cookie(OWNER_ANYCAST, int(ipaddress.IPv4Address(client_ip)))
        per = out.setdefault(cookie, {})
        node_dpid = state.wiring.node_dpid
        ports = [state.out_port(n, lid) for n, lid in zip(path[:-1], link_ids, strict=True)]
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


class Steering:
    """Compute sites, placements and anycast services of one controller (thread-safe).

    ``store`` None keeps everything in memory (tests, tools)."""

    def __init__(self, service: ControllerService, store: Store | None = None) -> None:
        self.service = service
        self.store = store
        self.topology = service.topology
        self._write = threading.Lock()
        with service.lock:
            self._build(self._initial_state())
        self._push()

    # -- construction and persistence -----------------------------------------------------------
    def _node_up(self, node: str) -> bool:
        return self.service.core.state.node_present(node)

    def _initial_state(self) -> dict[str, Any]:
        """The stored state plus the topology file's sites not registered before."""
        file_sites = ComputeRegistry.from_topology(self.topology).to_dict()["sites"]
        if self.store is None:
            return {"sites": file_sites, "placements": [], "services": [], "assignments": []}
        stored = self.store.compute_state()
        seeded = set(self.store.setting(FILE_SITES_SEEDED, []))
        known = {s["id"] for s in stored["sites"]}
        new = [s for s in file_sites if s["id"] not in seeded and s["id"] not in known]
        if new:
            self.store.write_compute(sites={s["id"]: s for s in new})
            stored["sites"].extend(new)
            log.info(f"registered {len(new)} compute site(s) of the topology file",
                     extra={"event": "sites_seeded"})
        if seeded != seeded | {s["id"] for s in file_sites}:
            self.store.set_setting(FILE_SITES_SEEDED,
                                   sorted(seeded | {s["id"] for s in file_sites}))
        return stored

    def _build(self, state: Mapping[str, Any]) -> None:
        """(Re)build the pure objects from stored-form state. Records that no longer fit the
        topology (a node or host gone) are logged and left out rather than stopping the
        controller."""
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
        graph = self.service.core.state.graph
        self.scheduler = Scheduler.from_dict(
            {"registry": {"sites": sites,
                          "reservations": [d["reservation"] for d in (*placements,
                                                                      *assignments)]},
             "placements": [d["placement"] for d in placements]},
            self.topology, graph, node_up=self._node_up)
        self.registry: ComputeRegistry = self.scheduler.registry
        self.anycast = AnycastServices(self.scheduler)
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
    def _locked(self) -> Iterator[None]:
        """``service.lock`` with the scheduler reading the controller's current graph."""
        with self.service.lock:
            self.scheduler.graph = self.service.core.state.graph
            yield

    def _change(self, fn: Callable[[], T]) -> T:
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
                        self._build(self._as_state(before))
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
                    with self._locked():
                        self._build(self._as_state(before))
                    raise
            if diff["assignments"] or diff["services"]:
                self._push()
            return result

    # -- the data plane -------------------------------------------------------------------------
    def _steered(self) -> list[tuple[str, str, str, str, str, tuple[str, ...], tuple[int, ...]]]:
        out = []
        for svc in self.anycast.services():
            for a in self.anycast.assignments(svc.name):
                host = self.registry.site(a.site_id).host
                if host is not None:
                    out.append((a.client_host, a.client_ip, svc.anycast_ip, host, svc.name,
                                a.path, a.link_ids))
        return out

    def _push(self, timeout_s: float = PUSH_TIMEOUT_S) -> None:
        """Hand the NAT flows of every assignment to the core (one Change) and wait, bounded,
        for the switches' barriers."""
        service = self.service
        t = time.perf_counter()
        with self._locked():
            flows = anycast_flows(service.core.state, self._steered())
            arp = {s.anycast_ip: ANYCAST_MAC for s in self.anycast.services()}
            change = service.core.set_anycast(flows, arp, time.monotonic())
            ticket = service._submit(change, t)
        service._wait(ticket, timeout_s)

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
        with self._locked():
            return [a.to_dict() for a in self.anycast.assignments(name)]

    def assign(self, name: str, client: str) -> dict[str, Any]:
        """The client's site (sticky; a new choice, reserved, when it has none or its site
        is no longer usable)."""
        return self._change(lambda: self.anycast.assign(name, client).to_dict())

    def unassign(self, name: str, client: str) -> dict[str, Any]:
        return self._change(lambda: self.anycast.unassign(name, client).to_dict())

    def reassign(self, site_id: str | None = None) -> list[Move]:
        """Move clients off down or unreachable sites (after a site or network change)."""
        return self._change(lambda: self.anycast.reassign_after(site_id))

    # -- latency circles ------------------------------------------------------------------------
    def circles(self, *, tiers_ms: tuple[float, ...] | list[float] | None = None,
                cities: list[str] | None = None) -> dict[str, Any]:
        """Hubs -> cities per tier and cities -> usable sites per tier, with live site state."""
        with self._locked():
            kw: dict[str, Any] = {}
            if tiers_ms is not None:
                kw["tiers_ms"] = tiers_ms
            return latency_circles(self.topology, self.service.core.state.graph,
                                   self.registry.sites(), cities=cities, **kw)
