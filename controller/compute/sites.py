"""The compute site registry: where the computing is, how much is free, at what price.

Pure and deliberately not thread-safe: the controller service wraps every call in its lock, as
it does for intents. Nothing here touches the network; placement (choosing a site for a demand)
lives in :mod:`controller.compute.placement` and uses :meth:`ComputeRegistry.reserve` /
:meth:`ComputeRegistry.release`.

Capacity accounting is exact. Every quantity of capacity is held as an integer number of
micro-units (``1e-6`` of the site's unit, e.g. 1 TFLOPS when the unit is EFLOPS); a site keeps
its reservations in a dict and an integer running total, so exhausting a site and releasing
everything returns its free capacity to exactly what it was, whatever the order. Demands finer
than a micro-unit are refused rather than rounded to zero.

A site's ``free_capacity`` in a topology file (capacity already in use by others when the file
was written) becomes a fixed ``baseline_used``: free = capacity - baseline_used - reserved.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller.errors import ComputeConflict, ComputeSiteError, NotFound, lookup

if TYPE_CHECKING:
    from controller.compute.metrics import SiteMetrics
    from controller.topology.model import ComputeSite, Host, Topology

__all__ = [
    "KINDS",
    "MICRO",
    "SITE_ID_RE",
    "STATES",
    "ComputeRegistry",
    "Reservation",
    "Site",
]

KINDS: tuple[str, ...] = ("general", "intelligent", "hpc")
STATES: tuple[str, ...] = ("up", "draining", "down")
MICRO = 1_000_000
"""Capacity quantum: quantities are integers of 1/MICRO of the site's unit."""
MAX_CAPACITY = 1e12
"""Largest capacity accepted (in the site's unit); keeps micro-unit integers well inside int64
for the store."""

# Same form as the topology loader accepts: cs:<place>:<name>[:<more>...]
SITE_ID_RE = re.compile(r"^cs:[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)+$")
UNIT_RE = re.compile(r"^[A-Za-z0-9_./\- ]{1,32}$")
# the authority is a host (a name, IPv4, or an IPv6 literal in brackets) and an optional port:
# brackets elsewhere (``http://w]x``) pass a character class yet no URL parser takes them
METRICS_URL_RE = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%!$&'()*+,;=-]+)"
                            r"(:[0-9]{1,5})?(/[!-\"$-~]*)?$")
"""a site's ``metrics_url``: http or https, printable ASCII, no fragment (at most 512
characters); explicit ASCII classes so the API document's pattern means the same to every
regex engine"""
_SITE_FIELDS = ("id", "node", "kind", "capacity", "unit", "price", "host", "state",
                "baseline_used", "metrics_url")
_UPDATABLE = ("node", "kind", "capacity", "unit", "price", "host", "state", "metrics_url")


def to_micro(value: float, what: str = "capacity") -> int:
    """``value`` units as an integer of micro-units; :class:`ComputeSiteError` if not a finite
    number >= 0 and <= MAX_CAPACITY."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ComputeSiteError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ComputeSiteError(f"{what} must be a finite number, got {value!r}")
    if value < 0:
        raise ComputeSiteError(f"{what} must not be negative, got {value!r}")
    if value > MAX_CAPACITY:
        raise ComputeSiteError(f"{what} {value!r} is above the maximum {MAX_CAPACITY:g}")
    return round(value * MICRO)


def from_micro(value: int) -> float:
    return value / MICRO


@dataclass(slots=True)
class Reservation:
    """Capacity held at one site. ``owner`` says for what: ``placement`` or ``service:<name>``."""

    id: str
    site_id: str
    amount_micro: int
    owner: str = "placement"

    @property
    def amount(self) -> float:
        return from_micro(self.amount_micro)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "site_id": self.site_id, "amount": self.amount,
                "amount_micro": self.amount_micro, "owner": self.owner}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reservation:
        try:
            micro = data.get("amount_micro")
            if micro is None:
                micro = to_micro(data["amount"], "amount")
            if isinstance(micro, bool) or not isinstance(micro, int) or micro <= 0:
                raise ComputeSiteError(f"reservation amount must be positive, got {micro!r}")
            return cls(id=str(data["id"]), site_id=str(data["site_id"]), amount_micro=micro,
                       owner=str(data.get("owner", "placement")))
        except KeyError as exc:
            raise ComputeSiteError(f"reservation record lacks {exc.args[0]!r}") from None


@dataclass(slots=True)
class Site:
    """A registered compute site. Quantities are micro-units; the float properties are views."""

    id: str
    node: str
    kind: str
    capacity_micro: int
    unit: str = "PFLOPS"
    price: float = 0.0
    """Price per unit of capacity (per hour)."""
    host: str | None = None
    state: str = "up"
    baseline_used_micro: int = 0
    """Capacity in use by others, outside this controller's reservations."""
    metrics_url: str | None = None
    """where the site serves its metrics as Prometheus text (None: it pushes them, or none)"""
    reserved_micro: int = 0
    reservations: dict[str, int] = field(default_factory=dict)

    @property
    def capacity(self) -> float:
        return from_micro(self.capacity_micro)

    @property
    def free_micro(self) -> int:
        return self.capacity_micro - self.baseline_used_micro - self.reserved_micro

    @property
    def free_capacity(self) -> float:
        return from_micro(self.free_micro)

    @property
    def reserved(self) -> float:
        return from_micro(self.reserved_micro)

    @property
    def baseline_used(self) -> float:
        return from_micro(self.baseline_used_micro)

    def free_fraction_after(self, demand_micro: int) -> float:
        """Free fraction of capacity left after taking ``demand_micro`` (0 for capacity 0)."""
        if self.capacity_micro == 0:
            return 0.0
        return (self.free_micro - demand_micro) / self.capacity_micro

    def to_dict(self) -> dict[str, Any]:
        """The site as a plain dict (for the store and the API); reservations not included."""
        return {"id": self.id, "node": self.node, "kind": self.kind, "capacity": self.capacity,
                "free_capacity": self.free_capacity, "reserved": self.reserved,
                "baseline_used": self.baseline_used, "unit": self.unit, "price": self.price,
                "host": self.host, "state": self.state,
                "reservations": len(self.reservations), "metrics_url": self.metrics_url}


