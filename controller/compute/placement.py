"""Placement of compute demands, anycast service assignment and latency circles (pure).

Placement picks, for a demand of some kind from a source node, one compute site that

* is of the kind, ``up``, with free capacity >= the demand (and a host, for anycast services);
* is reachable within the latency bound (``max_latency_ms``, or a tier: local 1 ms, regional
  5 ms, national 20 ms), over links with ``min_bandwidth_mbps`` of residual bandwidth;

and among those the best by the policy:

``nearest`` (the DEFAULT)
    least latency; ties by price, then site id. Latency is what CATS steers on and the one
    thing a client feels per request; price and load are the operator's business and are
    still bounded by capacity accounting (a full site is never chosen), so the default
    favours the user. ``cheapest`` and ``least-loaded`` are one argument away.
``cheapest``
    least price x demand; ties by latency, then site id.
``least-loaded``
    highest free fraction of capacity *after* placing the demand; ties by latency, then id.

The least latency of every node comes from one ``within_latency(src, bound)`` call. The path
reported (and the one the controller installs) is the one intents get: the least-*cost* path
whose latency is within the bound and whose links all have the residual bandwidth,
``constrained_path(src, site_node, max_latency_ms=bound, min_bandwidth_mbps=bw,
weight="cost")``; its latency (<= the bound, >= the least latency) is the one reported. When a
bandwidth is asked, sites are tried in policy order until one has such a path.

When nothing fits, :class:`controller.errors.NoCapacity` (HTTP 409) says why for every
candidate: none of the kind within the bound (naming the nearest one and its latency), sites in
the bound but full / draining / down, sites without a path of the bandwidth.

The ``graph`` is a ``pathcore.Graph`` (the controller's live one, with down links and residual
bandwidths, or ``Topology.to_graph()``); the caller holds the lock around every call.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Self

from controller.compute.sites import (
    KINDS,
    ComputeRegistry,
    Site,
    from_micro,
    new_id,
    to_micro,
)
from controller.errors import ComputeConflict, ComputeSiteError, NoCapacity, NotFound
from controller.network.explain import fmt_ms

if TYPE_CHECKING:
    import pathcore
    from controller.topology.model import Host, Topology

__all__ = [
    "CIRCLE_TIERS_MS",
    "DEFAULT_POLICY",
    "POLICIES",
    "TIERS_MS",
    "AnycastServices",
    "Assignment",
    "Choice",
    "FlowTuple",
    "Move",
    "Placement",
    "Scheduler",
    "Service",
    "latency_circles",
    "policy_key",
    "resolve_bound",
]

TIERS_MS: dict[str, float] = {"local": 1.0, "regional": 5.0, "national": 20.0}
CIRCLE_TIERS_MS: tuple[float, ...] = (1.0, 5.0, 20.0)
POLICIES: tuple[str, ...] = ("nearest", "cheapest", "least-loaded")
DEFAULT_POLICY = "nearest"


def resolve_bound(max_latency_ms: float | None = None, tier: str | None = None) -> float:
    """The latency bound in ms from exactly one of ``max_latency_ms`` and ``tier``."""
    if (max_latency_ms is None) == (tier is None):
        raise ComputeSiteError("give exactly one of max_latency_ms and tier "
                               f"({', '.join(f'{k} = {v:g} ms' for k, v in TIERS_MS.items())})")
    if tier is not None:
        if tier not in TIERS_MS:
            raise ComputeSiteError(f"unknown tier {tier!r} (one of {', '.join(TIERS_MS)})")
        return TIERS_MS[tier]
    if (isinstance(max_latency_ms, bool) or not isinstance(max_latency_ms, (int, float))
            or not math.isfinite(max_latency_ms) or max_latency_ms <= 0):
        raise ComputeSiteError(f"max_latency_ms must be a finite number > 0, "
                               f"got {max_latency_ms!r}")
    return float(max_latency_ms)


def _check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ComputeSiteError(f"unknown policy {policy!r} (one of {', '.join(POLICIES)})")
    return policy


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ComputeSiteError(f"unknown compute kind {kind!r} (one of {', '.join(KINDS)})")
    return kind


def _check_bandwidth(bw: float) -> float:
    if (isinstance(bw, bool) or not isinstance(bw, (int, float)) or not math.isfinite(bw)
            or bw < 0):
        raise ComputeSiteError(f"min_bandwidth_mbps must be a finite number >= 0, got {bw!r}")
    return float(bw)


def policy_key(policy: str, site: Site, latency_ms: float, demand_micro: int) -> tuple[Any, ...]:
    """Sort key of a candidate site under ``policy`` (smaller is better)."""
    if policy == "nearest":
        return (latency_ms, site.price, site.id)
    if policy == "cheapest":
        return (site.price * from_micro(demand_micro), latency_ms, site.id)
    if policy == "least-loaded":
        return (-site.free_fraction_after(demand_micro), latency_ms, site.id)
    raise ComputeSiteError(f"unknown policy {policy!r}")


@dataclass(frozen=True, slots=True)
class Choice:
    """A site chosen for a demand (nothing reserved yet)."""

    site: Site
    path: pathcore.Path
    least_latency_ms: float

    @property
    def latency_ms(self) -> float:
        return self.path.latency_ms


class _PathRecord:
    """Plain-dict round trip for the records below (the store keeps them as JSON): ``path``
    and ``link_ids`` are tuples in memory and lists in the dict."""

    __slots__ = ()
    record_name = "record"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        d["path"], d["link_ids"] = list(d["path"]), list(d["link_ids"])
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        try:
            d = {f: data[f] for f in cls.__dataclass_fields__}  # type: ignore[attr-defined]
        except KeyError as exc:
            raise ComputeSiteError(f"{cls.record_name} record lacks {exc.args[0]!r}") from None
        d["path"], d["link_ids"] = tuple(d["path"]), tuple(d["link_ids"])
        return cls(**d)


@dataclass(slots=True)
class Placement(_PathRecord):
    """A demand placed on a site. ``id`` is also the id of its capacity reservation."""

    record_name = "placement"

    id: str
    source: str
    source_node: str
    site_id: str
    site_node: str
    kind: str
    demand: float
    unit: str
    policy: str
    max_latency_ms: float
    min_bandwidth_mbps: float
    path: tuple[str, ...]
    link_ids: tuple[int, ...]
    latency_ms: float
    price: float
    """price per unit x demand."""


class Scheduler:
    """Places demands on a :class:`ComputeRegistry` over a pathcore graph.

    ``node_up(name)`` (optional) says whether a switch is present; sites behind absent switches
    are treated as unreachable. The graph is read at every call, so it may be the controller's
    live graph; replace ``scheduler.graph`` if the controller rebuilds it.
    """

    def __init__(self, registry: ComputeRegistry, graph: pathcore.Graph, *,
                 node_up: Callable[[str], bool] | None = None) -> None:
        self.registry = registry
        self.topology: Topology = registry.topology
        self.graph = graph
        self.node_up = node_up
        self._placements: dict[str, Placement] = {}

    # -- sources --------------------------------------------------------------------------------
    def resolve_source(self, source: str) -> tuple[str, Host | None]:
        """``(node, host)`` for a node name, a host name or a host's IPv4 address."""
        topo = self.topology
        if not isinstance(source, str) or not source:
            raise ComputeSiteError(f"source must be a node or host name, got {source!r}")
        try:
            return topo.node(source).name, None
        except NotFound:
            pass
        try:
            host = topo.host(source)
        except NotFound:
            by_ip = next((h for h in topo.hosts if h.ip == source), None)
            if by_ip is None:
                raise NotFound(f"no node or host {source!r} in topology {topo.name!r}") from None
            host = by_ip
        return host.node, host

    # -- selection ------------------------------------------------------------------------------
    def select(self, source_node: str, demand_micro: int, kind: str, bound_ms: float, *,
               min_bandwidth_mbps: float = 0.0, policy: str = DEFAULT_POLICY,
               exclude: Iterable[str] = (), need_host: bool = False,
               source_label: str | None = None) -> Choice:
        """The best site for the demand (nothing reserved); :class:`NoCapacity` with reasons."""
        g, reg = self.graph, self.registry
        label = source_label or source_node
        excluded = set(exclude)
        of_kind = reg.sites(kind=kind)
        if not of_kind:
            raise NoCapacity([f"no {kind} compute site is registered"])
        reach = g.within_latency(source_node, bound_ms)
        node_up = self.node_up
        usable: list[tuple[tuple[Any, ...], Site, float]] = []
        blocked: list[tuple[Site, str, float]] = []
        in_bound = 0
        for site in of_kind:
            lat = reach.get(site.node)
            if lat is None or (node_up is not None and not node_up(site.node)):
                continue
            in_bound += 1
            if site.state != "up":
                blocked.append((site, site.state, lat))
            elif site.id in excluded:
                blocked.append((site, "being left", lat))
            elif site.free_micro < demand_micro:
                blocked.append((site, f"free {site.free_capacity:g} of {site.capacity:g} "
                                      f"{site.unit}", lat))
            elif need_host and site.host is None:
                blocked.append((site, "no host to steer traffic to", lat))
            else:
                usable.append((policy_key(policy, site, lat, demand_micro), site, lat))
        usable.sort(key=lambda t: t[0])
        no_path: list[tuple[Site, float]] = []
        for _key, site, lat in usable:
            path = g.constrained_path(source_node, site.node, max_latency_ms=bound_ms,
                                      min_bandwidth_mbps=min_bandwidth_mbps, weight="cost")
            if path is not None:
                return Choice(site=site, path=path, least_latency_ms=lat)
            no_path.append((site, lat))
        raise self._no_capacity(label, source_node, kind, bound_ms, min_bandwidth_mbps,
                                of_kind, in_bound, blocked, no_path)

    def _no_capacity(self, label: str, source_node: str, kind: str, bound_ms: float,
                     bw: float, of_kind: Sequence[Site], in_bound: int,
                     blocked: list[tuple[Site, str, float]],
                     no_path: list[tuple[Site, float]]) -> NoCapacity:
        reasons: list[str] = []
        candidates: list[dict[str, object]] = []
        for site, why, lat in blocked:
            status = "full" if why.startswith("free ") else why
            candidates.append({"site": site.id, "latency_ms": lat, "status": status,
                               "state": site.state, "free_capacity": site.free_capacity,
                               "capacity": site.capacity, "unit": site.unit})
        for site, lat in no_path:
            candidates.append({"site": site.id, "latency_ms": lat, "status": "no_bandwidth",
                               "state": site.state, "free_capacity": site.free_capacity,
                               "capacity": site.capacity, "unit": site.unit})
        # Sites of the kind beyond the bound (or unreachable), nearest first: computed only here,
        # on the failure path, so a successful placement costs one within_latency call.
        beyond: list[tuple[float, Site]] = []
        far = self.graph.within_latency(source_node, math.inf)
        in_ids = {c["site"] for c in candidates}
        for site in of_kind:
            if site.id in in_ids:
                continue
            far_ms = far.get(site.node)
            if far_ms is not None and (self.node_up is None or self.node_up(site.node)):
                beyond.append((far_ms, site))
        beyond.sort(key=lambda t: (t[0], t[1].id))
        nearest = ""
        if beyond:
            lat, site = beyond[0]
            state = "" if site.state == "up" else f", {site.state}"
            nearest = f"{site.id} at {fmt_ms(lat)}{state}"
        if in_bound == 0:
            tail = f" (nearest: {nearest})" if nearest else " (none is reachable)"
            reasons.append(f"no {kind} site within {bound_ms:g} ms of {label}{tail}")
        else:
            if blocked:
                reasons.append(f"{kind} sites within {bound_ms:g} ms of {label} but full or not "
                               "up: " + ", ".join(f"{s.id} ({why})" for s, why, _ in blocked))
            if no_path:
                reasons.append(f"{kind} sites within {bound_ms:g} ms of {label} without a path "
                               f"of {bw:g} Mbps residual bandwidth within the bound: "
                               + ", ".join(f"{s.id} ({fmt_ms(lat)})" for s, lat in no_path))
            if nearest:
                reasons.append(f"nearest {kind} site beyond the bound: {nearest}")
        for lat, site in beyond:
            candidates.append({"site": site.id, "latency_ms": lat, "status": "beyond_bound",
                               "state": site.state, "free_capacity": site.free_capacity,
                               "capacity": site.capacity, "unit": site.unit})
        best = min((c["latency_ms"] for c in candidates), default=None)  # type: ignore[type-var]
        return NoCapacity(reasons, candidates=candidates,
                          best_latency_ms=best)  # type: ignore[arg-type]

    # -- placements -----------------------------------------------------------------------------
    def place(self, source: str, demand: float, kind: str, *, max_latency_ms: float | None = None,
              tier: str | None = None, min_bandwidth_mbps: float = 0.0,
              policy: str = DEFAULT_POLICY, placement_id: str | None = None) -> Placement:
        """Choose a site for ``demand`` units of ``kind`` computing near ``source`` (node, host
        name or host IP) and reserve the capacity. See the module docstring for the rules.

        Raises :class:`ComputeSiteError` (bad input), :class:`NotFound` (unknown source),
        :class:`ComputeConflict` (placement id in use), :class:`NoCapacity` (nothing fits)."""
        bound = resolve_bound(max_latency_ms, tier)
        _check_kind(kind)
        _check_policy(policy)
        bw = _check_bandwidth(min_bandwidth_mbps)
        demand_micro = to_micro(demand, "demand")
        if demand_micro <= 0:
            raise ComputeSiteError(f"demand must be positive, got {demand!r}")
        node, host = self.resolve_source(source)
        pid = placement_id if placement_id is not None else new_id("pl")
        if pid in self._placements:
            raise ComputeConflict(f"placement id {pid!r} is already in use")
        label = node if host is None else f"{host.name} (at {node})"
        choice = self.select(node, demand_micro, kind, bound, min_bandwidth_mbps=bw,
                             policy=policy, source_label=label)
        site = choice.site
        self.registry.reserve(site.id, demand_micro, micro=True, reservation_id=pid,
                              owner="placement")
        placement = Placement(
            id=pid, source=source, source_node=node, site_id=site.id, site_node=site.node,
            kind=kind, demand=from_micro(demand_micro), unit=site.unit, policy=policy,
            max_latency_ms=bound, min_bandwidth_mbps=bw, path=tuple(choice.path.nodes),
            link_ids=tuple(choice.path.links), latency_ms=choice.path.latency_ms,
            price=site.price * from_micro(demand_micro))
        self._placements[pid] = placement
        return placement

    def release(self, placement_id: str) -> Placement:
        """Free a placement's capacity; :class:`NotFound` if there is no such placement."""
        placement = self.placement(placement_id)
        self.registry.release(placement_id)
        del self._placements[placement_id]
        return placement

    def placement(self, placement_id: str) -> Placement:
        try:
            return self._placements[placement_id]
        except (KeyError, TypeError):
            raise NotFound(f"no placement {placement_id!r}") from None

    def placements(self) -> list[Placement]:
        return list(self._placements.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the store: the registry (sites, reservations) and the placements."""
        return {"registry": self.registry.to_dict(),
                "placements": [p.to_dict() for p in self._placements.values()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], topology: Topology, graph: pathcore.Graph, *,
                  node_up: Callable[[str], bool] | None = None) -> Scheduler:
        """Rebuild from :meth:`to_dict`. Every placement must have its reservation."""
        reg = ComputeRegistry.from_dict(data.get("registry", {}), topology)
        sched = cls(reg, graph, node_up=node_up)
        for d in data.get("placements", []):
            p = Placement.from_dict(d)
            res = reg.reservation(p.id)
            if res.site_id != p.site_id:
                raise ComputeConflict(f"placement {p.id!r} names site {p.site_id!r} but its "
                                      f"reservation is at {res.site_id!r}")
            sched._placements[p.id] = p
        return sched


# ------------------------------------------------------------------------------------------------
# Anycast services
# ------------------------------------------------------------------------------------------------

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
        _check_kind(self.kind)
        _check_policy(self.policy)
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
class Assignment(_PathRecord):
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
        try:
            return self._services[name]
        except (KeyError, TypeError):
            raise NotFound(f"no service {name!r}") from None

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


# ------------------------------------------------------------------------------------------------
# Latency circles
# ------------------------------------------------------------------------------------------------

def latency_circles(topology: Topology, graph: pathcore.Graph,
                    sites: Iterable[Site] | None = None, *,
                    tiers_ms: Sequence[float] = CIRCLE_TIERS_MS,
                    hubs: Sequence[str] | None = None,
                    cities: Sequence[str] | None = None) -> dict[str, Any]:
    """Which cities lie within each tier of each hub, and which sites each city can use.

    ``sites`` default to the topology's compute sites (pass ``registry.sites()`` for live
    state); ``hubs``/``cities`` default to the nodes of kind ``national_hub``/``city``. One
    ``within_latency`` call per hub and per city. Returns::

        {"tiers_ms": [1.0, 5.0, 20.0],
         "hubs": [{"hub", "label", "tiers": [{"max_latency_ms", "cities": [{"name",
                   "latency_ms"}]}]}],
         "cities": [{"city", "label", "tiers": [{"max_latency_ms", "sites": [{"id", "kind",
                     "node", "latency_ms", "state", "free_capacity", "unit"}]}]}]}

    Lists are ordered by latency, then name.
    """
    tiers = [float(t) for t in tiers_ms]
    if not tiers or any(not math.isfinite(t) or t <= 0 for t in tiers):
        raise ComputeSiteError(f"tiers must be finite numbers > 0, got {list(tiers_ms)!r}")
    tiers.sort()
    top = tiers[-1]
    hub_names = list(hubs) if hubs is not None else [
        n.name for n in topology.nodes_of_kind("national_hub")]
    city_names = list(cities) if cities is not None else [
        n.name for n in topology.nodes_of_kind("city")]
    city_set = set(city_names)
    for name in (*hub_names, *city_names):
        topology.node(name)
    site_rows: list[dict[str, Any]] = []
    if sites is None:
        for s in topology.compute_sites:
            free = s.free_capacity if s.free_capacity is not None else s.capacity
            site_rows.append({"id": s.id, "kind": s.kind, "node": s.node, "state": "up",
                              "free_capacity": free, "unit": s.unit})
    else:
        site_rows = [{"id": s.id, "kind": s.kind, "node": s.node, "state": s.state,
                      "free_capacity": s.free_capacity, "unit": s.unit} for s in sites]

    def ordered(reach: dict[str, float], names: Iterable[str]) -> list[tuple[str, float]]:
        return sorted(((n, reach[n]) for n in names if n in reach), key=lambda t: (t[1], t[0]))

    out_hubs = []
    for hub in hub_names:
        reach = graph.within_latency(hub, top)
        near = ordered(reach, city_set)
        out_hubs.append({"hub": hub, "label": topology.node(hub).label, "tiers": [
            {"max_latency_ms": t,
             "cities": [{"name": n, "latency_ms": ms} for n, ms in near if ms <= t]}
            for t in tiers]})
    out_cities = []
    for city in city_names:
        reach = graph.within_latency(city, top)
        near_sites = sorted(((row, reach[row["node"]]) for row in site_rows
                             if row["node"] in reach), key=lambda t: (t[1], t[0]["id"]))
        out_cities.append({"city": city, "label": topology.node(city).label, "tiers": [
            {"max_latency_ms": t,
             "sites": [{**row, "latency_ms": ms} for row, ms in near_sites if ms <= t]}
            for t in tiers]})
    return {"tiers_ms": tiers, "hubs": out_hubs, "cities": out_cities}
