"""Placement of compute demands and latency circles (pure); anycast services build on it
(:mod:`.anycast`).

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
    A site with live metrics counts as no freer than its reported ``utilisation`` says (the
    free fraction is the smaller of the two): reservations say what was promised, the site
    what it is doing.
``cats``
    least end-to-end delay: the least network latency to the site plus the site's reported
    ``compute_delay_ms`` (:mod:`.metrics`), within the bound, which is then end to end;
    ties by utilisation, then price, then id. Only sites with fresh, healthy metrics are
    candidates; the path is the least-latency one (the delay ranked is the delay installed).

Under every policy a site whose metrics say it is unhealthy takes no new work, and one whose
metrics went stale takes none either (``stale_policy`` ``no_new_clients`` or ``down``; a site
that never reported is judged by the other policies as before).

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

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Self

from controller.compute.metrics import SiteMetrics, is_fresh
from controller.compute.sites import (
    KINDS,
    ComputeRegistry,
    Site,
    from_micro,
    new_id,
    to_micro,
)
from controller.errors import ComputeConflict, ComputeSiteError, NoCapacity, NotFound, lookup
from controller.network.explain import fmt_ms

if TYPE_CHECKING:
    import pathcore
    from controller.topology.model import Host, Topology

__all__ = [
    "CIRCLE_TIERS_MS",
    "DEFAULT_POLICY",
    "LOSS_REASONS",
    "POLICIES",
    "STATIC_POLICIES",
    "TIERS_MS",
    "Choice",
    "PathRecord",
    "Placement",
    "Scheduler",
    "latency_circles",
    "policy_key",
    "resolve_bound",
]

TIERS_MS: dict[str, float] = {"local": 1.0, "regional": 5.0, "national": 20.0}
CIRCLE_TIERS_MS: tuple[float, ...] = (1.0, 5.0, 20.0)
STATIC_POLICIES: tuple[str, ...] = ("nearest", "cheapest", "least-loaded")
"""the policies on the registered data alone (no live metrics)"""
POLICIES: tuple[str, ...] = (*STATIC_POLICIES, "cats")
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


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ComputeSiteError(f"unknown policy {policy!r} (one of {', '.join(POLICIES)})")
    return policy


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ComputeSiteError(f"unknown compute kind {kind!r} (one of {', '.join(KINDS)})")
    return kind


def _check_bandwidth(bw: float) -> float:
    if (isinstance(bw, bool) or not isinstance(bw, (int, float)) or not math.isfinite(bw)
            or bw < 0):
        raise ComputeSiteError(f"min_bandwidth_mbps must be a finite number >= 0, got {bw!r}")
    return float(bw)


STALE_POLICIES: tuple[str, ...] = ("no_new_clients", "down", "use_last")
LOSS_REASONS: tuple[str, ...] = ("worse", "over_bound", "stale", "unhealthy", "no_capacity",
                                 "no_bandwidth", "no_host", "down", "draining", "excluded")
"""why a candidate site was not chosen (``Choice.explain``)"""


def policy_key(policy: str, site: Site, latency_ms: float, demand_micro: int,
               metrics: SiteMetrics | None = None) -> tuple[Any, ...]:
    """Sort key of a candidate site under ``policy`` (smaller is better); ``cats`` needs the
    site's ``metrics``. The first element is the candidate's score in explanations."""
    if policy == "cats":
        if metrics is None:
            raise ComputeSiteError(f"policy cats needs metrics of site {site.id}")
        return (latency_ms + metrics.compute_delay_ms, metrics.utilisation, site.price, site.id)
    if policy == "nearest":
        return (latency_ms, site.price, site.id)
    if policy == "cheapest":
        return (site.price * from_micro(demand_micro), latency_ms, site.id)
    if policy == "least-loaded":
        free = site.free_fraction_after(demand_micro)
        if metrics is not None:
            free = min(free, 1.0 - metrics.utilisation)
        return (-free, latency_ms, site.id)
    raise ComputeSiteError(f"unknown policy {policy!r}")


Candidate = tuple[str, float | None, float | None, float | None, str]
"""(site id, network ms, compute ms, score, status) of one site considered for a demand"""


@dataclass(frozen=True, slots=True)
class Choice:
    """A site chosen for a demand (nothing reserved yet), with every site considered."""

    site: Site
    path: pathcore.Path
    least_latency_ms: float
    compute_delay_ms: float | None = None
    """the chosen site's reported compute delay (None: it reports none)"""
    candidates: tuple[Candidate, ...] = ()
    """the chosen site first, then the others in policy order, then those not eligible"""

    @property
    def latency_ms(self) -> float:
        return self.path.latency_ms

    def explain(self) -> list[dict[str, Any]]:
        """Per site considered: ``site``, ``network_ms`` (least latency from the source; None
        beyond the bound or unreachable), ``compute_ms`` (reported compute delay, None if
        none), ``score`` (the policy's first sort key: for ``cats`` the end-to-end ms) and
        ``status``: ``chosen`` or why it lost (:data:`LOSS_REASONS`)."""
        return [{"site": sid, "network_ms": net, "compute_ms": comp, "score": score,
                 "status": status} for sid, net, comp, score, status in self.candidates]