class ComputeRegistry:
    """Compute sites of one topology, with their reservations.

    Every mutating call validates first and changes nothing when it raises:
    :class:`ComputeSiteError` (400) for malformed input, :class:`ComputeConflict` (409) when the
    request clashes with the current state, :class:`NotFound` (404) for unknown ids.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._node_names = {n.name for n in topology.nodes}
        self._sites: dict[str, Site] = {}
        self._reservations: dict[str, Reservation] = {}
        self._metrics: dict[str, SiteMetrics] = {}
        """last good live metrics per site: soft state, never stored"""

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_topology(cls, topology: Topology) -> ComputeRegistry:
        """A registry holding the topology's ``compute_sites`` (all up, nothing reserved)."""
        reg = cls(topology)
        for s in topology.compute_sites:
            reg.add_site(_site_entry_dict(s))
        return reg

    # -- reading --------------------------------------------------------------------------------
    def site(self, site_id: str) -> Site:
        return lookup(self._sites, site_id, "no compute site {!r}")

    def __contains__(self, site_id: object) -> bool:
        return site_id in self._sites

    def __len__(self) -> int:
        return len(self._sites)

    def sites(self, kind: str | None = None, state: str | None = None) -> list[Site]:
        """Sites in registration order, optionally of one kind and/or state."""
        return [s for s in self._sites.values()
                if (kind is None or s.kind == kind) and (state is None or s.state == state)]

    def reservation(self, reservation_id: str) -> Reservation:
        return lookup(self._reservations, reservation_id, "no reservation {!r}")

    def reservations(self, site_id: str | None = None) -> list[Reservation]:
        return [r for r in self._reservations.values()
                if site_id is None or r.site_id == site_id]

    def host_of(self, site_id: str) -> Host | None:
        """The topology host serving the site (its address is where traffic is steered)."""
        site = self.site(site_id)
        return None if site.host is None else self.topology.host(site.host)

    # -- CRUD -----------------------------------------------------------------------------------
    def add_site(self, data: Mapping[str, Any]) -> Site:
        """Register a site from a dict with ``id``, ``node``, ``capacity`` and optionally
        ``kind`` (general), ``unit`` (PFLOPS), ``price`` (0), ``host``, ``state`` (up),
        ``free_capacity`` or ``baseline_used`` (capacity already used by others)."""
        site = self._validated(data, existing=None)
        if site.id in self._sites:
            raise ComputeConflict(f"compute site {site.id!r} already exists")
        self._sites[site.id] = site
        return site

    def update_site(self, site_id: str, changes: Mapping[str, Any]) -> Site:
        """Change some of ``node, kind, capacity, unit, price, host, state`` of a site.

        Refused while reservations exist: a capacity below what is in use, and any change of
        node, kind or unit (they would silently change what the reservations hold)."""
        site = self.site(site_id)
        unknown = sorted(set(changes) - set(_UPDATABLE))
        if unknown:
            raise ComputeSiteError(f"cannot update {', '.join(unknown)} (updatable: "
                                   f"{', '.join(_UPDATABLE)})")
        merged = {**self._as_input(site), **changes}
        new = self._validated(merged, existing=site)
        if site.reservations:
            moved = [f for f in ("node", "kind", "unit") if getattr(new, f) != getattr(site, f)]
            if moved:
                raise ComputeConflict(
                    f"compute site {site_id!r} holds {len(site.reservations)} reservation(s) of "
                    f"{site.reserved:g} {site.unit}: cannot change {', '.join(moved)}; drain it "
                    "and release them first")
        used = site.baseline_used_micro + site.reserved_micro
        if new.capacity_micro < used:
            raise ComputeConflict(
                f"capacity {new.capacity:g} {new.unit} of {site_id!r} is below what is in use "
                f"({from_micro(used):g} {site.unit}: {site.reserved:g} reserved, "
                f"{site.baseline_used:g} used by others)")
        for f in _UPDATABLE:
            if f == "capacity":
                site.capacity_micro = new.capacity_micro
            else:
                setattr(site, f, getattr(new, f))
        return site

    def remove_site(self, site_id: str) -> Site:
        """Unregister a site; refused while it holds reservations."""
        site = self.site(site_id)
        if site.reservations:
            raise ComputeConflict(
                f"compute site {site_id!r} still holds {len(site.reservations)} reservation(s) "
                f"({site.reserved:g} {site.unit}); release them (or mark it down and move them) "
                "first")
        del self._sites[site_id]
        self._metrics.pop(site_id, None)
        return site

    # -- live metrics (controller.compute.metrics) ----------------------------------------------
    def set_metrics(self, site_id: str, m: SiteMetrics) -> None:
        """Keep ``m`` as the site's last good metrics (:class:`NotFound` for an unknown site)."""
        self.site(site_id)
        self._metrics[site_id] = m

    def metrics(self, site_id: str) -> SiteMetrics | None:
        """The site's last good metrics, or None if it never reported (or is unknown)."""
        return self._metrics.get(site_id)

    def adopt_metrics(self, other: ComputeRegistry) -> None:
        """Take ``other``'s metrics of the sites this registry holds (a registry rebuilt from
        the store keeps the live metrics, which the store never holds)."""
        for site_id, m in other._metrics.items():
            if site_id in self._sites:
                self._metrics[site_id] = m

    # -- capacity -------------------------------------------------------------------------------
    def reserve(self, site_id: str, amount: float | int, *, reservation_id: str | None = None,
                owner: str = "placement", micro: bool = False) -> Reservation:
        """Hold ``amount`` units (or micro-units with ``micro=True``) at an up site.

        Raises :class:`ComputeSiteError` for a non-positive amount, :class:`ComputeConflict`
        when the site is not up, lacks the free capacity or the id is taken."""
        site = self.site(site_id)
        if micro:
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise ComputeSiteError(f"demand in micro-units must be an integer, got {amount!r}")
            amount_micro = amount
        else:
            amount_micro = to_micro(amount, "demand")
        if amount_micro <= 0:
            raise ComputeSiteError(f"demand must be at least {1 / MICRO:g} {site.unit}, "
                                   f"got {amount!r}")
        rid = reservation_id if reservation_id is not None else new_id("rsv")
        if rid in self._reservations:
            raise ComputeConflict(f"reservation id {rid!r} is already in use")
        if site.state != "up":
            raise ComputeConflict(f"compute site {site_id!r} is {site.state}")
        if amount_micro > site.free_micro:
            raise ComputeConflict(f"compute site {site_id!r} has {site.free_capacity:g} of "
                                  f"{site.capacity:g} {site.unit} free, "
                                  f"{from_micro(amount_micro):g} asked")
        res = Reservation(id=rid, site_id=site_id, amount_micro=amount_micro, owner=owner)
        site.reservations[rid] = amount_micro
        site.reserved_micro += amount_micro
        self._reservations[rid] = res
        return res

    def release(self, reservation_id: str) -> Reservation:
        """Give a reservation's capacity back to its site (whatever the site's state)."""
        res = self.reservation(reservation_id)
        site = self._sites[res.site_id]
        site.reserved_micro -= site.reservations.pop(reservation_id)
        del self._reservations[reservation_id]
        return res

    # -- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data for the store: ``{"sites": [...], "reservations": [...]}``."""
        return {"sites": [self._as_input(s) for s in self._sites.values()],
                "reservations": [r.to_dict() for r in self._reservations.values()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], topology: Topology) -> ComputeRegistry:
        """Rebuild a registry saved with :meth:`to_dict`, validating everything again.

        Reservations are restored even on sites that are now draining or down (they were made
        when the site was up); over-commitment is still refused."""
        reg = cls(topology)
        for s in data.get("sites", []):
            reg.add_site(s)
        for r in data.get("reservations", []):
            res = Reservation.from_dict(r)
            site = reg.site(res.site_id)
            if res.id in reg._reservations:
                raise ComputeConflict(f"duplicate reservation id {res.id!r}")
            if res.amount_micro > site.free_micro:
                raise ComputeConflict(f"stored reservations over-commit {site.id!r}")
            site.reservations[res.id] = res.amount_micro
            site.reserved_micro += res.amount_micro
            reg._reservations[res.id] = res
        return reg

    # -- validation -----------------------------------------------------------------------------
    @staticmethod
    def _as_input(site: Site) -> dict[str, Any]:
        return {"id": site.id, "node": site.node, "kind": site.kind, "capacity": site.capacity,
                "unit": site.unit, "price": site.price, "host": site.host, "state": site.state,
                "baseline_used": site.baseline_used, "metrics_url": site.metrics_url}

    def _validated(self, data: Mapping[str, Any], existing: Site | None) -> Site:
        if not isinstance(data, Mapping):
            raise ComputeSiteError("a compute site is a mapping of fields")
        extra = sorted(set(data) - set(_SITE_FIELDS) - {"free_capacity", "reserved",
                                                         "reservations"})
        if extra:
            raise ComputeSiteError(f"unknown compute site field(s): {', '.join(extra)}")
        for required in ("id", "node", "capacity"):
            if data.get(required) is None:
                raise ComputeSiteError(f"compute site field {required!r} is required")
        site_id = data["id"]
        if not isinstance(site_id, str) or not SITE_ID_RE.match(site_id) or len(site_id) > 128:
            raise ComputeSiteError(f"bad compute site id {site_id!r}: expected "
                                   "cs:<place>:<name> (letters, digits, '_', '.', '-')")
        node = data["node"]
        if not isinstance(node, str) or node not in self._node_names:
            raise NotFound(f"unknown node {node!r} in topology {self.topology.name!r}")
        kind = data.get("kind", "general")
        if kind not in KINDS:
            raise ComputeSiteError(f"unknown compute kind {kind!r} (one of {', '.join(KINDS)})")
        state = data.get("state", "up")
        if state not in STATES:
            raise ComputeSiteError(f"unknown site state {state!r} (one of {', '.join(STATES)})")
        capacity_micro = to_micro(data["capacity"], "capacity")
        unit = data.get("unit", "PFLOPS")
        if not isinstance(unit, str) or not UNIT_RE.match(unit):
            raise ComputeSiteError(f"bad unit {unit!r}")
        price = data.get("price", 0.0)
        if (isinstance(price, bool) or not isinstance(price, (int, float))
                or not math.isfinite(price) or price < 0):
            raise ComputeSiteError(f"price must be a finite number >= 0, got {price!r}")
        host = data.get("host")
        if host is not None:
            try:
                h = self.topology.host(host) if isinstance(host, str) else None
            except NotFound:
                h = None
            if h is None:
                raise NotFound(f"unknown host {host!r}")
            if h.node != node:
                # both fields valid, they disagree (409: no schema can say it)
                raise ComputeConflict(f"host {host!r} is attached to {h.node!r}, not to the "
                                       f"site's node {node!r}")
        metrics_url = data.get("metrics_url")
        if metrics_url is not None and (not isinstance(metrics_url, str)
                                        or len(metrics_url) > 512
                                        or not METRICS_URL_RE.match(metrics_url)):
            raise ComputeSiteError(f"bad metrics_url {metrics_url!r}: expected an http:// or "
                                   "https:// URL of at most 512 characters")
        if existing is not None:
            baseline = existing.baseline_used_micro
        elif data.get("baseline_used") is not None:
            baseline = to_micro(data["baseline_used"], "baseline_used")
        elif data.get("free_capacity") is not None:
            baseline = capacity_micro - to_micro(data["free_capacity"], "free_capacity")
        else:
            baseline = 0
        if existing is None and not 0 <= baseline <= capacity_micro:
            raise ComputeConflict(f"free capacity of {site_id!r} must be between 0 and its "
                                   f"capacity {from_micro(capacity_micro):g}")
        return Site(id=site_id, node=node, kind=kind, capacity_micro=capacity_micro, unit=unit,
                    price=float(price), host=host, state=state, baseline_used_micro=baseline,
                    metrics_url=metrics_url)


def _site_entry_dict(s: ComputeSite) -> dict[str, Any]:
    return {"id": s.id, "node": s.node, "kind": s.kind, "capacity": s.capacity, "unit": s.unit,
            "price": s.price, "host": s.host, "free_capacity": s.free_capacity}


def new_id(prefix: str) -> str:
    """A fresh random id such as ``pl-3f2a9c1d0b7e``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
