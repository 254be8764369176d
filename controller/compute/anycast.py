"""Anycast services (pure): each client of a service's anycast address is assigned one compute
site by the placement policies of :mod:`.placement`, and keeps it while it serves (affinity)
until the site goes down, drains or leaves the client's bound; then the client moves.

The NAT flows that rewrite the anycast address to the site's and back are built by
:mod:`.steering` from :class:`FlowTuple` records. The caller holds the lock around every call.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from controller.compute.placement import (
    DEFAULT_POLICY,
    PathRecord,
    Scheduler,
    check_kind,
    check_policy,
    resolve_bound,
)
from controller.compute.sites import new_id, to_micro
from controller.errors import ComputeConflict, ComputeSiteError, NoCapacity, NotFound, lookup

if TYPE_CHECKING:
    from controller.topology.model import Host

__all__ = ["AnycastServices", "Assignment", "FlowTuple", "Move", "Service"]


@dataclass(frozen=True, slots=True)
class Service:
    """An anycast service: clients send to ``anycast_ip``; each is steered to one site."""

    name: str
    anycast_ip: str
    kind: str
    demand_per_client: float
    max_latency_ms: float
    policy: str = DEFAULT_POLICY

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or len(self.name) > 64 or not all(
                c.isalnum() or c in "_.-" for c in self.name):
            raise ComputeSiteError(f"bad service name {self.name!r}: letters, digits, '_', '.', "
                                   "'-', at most 64")
        try:
            addr = ipaddress.IPv4Address(self.anycast_ip)
        except (ValueError, TypeError):
            raise ComputeSiteError(f"bad anycast IPv4 address {self.anycast_ip!r}") from None
        if addr.is_multicast or addr.is_unspecified or addr == ipaddress.IPv4Address(
                "255.255.255.255"):
            raise ComputeSiteError(f"anycast address {self.anycast_ip} must be a unicast address")
        check_kind(self.kind)
        check_policy(self.policy)
        if to_micro(self.demand_per_client, "demand_per_client") <= 0:
            raise ComputeSiteError("demand_per_client must be positive")
        resolve_bound(self.max_latency_ms)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FlowTuple:
    """What the NAT flows of one assignment need (``controller.compute.steering``): in,
    ``ipv4_dst`` anycast -> site IP/MAC; back, ``ipv4_src`` site -> anycast; the path
    between the client's and the site's switches."""

    client_ip: str
    anycast_ip: str
    site_ip: str
    site_mac: str
    site_node: str
    path: tuple[str, ...]
    client_host: str
    site_host: str
    link_ids: tuple[int, ...]
    """pathcore link ids of ``path`` (they tell parallel links apart)"""


@dataclass(slots=True)
class Assignment(PathRecord):
    """One client of one service, steered to one site, holding ``demand_per_client``."""

    record_name = "assignment"

    service: str
    client_host: str
    client_ip: str
    client_node: str
    site_id: str
    site_node: str
    reservation_id: str
    path: tuple[str, ...]
    link_ids: tuple[int, ...]
    latency_ms: float
    price: float


@dataclass(frozen=True, slots=True)
class Move:
    """A client moved off a site: ``to_site`` None when no site could take it (unassigned)."""

    service: str
    client_host: str
    from_site: str
    to_site: str | None
    reason: str
    latency_ms: float | None = None


class AnycastServices:
    """Per-client site assignment for anycast services, on top of a :class:`Scheduler`.

    Sticky: a client keeps its site while the site is up or draining and a path within the
    service's bound exists. New clients never go to a draining, down or full site. Existing
    clients are moved (by :meth:`assign` or :meth:`reassign_after`) only when their site is down
    or out of reach within the bound.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._services: dict[str, Service] = {}
        self._by_ip: dict[str, str] = {}
        self._assignments: dict[str, dict[str, Assignment]] = {}

    # -- services -------------------------------------------------------------------------------
    def add_service(self, service: Service) -> Service:
        if service.name in self._services:
            raise ComputeConflict(f"service {service.name!r} already exists")
        if service.anycast_ip in self._by_ip:
            raise ComputeConflict(f"anycast address {service.anycast_ip} is already used by "
                                  f"service {self._by_ip[service.anycast_ip]!r}")
        clash = next((h.name for h in self.scheduler.topology.hosts
                      if h.ip == service.anycast_ip), None)
        if clash is not None:
            raise ComputeConflict(f"anycast address {service.anycast_ip} is host {clash!r}'s "
                                  "address")
        self._services[service.name] = service
        self._by_ip[service.anycast_ip] = service.name
        self._assignments[service.name] = {}
        return service

    def service(self, name: str) -> Service:
        return lookup(self._services, name, "no service {!r}")

    def services(self) -> list[Service]:
        return list(self._services.values())

    def remove_service(self, name: str) -> list[Assignment]:
        """Remove a service and release every client's capacity; returns the assignments."""
        service = self.service(name)
        gone = list(self._assignments[name].values())
        for a in gone:
            self.scheduler.registry.release(a.reservation_id)
        del self._assignments[name], self._services[name], self._by_ip[service.anycast_ip]
        return gone

    # -- assignments ----------------------------------------------------------------------------
    def assignments(self, name: str) -> list[Assignment]:
        self.service(name)
        return sorted(self._assignments[name].values(), key=lambda a: a.client_host)

    def assignment(self, name: str, client_host: str) -> Assignment | None:
        self.service(name)
        return self._assignments[name].get(client_host)

    def assign(self, name: str, client_host: str) -> Assignment:
        """The site for ``client_host`` (host name or IPv4) of service ``name``: the existing
        one if it is still good (see the class docstring), else a new choice by the policy,
        with the capacity reserved. :class:`NoCapacity` if nothing fits (and an existing
        assignment on a site that is no longer usable is released)."""
        service = self.service(name)
        node, host = self.scheduler.resolve_source(client_host)
        if host is None:
            raise ComputeSiteError(f"client {client_host!r} is a switch, not a host")
        current = self._assignments[name].get(host.name)
        if current is not None:
            kept = self._recheck(service, current)
            if kept is not None:
                return kept
            self._drop(current)
        return self._new(service, host, exclude=())

    def unassign(self, name: str, client_host: str) -> Assignment:
        """Forget a client's assignment and release its capacity."""
        self.service(name)
        node, host = self.scheduler.resolve_source(client_host)
        a = self._assignments[name].get(host.name if host else client_host)
        if a is None:
            raise NotFound(f"client {client_host!r} has no assignment in service {name!r}")
        self._drop(a)
        return a

    def reassign_after(self, site_id: str | None = None) -> list[Move]:
        """Re-examine the assignments at ``site_id`` (all, if None) after a site or network
        change; move those whose site is down or no longer within the bound. Assignments on
        draining or full sites stay (only new clients go elsewhere). Returns the moves, in
        (service, client) order; ``to_site`` None when nothing could take the client."""
        if site_id is not None:
            self.scheduler.registry.site(site_id)
        moves: list[Move] = []
        for name in sorted(self._assignments):
            service = self._services[name]
            for client in sorted(self._assignments[name]):
                a = self._assignments[name][client]
                if site_id is not None and a.site_id != site_id:
                    continue
                if self._recheck(service, a) is not None:
                    continue
                old_site = self.scheduler.registry.site(a.site_id)
                why = (f"site {old_site.id} is down" if old_site.state == "down"
                       else f"site {old_site.id} is not within {service.max_latency_ms:g} ms")
                self._drop(a)
                host = self.scheduler.topology.host(a.client_host)
                try:
                    new = self._new(service, host, exclude=(a.site_id,))
                except NoCapacity as exc:
                    moves.append(Move(name, client, a.site_id, None, f"{why}; {exc.reason}"))
                    continue
                moves.append(Move(name, client, a.site_id, new.site_id, why, new.latency_ms))
        return moves

    def flow_tuple(self, assignment: Assignment) -> FlowTuple | None:
        """The addresses and path the data plane's NAT flows need for this assignment; None
        when its site has no host any more (its host was unset after the assignment)."""
        service = self.service(assignment.service)
        host = self.scheduler.registry.host_of(assignment.site_id)
        if host is None:
            return None
        return FlowTuple(client_ip=assignment.client_ip, anycast_ip=service.anycast_ip,
                         site_ip=host.ip, site_mac=host.mac, site_node=assignment.site_node,
                         path=assignment.path, client_host=assignment.client_host,
                         site_host=host.name, link_ids=assignment.link_ids)

    def flow_tuples(self) -> list[FlowTuple]:
        """:meth:`flow_tuple` of every assignment of every service (those with a host)."""
        out = []
        for service in self.services():
            for a in self.assignments(service.name):
                t = self.flow_tuple(a)
                if t is not None:
                    out.append(t)
        return out

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"services": [s.to_dict() for s in self._services.values()],
                "assignments": [a.to_dict() for per in self._assignments.values()
                                for a in per.values()]}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load services and assignments saved with :meth:`to_dict` into this (empty) object;
        the scheduler's registry must already hold the assignments' reservations."""
        if self._services:
            raise ComputeConflict("restore() needs an empty AnycastServices")
        for s in data.get("services", []):
            self.add_service(Service(**s))
        for d in data.get("assignments", []):
            a = Assignment.from_dict(d)
            self.service(a.service)
            res = self.scheduler.registry.reservation(a.reservation_id)
            if res.site_id != a.site_id:
                raise ComputeConflict(f"assignment of {a.client_host!r} names site "
                                      f"{a.site_id!r} but its reservation is at {res.site_id!r}")
            self._assignments[a.service][a.client_host] = a

    # -- internals ------------------------------------------------------------------------------
    def _recheck(self, service: Service, a: Assignment) -> Assignment | None:
        """``a`` (path refreshed) if its site is up/draining and reachable within the bound."""
        sched = self.scheduler
        site = sched.registry.site(a.site_id)
        if site.state == "down" or (sched.node_up is not None and not sched.node_up(site.node)):
            return None
        path = sched.graph.constrained_path(a.client_node, site.node,
                                            max_latency_ms=service.max_latency_ms,
                                            min_bandwidth_mbps=0.0, weight="cost")
        if path is None:
            return None
        a.path, a.link_ids, a.latency_ms = tuple(path.nodes), tuple(path.links), path.latency_ms
        return a

    def _drop(self, a: Assignment) -> None:
        self.scheduler.registry.release(a.reservation_id)
        del self._assignments[a.service][a.client_host]

    def _new(self, service: Service, host: Host, exclude: Iterable[str]) -> Assignment:
        sched = self.scheduler
        demand_micro = to_micro(service.demand_per_client, "demand_per_client")
        choice = sched.select(host.node, demand_micro, service.kind, service.max_latency_ms,
                              policy=service.policy, exclude=exclude, need_host=True,
                              source_label=f"{host.name} (at {host.node})")
        rid = new_id(f"svc-{service.name}")
        sched.registry.reserve(choice.site.id, demand_micro, micro=True, reservation_id=rid,
                               owner=f"service:{service.name}")
        a = Assignment(service=service.name, client_host=host.name, client_ip=host.ip,
                       client_node=host.node, site_id=choice.site.id, site_node=choice.site.node,
                       reservation_id=rid, path=tuple(choice.path.nodes),
                       link_ids=tuple(choice.path.links), latency_ms=choice.path.latency_ms,
                       price=choice.site.price * service.demand_per_client)
        self._assignments[service.name][host.name] = a
        return a