class PathRecord:
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
class Placement(PathRecord):
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
                 node_up: Callable[[str], bool] | None = None,
                 metrics_interval_s: float = 5.0, stale_policy: str = "no_new_clients",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.topology: Topology = registry.topology
        self.graph = graph
        self.node_up = node_up
        self.metrics_interval_s = metrics_interval_s
        """sites report this often; metrics older than three intervals are stale"""
        if stale_policy not in STALE_POLICIES:
            raise ComputeSiteError(f"unknown stale_policy {stale_policy!r}")
        self.stale_policy = stale_policy
        self.clock = clock
        """monotonic seconds, the time metrics are judged at when a call gives no ``now``"""
        self._placements: dict[str, Placement] = {}
        self.explained: dict[str, list[dict[str, Any]]] = {}
        """placement id -> :meth:`Choice.explain` of its choice (in memory only)"""

    # -- live metrics ---------------------------------------------------------------------------
    def live_metrics(self, site: Site, now: float, policy: str
                     ) -> tuple[SiteMetrics | None, str | None]:
        """``(metrics, blocker)`` of a site for new work at ``now``: the metrics that count
        (None when none do) and ``stale`` / ``unhealthy`` when the site may take no new work.
        ``cats`` needs fresh metrics (a site that never reported is ``stale``); the other
        policies refuse a site whose metrics went stale (unless ``stale_policy`` is
        ``use_last``) and judge a site that never reported by its static data."""
        m = self.registry.metrics(site.id)
        if m is None:
            return None, "stale" if policy == "cats" else None
        if not is_fresh(m, now, self.metrics_interval_s) and (
                policy == "cats" or self.stale_policy != "use_last"):
            return None, "stale"
        if not m.healthy:
            return m, "unhealthy"
        return m, None

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
               source_label: str | None = None, now: float | None = None,
               credit: Mapping[str, int] | None = None) -> Choice:
        """The best site for the demand (nothing reserved); :class:`NoCapacity` with reasons.
        ``now``: the time site metrics are judged at (default ``self.clock()``); ``credit``:
        micro-units per site counted as free (a client's own reservation, when it is
        weighed against moving)."""
        g, reg = self.graph, self.registry
        label = source_label or source_node
        excluded = set(exclude)
        now = self.clock() if now is None else now
        cats = policy == "cats"
        of_kind = reg.sites(kind=kind)
        if not of_kind:
            raise NoCapacity([f"no {kind} compute site is registered"])
        reach = g.within_latency(source_node, bound_ms)
        node_up = self.node_up
        usable: list[tuple[tuple[Any, ...], Site, float, float | None]] = []
        blocked: list[tuple[Site, str, str, float, float | None]] = []
        in_bound = 0
        for site in of_kind:
            lat = reach.get(site.node)
            if lat is None or (node_up is not None and not node_up(site.node)):
                continue
            in_bound += 1
            m, blocker = self.live_metrics(site, now, policy)
            compute = None if m is None else m.compute_delay_ms
            if site.state != "up":
                blocked.append((site, site.state, site.state, lat, compute))
            elif site.id in excluded:
                blocked.append((site, "excluded", "being left", lat, compute))
            elif blocker is not None:
                blocked.append((site, blocker, "stale metrics" if blocker == "stale"
                                else "reports unhealthy", lat, compute))
            elif site.free_micro + (credit.get(site.id, 0) if credit else 0) < demand_micro:
                blocked.append((site, "no_capacity", f"free {site.free_capacity:g} of "
                                f"{site.capacity:g} {site.unit}", lat, compute))
            elif need_host and site.host is None:
                blocked.append((site, "no_host", "no host to steer traffic to", lat, compute))
            elif cats and m is not None and lat + m.compute_delay_ms > bound_ms:
                blocked.append((site, "over_bound", f"network {fmt_ms(lat)} + compute "
                                f"{fmt_ms(m.compute_delay_ms)} over the bound", lat, compute))
            else:
                usable.append((policy_key(policy, site, lat, demand_micro, m), site, lat,
                               compute))
        usable.sort(key=lambda t: t[0])
        no_path: list[tuple[Site, float]] = []
        for i, (key, site, lat, compute) in enumerate(usable):
            # cats installs the least-latency path within what the compute delay leaves of
            # the end-to-end bound; the other policies the least-cost path within the bound
            path = g.constrained_path(
                source_node, site.node,
                max_latency_ms=bound_ms - compute if cats and compute is not None else bound_ms,
                min_bandwidth_mbps=min_bandwidth_mbps, weight="latency" if cats else "cost")
            if path is not None:
                explained: list[Candidate] = [(site.id, lat, compute, key[0], "chosen")]
                explained += [(s.id, la, c, k[0], "worse") for k, s, la, c in usable[i + 1:]]
                explained += [(s.id, la, None, None, "no_bandwidth") for s, la in no_path]
                explained += [(s.id, la, c, None, st) for s, st, _, la, c in blocked]
                seen = {c[0] for c in explained}
                explained += [(s.id, None, None, None, "down" if node_up is not None
                               and not node_up(s.node) else "over_bound")
                              for s in of_kind if s.id not in seen]
                return Choice(site=site, path=path, least_latency_ms=lat,
                              compute_delay_ms=compute, candidates=tuple(explained))
            no_path.append((site, lat))
        raise self._no_capacity(label, source_node, kind, bound_ms, min_bandwidth_mbps,
                                of_kind, in_bound, blocked, no_path)

    def _no_capacity(self, label: str, source_node: str, kind: str, bound_ms: float,
                     bw: float, of_kind: Sequence[Site], in_bound: int,
                     blocked: list[tuple[Site, str, str, float, float | None]],
                     no_path: list[tuple[Site, float]]) -> NoCapacity:
        reasons: list[str] = []
        candidates: list[dict[str, object]] = []
        old_names = {"no_capacity": "full", "excluded": "being left",
                     "no_host": "no host to steer traffic to"}
        for site, status, _why, lat, compute in blocked:
            candidates.append({"site": site.id, "latency_ms": lat,
                               "status": old_names.get(status, status), "compute_ms": compute,
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
                               "up: " + ", ".join(f"{s.id} ({why})" for s, _, why, _, _ in blocked))
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
              policy: str = DEFAULT_POLICY, placement_id: str | None = None,
              now: float | None = None) -> Placement:
        """Choose a site for ``demand`` units of ``kind`` computing near ``source`` (node, host
        name or host IP) and reserve the capacity. See the module docstring for the rules.

        Raises :class:`ComputeSiteError` (bad input), :class:`NotFound` (unknown source),
        :class:`ComputeConflict` (placement id in use), :class:`NoCapacity` (nothing fits)."""
        bound = resolve_bound(max_latency_ms, tier)
        check_kind(kind)
        check_policy(policy)
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
                             policy=policy, source_label=label, now=now)
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
        self.explained[pid] = choice.explain()
        return placement

    def release(self, placement_id: str) -> Placement:
        """Free a placement's capacity; :class:`NotFound` if there is no such placement."""
        placement = self.placement(placement_id)
        self.registry.release(placement_id)
        del self._placements[placement_id]
        self.explained.pop(placement_id, None)
        return placement

    def placement(self, placement_id: str) -> Placement:
        return lookup(self._placements, placement_id, "no placement {!r}")

    def placements(self) -> list[Placement]:
        return list(self._placements.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the store: the registry (sites, reservations) and the placements."""
        return {"registry": self.registry.to_dict(),
                "placements": [p.to_dict() for p in self._placements.values()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], topology: Topology, graph: pathcore.Graph, *,
                  node_up: Callable[[str], bool] | None = None, **kw: Any) -> Scheduler:
        """Rebuild from :meth:`to_dict`. Every placement must have its reservation. ``kw``:
        the other arguments of the constructor (metrics interval, stale policy, clock)."""
        reg = ComputeRegistry.from_dict(data.get("registry", {}), topology)
        sched = cls(reg, graph, node_up=node_up, **kw)
        for d in data.get("placements", []):
            p = Placement.from_dict(d)
            res = reg.reservation(p.id)
            if res.site_id != p.site_id:
                raise ComputeConflict(f"placement {p.id!r} names site {p.site_id!r} but its "
                                      f"reservation is at {res.site_id!r}")
            sched._placements[p.id] = p
        return sched


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
