"""Anycast services (pure): each client of a service's anycast address is assigned one compute
site by the placement policies of :mod:`.placement`, and keeps it while it serves (affinity)
until the site fails (down, unhealthy, stale under ``cats``, out of the client's bound): then
the client moves at once. Under the delay policies (``nearest``, ``cats``) a client also moves
when another site is enough better (a site came back, or its load fell), under the dampening
of :mod:`.dampening` and only when the caller says the client is idle (:meth:`rebalance`).

The NAT flows that rewrite the anycast address to the site's and back are built by
:mod:`.steering` from :class:`FlowTuple` records. The caller holds the lock around every call.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from controller.compute.dampening import Dampener
from controller.compute.placement import (
    DEFAULT_POLICY,
    Choice,
    PathRecord,
    Scheduler,
    check_kind,
    check_policy,
    resolve_bound,
)
from controller.compute.sites import new_id, to_micro
from controller.errors import ComputeConflict, ComputeSiteError, NoCapacity, NotFound, lookup
from controller.network.explain import fmt_ms

if TYPE_CHECKING:
    from controller.topology.model import Host

__all__ = ["DELAY_POLICIES", "AnycastServices", "Assignment", "FlowTuple", "Move", "Service"]

DELAY_POLICIES: tuple[str, ...] = ("nearest", "cats")
"""policies whose clients move for load (their score is a delay in ms); clients of the others
move only for failure"""


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


_STATUS = {"full": "no_capacity", "beyond_bound": "over_bound", "being left": "excluded",
           "no host to steer traffic to": "no_host"}
"""the statuses of :class:`NoCapacity` candidates as :data:`~.placement.LOSS_REASONS`"""


class AnycastServices:
    """Per-client site assignment for anycast services, on top of a :class:`Scheduler`.

    Sticky: a client keeps its site while the site is up or draining, healthy, (under
    ``cats``) fresh, and a path within the service's bound exists. New clients never go to a
    draining, down, full, unhealthy or stale site. :meth:`assign` and :meth:`reassign_after`
    move clients off failed sites at once; :meth:`rebalance` also moves clients of the delay
    policies for load, under ``dampener``.
    """

    def __init__(self, scheduler: Scheduler, dampener: Dampener | None = None) -> None:
        self.scheduler = scheduler
        self.dampener = dampener if dampener is not None else Dampener()
        self._services: dict[str, Service] = {}
        self._by_ip: dict[str, str] = {}
        self._assignments: dict[str, dict[str, Assignment]] = {}
        self.explained: dict[tuple[str, str], list[dict[str, Any]]] = {}
        """(service, client host) -> the candidates of the client's last choice (in memory)"""

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
            self._drop(a)
        del self._assignments[name], self._services[name], self._by_ip[service.anycast_ip]
        self.dampener.forget_service(name)
        return gone

    # -- assignments ----------------------------------------------------------------------------
    def assignments(self, name: str) -> list[Assignment]:
        self.service(name)
        return sorted(self._assignments[name].values(), key=lambda a: a.client_host)

    def assignment(self, name: str, client_host: str) -> Assignment | None:
        self.service(name)
        return self._assignments[name].get(client_host)

    def assign(self, name: str, client_host: str, now: float | None = None) -> Assignment:
        """The site for ``client_host`` (host name or IPv4) of service ``name``: the existing
        one if it is still good (see the class docstring), else a new choice by the policy,
        with the capacity reserved. :class:`NoCapacity` if nothing fits (and an existing
        assignment on a site that is no longer usable is released)."""
        service = self.service(name)
        node, host = self.scheduler.resolve_source(client_host)
        if host is None:
            raise ComputeSiteError(f"client {client_host!r} is a switch, not a host")
        now = self.scheduler.clock() if now is None else now
        current = self._assignments[name].get(host.name)
        if current is not None:
            if self._failure(service, current, now) is None:
                return current
            self._drop(current)
        return self._new(service, host, exclude=(), now=now)

    def unassign(self, name: str, client_host: str) -> Assignment:
        """Forget a client's assignment and release its capacity."""
        self.service(name)
        node, host = self.scheduler.resolve_source(client_host)
        a = self._assignments[name].get(host.name if host else client_host)
        if a is None:
            raise NotFound(f"client {client_host!r} has no assignment in service {name!r}")
        self._drop(a)
        return a

    def reassign_after(self, site_id: str | None = None, now: float | None = None
                       ) -> list[Move]:
        """Re-examine the assignments at ``site_id`` (all, if None) after a site, metrics or
        network change; move, at once, those whose site failed (down, unhealthy, stale under
        ``cats`` or with ``stale_policy`` ``down``, no longer within the bound). Assignments
        on draining or full sites stay (only new clients go elsewhere). Returns the moves, in
        (service, client) order; ``to_site`` None when nothing could take the client."""
        if site_id is not None:
            self.scheduler.registry.site(site_id)
        now = self.scheduler.clock() if now is None else now
        moves: list[Move] = []
        for name in sorted(self._assignments):
            service = self._services[name]
            for client in sorted(self._assignments[name]):
                a = self._assignments[name][client]
                if site_id is not None and a.site_id != site_id:
                    continue
                why = self._failure(service, a, now)
                if why is None:
                    continue
                self._drop(a)
                host = self.scheduler.topology.host(a.client_host)
                try:
                    new = self._new(service, host, exclude=(a.site_id,), now=now)
                except NoCapacity as exc:
                    moves.append(Move(name, client, a.site_id, None, f"{why}; {exc.reason}"))
                    continue
                moves.append(Move(name, client, a.site_id, new.site_id, why, new.latency_ms))
        return moves

    def rebalance(self, now: float | None = None,
                  ready: Callable[[str, str], bool] | None = None) -> list[Move]:
        """Failure moves (:meth:`reassign_after`), then load moves: each client of a service
        under a delay policy (:data:`DELAY_POLICIES`) whose best site by the policy is another
        one moves there when the dampener allows it (gain in ms and %, held, within the
        service's budget) and ``ready(service, client_host)`` says it is idle (affinity: a
        busy client keeps its site; None: every client is idle). Load moves carry the reason
        ``load: <current> ms -> <new> ms`` (end-to-end under ``cats``, network otherwise)."""
        now = self.scheduler.clock() if now is None else now
        moves = self.reassign_after(now=now)
        sched = self.scheduler
        for name in sorted(self._assignments):
            service = self._services[name]
            if service.policy not in DELAY_POLICIES:
                continue
            cats = service.policy == "cats"
            demand = to_micro(service.demand_per_client, "demand_per_client")
            for client in sorted(self._assignments[name]):
                a = self._assignments[name][client]
                try:
                    choice = sched.select(a.client_node, demand, service.kind,
                                          service.max_latency_ms, policy=service.policy,
                                          need_host=True, now=now, credit={a.site_id: demand})
                except NoCapacity:
                    choice = None
                cur = None if choice is None else next(
                    (c for c in choice.candidates if c[0] == a.site_id), None)
                if choice is None or choice.site.id == a.site_id or cur is None \
                        or cur[1] is None:
                    self.dampener.forget(name, client)
                    continue
                cur_ms = cur[1] + ((cur[2] or 0.0) if cats else 0.0)
                new_ms = choice.least_latency_ms + (
                    (choice.compute_delay_ms or 0.0) if cats else 0.0)
                if not self.dampener.offer(name, client, cur_ms, new_ms, now,
                                           ready=ready is None or ready(name, client)):
                    continue
                host = self.scheduler.topology.host(a.client_host)
                self._drop(a)
                new = self._commit(service, host, choice)
                moves.append(Move(name, client, a.site_id, new.site_id,
                                  f"load: {fmt_ms(cur_ms)} -> {fmt_ms(new_ms)}", new.latency_ms))
        return moves

    def explain(self, name: str, client_host: str, now: float | None = None
                ) -> list[dict[str, Any]]:
        """The candidates as the client's service's policy sees them now (its own demand
        counted as free at its site), in the form of :meth:`Choice.explain`: ``chosen`` is the
        best site now; when that is not the client's, a load move is pending (dampening) or
        the client is busy. Sites nothing can take say why (``over_bound``, ``no_capacity``,
        ...)."""
        service = self.service(name)
        a = self._assignments[name].get(client_host)
        if a is None:
            raise NotFound(f"client {client_host!r} has no assignment in service {name!r}")
        demand = to_micro(service.demand_per_client, "demand_per_client")
        try:
            return self.scheduler.select(
                a.client_node, demand, service.kind, service.max_latency_ms,
                policy=service.policy, need_host=True, now=now,
                credit={a.site_id: demand}).explain()
        except NoCapacity as exc:
            return [{"site": c["site"], "network_ms": c["latency_ms"] if c["status"]
                     != "beyond_bound" else None, "compute_ms": c.get("compute_ms"),
                     "score": None, "status": _STATUS.get(str(c["status"]), c["status"])}
                    for c in exc.candidates]

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
    def _failure(self, service: Service, a: Assignment, now: float) -> str | None:
        """Why ``a``'s site can no longer serve it (None: it can; its path is refreshed)."""
        sched = self.scheduler
        site = sched.registry.site(a.site_id)
        bound = service.max_latency_ms
        if site.state == "down":
            return f"site {site.id} is down"
        if sched.node_up is not None and not sched.node_up(site.node):
            return f"site {site.id} is not within {bound:g} ms"
        _m, blocker = sched.live_metrics(site, now, service.policy)
        if blocker == "unhealthy":
            return f"site {site.id} reports unhealthy"
        if blocker == "stale" and (service.policy == "cats" or sched.stale_policy == "down"):
            return f"site {site.id} has no fresh metrics"
        path = sched.graph.constrained_path(
            a.client_node, site.node, max_latency_ms=bound, min_bandwidth_mbps=0.0,
            weight="latency" if service.policy == "cats" else "cost")
        if path is None:
            return f"site {site.id} is not within {bound:g} ms"
        a.path, a.link_ids, a.latency_ms = tuple(path.nodes), tuple(path.links), path.latency_ms
        return None

    def _drop(self, a: Assignment) -> None:
        self.scheduler.registry.release(a.reservation_id)
        del self._assignments[a.service][a.client_host]
        self.dampener.forget(a.service, a.client_host)
        self.explained.pop((a.service, a.client_host), None)

    def _new(self, service: Service, host: Host, exclude: Iterable[str],
             now: float | None = None) -> Assignment:
        demand_micro = to_micro(service.demand_per_client, "demand_per_client")
        choice = self.scheduler.select(host.node, demand_micro, service.kind,
                                       service.max_latency_ms, policy=service.policy,
                                       exclude=exclude, need_host=True, now=now,
                                       source_label=f"{host.name} (at {host.node})")
        return self._commit(service, host, choice)

    def _commit(self, service: Service, host: Host, choice: Choice) -> Assignment:
        """Reserve the client's demand at the chosen site and record the assignment."""
        sched = self.scheduler
        demand_micro = to_micro(service.demand_per_client, "demand_per_client")
        rid = new_id(f"svc-{service.name}")
        sched.registry.reserve(choice.site.id, demand_micro, micro=True, reservation_id=rid,
                               owner=f"service:{service.name}")
        a = Assignment(service=service.name, client_host=host.name, client_ip=host.ip,
                       client_node=host.node, site_id=choice.site.id, site_node=choice.site.node,
                       reservation_id=rid, path=tuple(choice.path.nodes),
                       link_ids=tuple(choice.path.links), latency_ms=choice.path.latency_ms,
                       price=choice.site.price * service.demand_per_client)
        self._assignments[service.name][host.name] = a
        self.explained[(service.name, host.name)] = choice.explain()
        return a
