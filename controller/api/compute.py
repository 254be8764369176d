"""REST endpoints of compute steering (``docs/compute.md``), as an APIRouter that
:func:`controller.api.rest.create_app` includes with its own read/write dependencies:

* ``/api/v1/compute-sites`` (GET list, POST) and ``/compute-sites/{site_id}`` (GET, PATCH,
  DELETE): the site registry. Marking a site ``down`` moves its anycast clients (the answer
  lists the moves).
* ``/api/v1/compute-sites/{site_id}/metrics`` (PUT): a site's live metrics (role ``site`` for
  its own site, or ``admin``); 400 for nonsense, which keeps the last good metrics. Sites
  are shown with a ``metrics`` block (age, stale, CATS levels, scrape state).
* ``/api/v1/placements`` (POST -> 201 with site, path, latency, price; 409 ``no_capacity`` with
  ``reasons`` and ``candidates``; GET) and ``/placements/{id}`` (GET, DELETE releases).
* ``/api/v1/services`` (POST, GET), ``/services/{name}`` (GET, DELETE),
  ``/services/{name}/assignments`` (GET; POST assigns a client), and
  ``/services/{name}/assignments/{client}`` (DELETE).
* ``/api/v1/latency-circles/sites``: per hub the cities in each tier, per city the sites it can
  use in each tier, with live site state.

Errors use the API's one shape (``error``, ``detail``), from :mod:`controller.errors`:
400 malformed (bad id, unknown node), 404 unknown, 409 conflicts and no capacity, 422 schema.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_type_hints

from fastapi import APIRouter, Query, Request
from fastapi.params import Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic.json_schema import JsonDict, SkipJsonSchema
from starlette.concurrency import run_in_threadpool

from controller.compute.anycast import Assignment, Service
from controller.compute.metrics import MAX_FIELDS
from controller.compute.placement import TIERS_MS, Placement, resolve_bound
from controller.compute.sites import METRICS_URL_RE, MICRO, SITE_ID_RE, UNIT_RE
from controller.errors import ComputeSiteError, NoCapacity

if TYPE_CHECKING:
    from controller.compute.steering import Steering

__all__ = ["compute_router"]

Kind = Literal["general", "intelligent", "hpc"]
State = Literal["up", "draining", "down"]
Policy = Literal["nearest", "cheapest", "least-loaded", "cats"]
Tier = Literal["local", "regional", "national"]
_Num = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]
# a demand is held in micro-units (controller/compute/sites.py): less than one is refused
_Positive = Annotated[float, Field(ge=1 / MICRO, le=1e12, allow_inf_nan=False)]
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_UNICAST_IPV4 = rf"^(22[0-3]|2[01][0-9]|1[0-9]{{2}}|[1-9][0-9]?)(\.{_OCTET}){{3}}$"
"""dotted-quad IPv4, first octet 1-223: not 0.0.0.0, multicast or broadcast (what
``anycast.Service`` refuses)"""
_ONE_BOUND: JsonDict = {"oneOf": [{"required": ["max_latency_ms"]}, {"required": ["tier"]}]}
"""exactly one of max_latency_ms and tier, stated in the document"""
_Text = Annotated[str, Field(min_length=1, max_length=128)]
_MetricsUrl = Annotated[str, Field(max_length=512, pattern=METRICS_URL_RE.pattern,
                                   description="http(s) URL serving the site's metrics as "
                                               "Prometheus text, scraped every "
                                               "compute.metrics_interval_s")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_null(value: Any) -> Any:
    """An optional field the document declares non-nullable: leave it out or give a value."""
    if value is None:
        raise ValueError("leave the field out or give a value (null is not one)")
    return value


class SiteIn(_Body):
    """A compute site. ``free_capacity``: capacity already used by others is capacity minus
    this (default: all free)."""

    id: Annotated[str, Field(max_length=128, pattern=SITE_ID_RE.pattern)] = Field(
        description="cs:<place>:<name>, e.g. cs:gansu-qingyang:ai-01")
    node: _Text
    capacity: _Num
    kind: Kind = "general"
    unit: Annotated[str, Field(pattern=UNIT_RE.pattern)] = "PFLOPS"
    price: _Num = Field(default=0.0, description="per unit of capacity (per hour)")
    host: _Text | None = Field(default=None, description="the host anycast traffic goes to")
    state: State = "up"
    free_capacity: _Num | None = None
    metrics_url: _MetricsUrl | None = None


class SitePatch(_Body):
    """Fields to change; node, kind and unit only while the site holds no reservations.
    Only ``host`` may be null (no anycast host)."""

    node: _Text | SkipJsonSchema[None] = None
    capacity: _Num | SkipJsonSchema[None] = None
    kind: Kind | SkipJsonSchema[None] = None
    unit: Annotated[str, Field(pattern=UNIT_RE.pattern)] | SkipJsonSchema[None] = None
    price: _Num | SkipJsonSchema[None] = None
    host: _Text | None = None
    state: State | SkipJsonSchema[None] = None
    metrics_url: _MetricsUrl | None = None

    _refuse_null = field_validator("node", "capacity", "kind", "unit", "price", "state",
                                   mode="before")(_not_null)


class ReservationOut(BaseModel):
    id: str
    site_id: str
    amount: float
    amount_micro: int
    owner: str


class MoveOut(BaseModel):
    service: str
    client_host: str
    from_site: str
    to_site: str | None
    reason: str
    latency_ms: float | None


class LevelsOut(BaseModel):
    raw: dict[str, Any] = Field(description="level 0: the values as reported")
    categories: dict[str, float | None] = Field(
        description="level 1: compute, capacity (null when not reported), health; 0..1, "
                    "1 best (docs/compute.md)")
    score: float = Field(description="level 2: one score, 0..1, 1 best")


class ScrapeOut(BaseModel):
    url: str
    error: str | None = Field(description="why the last scrape failed (null: it worked)")
    last_success_age_s: float | None


class SiteMetricsOut(BaseModel):
    source: Literal["push", "pull"] | None = Field(description="null: never reported")
    age_s: float | None
    stale: bool = Field(description="older than three intervals, or never reported")
    interval_s: float
    stale_policy: str
    levels: LevelsOut | None
    scrape: ScrapeOut | None = None


class SiteMetricsUpdatedOut(BaseModel):
    id: str
    metrics: SiteMetricsOut


_METRICS_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {
        "type": "object", "required": ["utilisation", "compute_delay_ms", "healthy"],
        "properties": {
            "utilisation": {"type": "number", "minimum": 0, "maximum": 1},
            "compute_delay_ms": {"type": "number", "minimum": 0, "maximum": 3600000},
            "free_capacity": {"type": ["number", "null"], "minimum": 0, "maximum": 1e12},
            "healthy": {"type": "boolean"}},
        "additionalProperties": {"type": ["number", "string", "boolean", "null"],
                                 "maxLength": 256},
        "propertyNames": {"minLength": 1, "maxLength": 64},
        "maxProperties": MAX_FIELDS}}}}}
"""the document's schema of a metrics report; the route checks it itself
(:func:`~controller.compute.metrics.parse_metrics`) so nonsense answers 400 naming the field"""


class SiteOut(BaseModel):
    id: str
    node: str
    kind: str
    capacity: float
    free_capacity: float
    reserved: float
    baseline_used: float
    unit: str
    price: float
    host: str | None
    state: str
    reservations: int
    metrics_url: str | None = None
    metrics: SiteMetricsOut | None = Field(
        default=None, description="live metrics: age, stale, CATS levels, scrape state")


class SiteDetailOut(SiteOut):
    reservation_list: list[ReservationOut]


class SiteUpdatedOut(SiteOut):
    moves: list[MoveOut] = Field(description="anycast clients moved off the site (down)")


class DeletedOut(BaseModel):
    id: str
    deleted: bool


class PlacementIn(_Body):
    """A demand to place: exactly one of ``max_latency_ms`` and ``tier`` (local 1 ms,
    regional 5 ms, national 20 ms). Policy default ``nearest``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_ONE_BOUND)

    source: _Text = Field(description="a node, a host name or a host's IPv4 address")
    demand: _Positive = Field(description="units of capacity (the site's unit)")
    kind: Kind
    max_latency_ms: _Positive | SkipJsonSchema[None] = None
    tier: Tier | SkipJsonSchema[None] = None
    min_bandwidth_mbps: _Num = 0.0
    policy: Policy = "nearest"

    _refuse_null = field_validator("max_latency_ms", "tier", mode="before")(_not_null)


class CandidateOut(BaseModel):
    """One site considered for a choice, and why it won or lost."""

    site: str
    network_ms: float | None = Field(
        description="least network latency from the source's node (null: beyond the bound "
                    "or unreachable)")
    compute_ms: float | None = Field(
        description="the site's reported compute delay (null: no metrics that count)")
    score: float | None = Field(
        description="the policy's first sort key, smaller is better (cats: network_ms + "
                    "compute_ms; nearest: network ms; null: not ranked)")
    status: str = Field(
        description="chosen, or why it lost: worse, over_bound, stale, unhealthy, "
                    "no_capacity, no_bandwidth, no_host, down, draining, excluded")


def _with_candidates(record: type, name: str) -> type[BaseModel]:
    """``record``'s fields plus ``candidates`` (the answer of a choice)."""
    hints = get_type_hints(record)
    fields: dict[str, Any] = {f.name: (hints[f.name], ...) for f in dataclass_fields(record)}
    return create_model(name, candidates=(list[CandidateOut], Field(
        default_factory=list, description="every site considered, the chosen one first")),
        measured_ms=(float | None, Field(
            default=None, description="assignments: the measured latency of the path now "
                                      "(measured link delays, configured where none; "
                                      "compare with latency_ms and the service's bound)")),
        sla=(dict[str, Any] | None, Field(
            default=None, description="assignments: SLA monitoring of the client against its "
            "service's bound: state (ok, violated), measured_ms (smoothed: the path's "
            "measured latency plus, under cats, the site's reported compute delay), "
            "last_sample_ms, bound_ms, unmeasured_links, violations (null: not sampled yet)")),
        **fields)


PlacementOut = _with_candidates(Placement, "PlacementOut")
AssignmentOut = _with_candidates(Assignment, "AssignmentOut")


class NoCapacityBody(BaseModel):
    error: str = Field(description="no_capacity")
    detail: str
    reasons: list[str] = Field(description="why nothing fits, one line each")
    candidates: list[dict[str, Any]] = Field(
        description="per site: site, latency_ms, status (full, down, draining, no_bandwidth, "
                    "beyond_bound, ...), free_capacity, capacity, unit")
    best_latency_ms: float | None = None


class ErrorOut(BaseModel):
    error: str
    detail: str
    errors: list[dict[str, Any]] | None = None
    best_latency_ms: float | None = None


class ServiceIn(_Body):
    """An anycast service: exactly one of ``max_latency_ms`` and ``tier``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_ONE_BOUND)

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    anycast_ip: Annotated[str, Field(pattern=_UNICAST_IPV4)]
    kind: Kind
    demand_per_client: _Positive
    max_latency_ms: _Positive | SkipJsonSchema[None] = None
    tier: Tier | SkipJsonSchema[None] = None
    policy: Policy = "nearest"

    _refuse_null = field_validator("max_latency_ms", "tier", mode="before")(_not_null)


class ServiceOut(BaseModel):
    name: str
    anycast_ip: str
    kind: str
    demand_per_client: float
    max_latency_ms: float
    policy: str
    clients: int


class AssignIn(_Body):
    client: _Text = Field(description="the client host (name or IPv4)")


class ServiceDeletedOut(BaseModel):
    name: str
    deleted: bool
    released: list[Assignment]


_E: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 404, 409, 422, 500)}
_E_PLACE: dict[int | str, dict[str, Any]] = {**_E, 409: {"model": NoCapacityBody,
                        "description": "no site fits (no_capacity: reasons, candidates) or a "
                                       "conflict"}}


def _no_capacity(exc: NoCapacity) -> JSONResponse:
    return JSONResponse(status_code=409, content={
        "error": exc.code, "detail": str(exc), "reasons": exc.reasons,
        "candidates": exc.candidates, "best_latency_ms": exc.best_latency_ms})


def _service_view(s: Service, clients: int) -> dict[str, Any]:
    return {**s.to_dict(), "clients": clients}


def compute_router(steering: Steering, *, read: list[Depends],
                   write: list[Depends]) -> APIRouter:
    """The compute endpoints; ``read``/``write`` are the app's auth dependencies."""
    r = APIRouter(prefix="/api/v1", tags=["compute"])

    def shown(site: dict[str, Any]) -> dict[str, Any]:
        plane = steering.metrics_plane
        return site if plane is None else plane.decorate(site)

    # -- sites ------------------------------------------------------------------------------
    @r.get("/compute-sites", response_model=list[SiteOut], responses=_E, dependencies=read)
    def list_sites(kind: Kind | None = None, state: State | None = None) -> list[dict[str, Any]]:
        """Registered sites in registration order (optionally of one kind / state)."""
        return [shown(s) for s in steering.sites(kind=kind, state=state)]

    @r.post("/compute-sites", status_code=201, response_model=SiteOut, responses=_E,
            dependencies=write)
    def add_site(body: SiteIn) -> dict[str, Any]:
        """Register a site (persisted). 400 bad id / unknown node or host; 409 duplicate."""
        return shown(steering.add_site(body.model_dump(exclude_none=True)))

    @r.get("/compute-sites/{site_id}", response_model=SiteDetailOut, responses=_E,
           dependencies=read)
    def show_site(site_id: str) -> dict[str, Any]:
        """One site with its reservations (placements and anycast clients)."""
        return shown(steering.site(site_id))

    @r.patch("/compute-sites/{site_id}", response_model=SiteUpdatedOut, responses=_E,
             dependencies=write)
    def update_site(site_id: str, body: SitePatch) -> dict[str, Any]:
        """Change fields (e.g. ``{"state": "down"}``). 409 when the capacity would fall below
        what is in use, or node/kind/unit change while reservations exist. A site marked
        down moves its anycast clients to the next best site (``moves``)."""
        changes = body.model_dump(exclude_unset=True)
        site, moves = steering.update_site(site_id, changes)
        return {**shown(site), "moves": [asdict(m) for m in moves]}

    @r.put("/compute-sites/{site_id}/metrics", response_model=SiteMetricsUpdatedOut,
           responses=_E, dependencies=write, openapi_extra=_METRICS_BODY)
    async def put_metrics(site_id: str, request: Request) -> dict[str, Any]:
        """A site's live metrics (``utilisation`` 0..1, ``compute_delay_ms`` >= 0,
        ``free_capacity``, ``healthy``, other scalar fields kept). Needs a ``site`` token of
        this site, or ``admin``. 400 naming the field for nonsense (negative or NaN delay,
        text, utilisation outside 0..1): the site keeps its last good metrics."""
        plane = steering.metrics_plane
        if plane is None:
            raise ComputeSiteError("this controller takes no site metrics")
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ComputeSiteError("the body is not JSON") from None
        return await run_in_threadpool(plane.push, site_id, body)

    @r.delete("/compute-sites/{site_id}", response_model=DeletedOut, responses=_E,
              dependencies=write)
    def delete_site(site_id: str) -> dict[str, Any]:
        """Unregister a site; 409 while it holds reservations."""
        steering.remove_site(site_id)
        return {"id": site_id, "deleted": True}

    # -- placements -------------------------------------------------------------------------
    @r.post("/placements", status_code=201, response_model=PlacementOut,
            responses=_E_PLACE, dependencies=write)
    def place(body: PlacementIn) -> Any:
        """Choose a site for the demand by the policy and reserve the capacity; the answer's
        ``candidates`` say, per site, network ms, compute ms, score and why it lost. 409
        ``no_capacity`` with ``reasons`` and per-site ``candidates`` when nothing fits."""
        try:
            p = steering.place(body.source, body.demand, body.kind,
                               max_latency_ms=body.max_latency_ms, tier=body.tier,
                               min_bandwidth_mbps=body.min_bandwidth_mbps, policy=body.policy)
        except NoCapacity as exc:
            return _no_capacity(exc)
        return {**p.to_dict(), "candidates": steering.placement_explained(p.id)}

    @r.get("/placements", response_model=list[Placement], responses=_E, dependencies=read)
    def list_placements() -> list[dict[str, Any]]:
        return [p.to_dict() for p in steering.placements()]

    @r.get("/placements/{placement_id}", response_model=Placement, responses=_E,
           dependencies=read)
    def show_placement(placement_id: str) -> dict[str, Any]:
        return steering.placement(placement_id).to_dict()

    @r.delete("/placements/{placement_id}", response_model=Placement, responses=_E,
              dependencies=write)
    def release(placement_id: str) -> dict[str, Any]:
        """Release the placement's capacity; answers the released placement."""
        return steering.release(placement_id).to_dict()

    # -- services ---------------------------------------------------------------------------
    @r.post("/services", status_code=201, response_model=ServiceOut, responses=_E,
            dependencies=write)
    def add_service(body: ServiceIn) -> dict[str, Any]:
        """Create an anycast service. 409 when the name or address is taken (or is a
        host's address)."""
        bound = resolve_bound(body.max_latency_ms, body.tier)
        svc = steering.add_service(Service(body.name, body.anycast_ip, body.kind,
                                           body.demand_per_client, bound, body.policy))
        return _service_view(svc, 0)

    @r.get("/services", response_model=list[ServiceOut], responses=_E, dependencies=read)
    def list_services() -> list[dict[str, Any]]:
        return [_service_view(s, n) for s, n in steering.services()]

    @r.get("/services/{name}", response_model=ServiceOut, responses=_E, dependencies=read)
    def show_service(name: str) -> dict[str, Any]:
        return _service_view(*steering.get_service(name))

    @r.delete("/services/{name}", response_model=ServiceDeletedOut, responses=_E,
              dependencies=write)
    def delete_service(name: str) -> dict[str, Any]:
        """Remove the service and release every client's capacity."""
        return {"name": name, "deleted": True, "released": steering.remove_service(name)}

    @r.get("/services/{name}/assignments", response_model=list[AssignmentOut],  # type: ignore[valid-type]
           responses=_E, dependencies=read)
    def assignments(name: str) -> list[dict[str, Any]]:
        """Which site each client of the service is steered to, with the candidates as the
        policy sees them now (network ms, compute ms, score, why each lost; a ``chosen``
        site other than the client's is a load move held back by dampening or affinity)."""
        explained = steering.candidates(name)
        out = []
        for a in steering.assignments(name):
            measured = steering.service.path_measured_ms(a["link_ids"])
            out.append({**a, "candidates": explained.get(a["client_host"], []),
                        "measured_ms": None if measured is None else round(measured[0], 3)})
        return out

    @r.post("/services/{name}/assignments", response_model=AssignmentOut,
            responses=_E_PLACE, dependencies=write)
    def assign(name: str, body: AssignIn) -> Any:
        """The client's site: kept while it is up or draining and within the bound (sticky),
        else a new choice by the service's policy (capacity reserved). 409 ``no_capacity``
        with reasons when no site can take the client."""
        try:
            a = steering.assign(name, body.client)
        except NoCapacity as exc:
            return _no_capacity(exc)
        return {**a, "candidates": steering.decision(name, a["client_host"])}

    @r.delete("/services/{name}/assignments/{client}", response_model=Assignment,
              responses=_E, dependencies=write)
    def unassign(name: str, client: str) -> dict[str, Any]:
        """Forget a client's assignment and release its capacity."""
        return steering.unassign(name, client)

    # -- latency circles with sites ---------------------------------------------------------
    @r.get("/latency-circles/sites", responses=_E, dependencies=read)
    def circles_sites(
            city: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
            max_latency_ms: Annotated[float | None, Query(gt=0, le=1e6)] = None,
    ) -> dict[str, Any]:
        """For each national hub the cities within each tier (1, 5, 20 ms by default), and
        for each city (or only ``city``) the sites it can use within each tier (kind, state,
        free capacity, latency), nearest first."""
        if max_latency_ms is not None and not math.isfinite(max_latency_ms):
            raise ComputeSiteError("max_latency_ms must be a finite number")
        tiers = [max_latency_ms] if max_latency_ms is not None else sorted(
            set(TIERS_MS.values()))
        return steering.circles(tiers_ms=tiers, cities=[city] if city is not None else None)

    return r
