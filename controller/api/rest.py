"""The REST API: FastAPI under ``/api/v1`` (OpenAPI at ``/docs`` and ``/openapi.json``),
served by uvicorn in a daemon thread of the controller process, beside os-ken.

* Reads (``GET``) are open by default when the API listens on loopback: the operators on the
  box and a local Prometheus scrape without ceremony, and nothing outside the machine can
  reach the port. ``read_open=False`` (what :func:`controller.main.build_controller` passes
  for a non-loopback address) requires the token for reads too.
* Writes (``POST``/``DELETE``) need ``Authorization: Bearer <token>``, compared in constant
  time. The token comes from ``--api-token-file``, else ``$CPN_API_TOKEN``, else
  ``<state-dir>/api-token`` (generated at first start, mode 0600, reused after).
* Errors have one JSON shape, ``{"error": code, "detail": text}`` (plus ``errors`` for
  validation failures and ``best_latency_ms`` for infeasible routes), mapped once from
  :mod:`controller.errors` (``CpnError.http_status`` / ``.code``).
* The cluster (:class:`~controller.cluster.view.ClusterView`; a controller running alone
  gets :class:`~controller.cluster.view.Standalone`): ``/cluster`` shows it, ``/health``
  summarises it, and one ASGI layer (:class:`ClusterGate`) around every route refuses writes
  with 503 ``cluster_unavailable`` while the member is not writable (before any handler runs,
  so nothing changes) and marks every answer ``X-CPN-Stale: true`` while its reads may lag
  the cluster.
* Only HTTP is translated here: reads go to the
  :class:`~controller.network.service.ControllerService`'s read views, intent writes to
  :class:`~controller.operations.IntentOperations` (core and store kept in agreement),
  compute steering to :class:`~controller.compute.steering.Steering`. The app is built by
  :func:`create_app` from those parts; :func:`controller.main.build_controller` assembles
  them and serves the app with :func:`serve_in_thread`.

Most endpoints are sync and run in FastAPI's thread pool (writes wait for barriers);
``/paths`` is async because its answer is microseconds of work under the service lock.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# imported for its side effect: the cluster's counters join the process registry that
# /metrics serves, so a scrape shows them (at zero) on a controller running alone as well
import controller.cluster.metrics  # noqa: F401
from controller.api.audit import AuditLayer, AuditTrail, audit_router
from controller.api.auth import ApiAuth, WriteRateLimiter, document_auth
from controller.api.compute import compute_router
from controller.api.metrics import CONTENT_TYPE, Metrics
from controller.api.openapi import ERROR_REF, edit_operations
from controller.api.schemas import (
    CLUSTER_UNAVAILABLE_DOC,
    ERRORS,
    LIVE_ERRORS,
    ClusterOut,
    HealthOut,
    IntentBatchIn,
    IntentDeletedOut,
    IntentDetailOut,
    IntentIn,
    IntentOut,
    PathsOut,
    ReadSource,
)
from controller.api.tokens import TokenRegistry
from controller.api.webmap import web_router
from controller.cluster.view import ClusterView, Standalone
from controller.errors import (
    BadRequest,
    ClusterUnavailable,
    Conflict,
    CpnError,
    InfeasibleRoute,
    NotFound,
    RateLimited,
    SwitchUnavailable,
)
from controller.network.flows import FlowEntry
from controller.network.intents import Intent
from controller.network.measure import MEASUREMENT_SCHEMA
from controller.network.openflow import PORT_COUNTERS

if TYPE_CHECKING:
    from controller.compute.steering import Steering
    from controller.network.service import ControllerService
    from controller.store import Store
    from controller.topology.model import IntentSpec

__all__ = ["API_PREFIX", "CUT_OFF_REASON", "STALE_HEADER", "WRITE_METHODS", "ClusterGate",
           "IntentWrites", "create_app", "intent_view", "parse_dpid"]

log = logging.getLogger("controller.api.rest")

API_PREFIX = "/api/v1"
DEFAULT_CIRCLE_TIERS_MS = (1.0, 5.0, 20.0)
LIVE_READ_TIMEOUT_S = 5.0
_PORT_COUNTER_KEYS = (*PORT_COUNTERS, "duration_s")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
STALE_HEADER = "X-CPN-Stale"
CUT_OFF_REASON = ("this member is cut off from etcd; reads are served from its last applied "
                  "state")


class IntentWrites(Protocol):
    """What the API asks of the intents' write protocol:
    :class:`~controller.operations.IntentOperations` for a controller running alone, its
    cluster counterpart for a member (both keep the store and the core in agreement)."""

    def add(self, spec: IntentSpec) -> Intent:
        """Add an operator intent; returns it once confirmed or the bounded wait ended."""
        ...

    def add_many(self, specs: Sequence[IntentSpec]) -> list[Intent]:
        """Add a batch of operator intents at once (all or nothing)."""
        ...

    def remove(self, intent_id: int) -> int:
        """Remove an operator intent; returns how many of its flows were installed."""
        ...

    def source(self, intent_id: int) -> str:
        """``api`` for an intent an operator added, ``file`` for one of the topology."""
        ...


# --- helpers ------------------------------------------------------------------------------------

def _wall(mono: float) -> str:
    """A ``time.monotonic()`` value as an ISO 8601 UTC timestamp."""
    t = time.time() - (time.monotonic() - mono)
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds")


def _flow_dict(e: FlowEntry) -> dict[str, Any]:
    owner = e.owner
    return {"table_id": e.table_id, "priority": e.priority, "match": dict(e.match),
            "instructions": [{"type": k, "value": v} for k, v in e.instructions],
            "cookie": f"{e.cookie:#018x}",
            "owner": f"{owner[0]}:{owner[1]}" if owner else None}


def allowed_methods(app: FastAPI, scope: Scope) -> str:
    """The methods of the request's path (for a 405's ``Allow``): of every route with the
    path template of the first route that matches (``/intents/batch``, not also
    ``/intents/{intent_id}``)."""
    routes = [r for r in app.router.routes if isinstance(r, Route) and r.methods]
    first = next((r for r in routes if r.matches(scope)[0] is not Match.NONE), None)
    if first is None:
        return ""
    methods = set().union(*(r.methods or () for r in routes if r.path == first.path))
    return ", ".join(sorted(methods))


def same_ends(src: str, dst: str) -> Conflict:
    """Equal ends of a route: a conflict between two fields of a valid request (JSON Schema
    cannot state ``src != dst``, so this is 409, not a schema error's 400/422)."""
    return Conflict(f"src and dst are the same ({src!r}): a route needs two ends")


def parse_dpid(text: str, service: ControllerService) -> int:
    """A dpid from a path segment: decimal, ``0x`` hex, ``00:00:..:01`` or a switch name."""
    t = text.strip().lower()
    value: int | None = None
    if re.fullmatch(r"[0-9]{1,20}", t):
        value = int(t)
    elif re.fullmatch(r"0x[0-9a-f]{1,16}", t):
        value = int(t, 16)
    elif re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){7}", t):
        value = int(t.replace(":", ""), 16)
    else:
        for node in service.topology.nodes:
            if node.name == text:
                return node.dpid
    # any text may be a switch's name, so what names no switch is 404, as the document says
    if value is None:
        raise NotFound(f"no switch {text!r}: give a dpid (an integer, 0x hex, "
                       "00:00:00:00:00:00:00:01) or a switch name")
    if not 1 <= value <= 2**64 - 1:
        raise NotFound(f"no switch {text!r}: dpids are 1 .. 2^64-1")
    service.switch(value)  # NotFound for a dpid the topology lacks
    return value


def intent_view(intent: Intent, source: str) -> dict[str, Any]:
    """An intent as the API shows it: :meth:`Intent.as_dict` with wall-clock timestamps and
    where it came from (``file`` or ``api``)."""
    return {**intent.as_dict(wall=_wall), "source": source}


# --- the app ------------------------------------------------------------------------------------

def _error(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(status_code=status, content=body, headers=headers)


class ClusterGate:
    """The cluster's rules for every request, in one ASGI layer around the app's routes.

    * A write (``POST``/``PUT``/``PATCH``/``DELETE`` under ``/api/v1``) while
      ``cluster.writable()`` is False answers 503 ``cluster_unavailable`` here, before
      authentication and before any handler: nothing is changed, whatever the route.
    * While ``cluster.stale()`` is True every answer carries ``X-CPN-Stale: true`` (reads
      still answer from the member's last applied state).

    Pure ASGI rather than an HTTP middleware class: the web map's endless event stream
    passes through untouched but for the header. ``writable()`` and ``stale()`` run on every
    request, so a view must answer them without I/O."""

    def __init__(self, app: ASGIApp, cluster: ClusterView) -> None:
        self.app = app
        self.cluster = cluster

    def _writable(self) -> bool:
        try:
            return self.cluster.writable()
        except Exception as exc:  # noqa: BLE001 - a view that cannot say refuses writes
            log.exception(f"cluster view failed to say whether writes are accepted: {exc}",
                          extra={"event": "cluster_view_error"})
            return False

    def _stale(self) -> bool:
        try:
            return self.cluster.stale()
        except Exception as exc:  # noqa: BLE001 - a view that cannot say may be stale
            log.exception(f"cluster view failed to say whether reads are stale: {exc}",
                          extra={"event": "cluster_view_error"})
            return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stale = self._stale()

        async def send_marked(message: Message) -> None:
            if stale and message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((STALE_HEADER.lower().encode(), b"true"))
                message = {**message, "headers": headers}
            await send(message)

        path: str = scope.get("path", "")
        if (scope.get("method") in WRITE_METHODS
                and (path == API_PREFIX or path.startswith(f"{API_PREFIX}/"))
                and not self._writable()):
            exc = ClusterUnavailable(CUT_OFF_REASON)
            log.info(f"write refused, not writable: {scope['method']} {path}",
                     extra={"event": "write_refused", "method": scope["method"],
                            "path": path})
            response = _error(exc.http_status, exc.code, str(exc))
            await response(scope, receive, send_marked)
            return
        await self.app(scope, receive, send_marked)


def create_app(service: ControllerService, *, intents: IntentWrites, steering: Steering,
               store: Store, token: str | None, read_open: bool = True,
               cluster: ClusterView | None = None, tokens: TokenRegistry | None = None,
               write_limiter: WriteRateLimiter | None = None,
               audit_retention: int = 10_000) -> FastAPI:
    """The API app: reads from ``service``, intent writes through ``intents`` (the write
    protocol: :class:`~controller.operations.IntentOperations` or a member's), compute
    steering through ``steering``, ``store`` asked only whether it answers (``/health``).
    ``tokens``: the tokens and their roles (:mod:`controller.api.tokens`); None: ``token``
    alone, as admin (``token`` None too: every call that needs a token answers 401, there
    is no unauthenticated write mode). ``write_limiter``: the per-token write rate (None: no
    limit). Every write is recorded in ``store``'s audit trail (the latest
    ``audit_retention``; :mod:`controller.api.audit`).
    ``cluster``: what this member knows of the cluster (None: a
    controller running alone, :class:`~controller.cluster.view.Standalone`); the API reads
    it only through the :class:`~controller.cluster.view.ClusterView` protocol."""
    view: ClusterView = cluster if cluster is not None else Standalone(service)
    metrics = Metrics(service)
    started = time.monotonic()
    app = FastAPI(title="CPN controller API", version="1",
                  description="Routes with latency bounds on a computing power network. "
                              "Writes need `Authorization: Bearer <token>`.")
    app.state.service = service
    app.state.store = store
    app.state.intents = intents
    app.state.metrics = metrics
    app.state.cluster = view
    # who may call what: controller/api/auth.py (roles, the token file, the rate limit)
    access = ApiAuth(tokens if tokens is not None else TokenRegistry(token),
                     read_open=read_open, limiter=write_limiter)
    audit = AuditTrail(store, audit_retention)
    app.state.audit = audit

    @app.exception_handler(CpnError)
    def _cpn_error(_req: Request, exc: CpnError) -> JSONResponse:
        best = exc.best_latency_ms if isinstance(exc, InfeasibleRoute) else None
        response = _error(exc.http_status, exc.code, str(exc), best_latency_ms=best,
                          bottleneck=getattr(exc, "bottleneck", None),
                          required_role=getattr(exc, "required_role", None))
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errs = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                 "type": str(e.get("type", ""))} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errs) or "invalid"
        return _error(422, "invalid_request", detail, errors=errs)

    @app.exception_handler(StarletteHTTPException)
    def _http(req: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        response = _error(exc.status_code, codes.get(exc.status_code,
                                                     f"http_{exc.status_code}"),
                          str(exc.detail))
        if exc.status_code == 405:
            # RFC 9110 15.5.6: a 405 names the methods the resource has (Starlette's own
            # header names only the first route on the path, not GET and POST of /intents)
            response.headers["Allow"] = allowed_methods(app, req.scope)
        return response


    @app.exception_handler(Exception)
    def _internal(_req: Request, exc: Exception) -> JSONResponse:
        log.exception(f"API error: {exc}", extra={"event": "api_error"})
        response = _error(500, "internal", f"{type(exc).__name__}: {exc}")
        # this handler answers outside the ClusterGate layer (Starlette runs it in the
        # outermost middleware), so it marks a stale answer itself
        if view.stale():
            response.headers[STALE_HEADER] = "true"
        return response

    # with open reads, the read routes do not declare the bearer scheme, so the OpenAPI
    # document says truthfully that they need no token
    read = [] if read_open else [access.dependency()]
    write = [access.dependency()]
    v1 = API_PREFIX

    @app.get(f"{v1}/health", response_model=HealthOut, responses=ERRORS, dependencies=read,
             tags=["state"])
    async def health() -> dict[str, Any]:
        """Switches connected, store reachable, this member's place in the cluster
        (``degraded``: the store does not answer, or the member refuses writes). (async for
        a controller running alone: a few counters under the lock and one SQLite ``SELECT
        1``, cheaper than a thread-pool hop; monitoring polls it. A member's store and
        status may ask etcd: then it runs in the thread pool, off the event loop.)"""
        if isinstance(view, Standalone):
            return _health()
        return await run_in_threadpool(_health)

    def _health() -> dict[str, Any]:
        counts = service.health()
        store_ok = store.ok()
        status = view.status()
        block = {k: status[k] for k in ("mode", "member_id", "writable", "stale",
                                         "applied_revision")}
        ok = store_ok and bool(block["writable"])
        return {"status": "ok" if ok else "degraded", **counts, "store_ok": store_ok,
                "uptime_s": time.monotonic() - started, "cluster": block}

    @app.get(f"{v1}/cluster", response_model=ClusterOut, responses=ERRORS, dependencies=read,
             tags=["state"])
    def cluster_status() -> dict[str, Any]:
        """The cluster as this member sees it: mode, whether it takes writes and whether its
        reads may lag, etcd's endpoints, the members (API and OpenFlow addresses, alive,
        applied revision, switches mastered; ``self``: the one answering) and per switch its
        master, standbys and role generation. A controller running alone answers mode
        ``standalone``: one member, ``standalone``, master of every connected switch."""
        return view.status()

    @app.get(f"{v1}/topology", responses=ERRORS, dependencies=read, tags=["state"])
    def topology() -> dict[str, Any]:
        """Nodes (kind, coordinates, connected), links (latency, bandwidth, reserved
        bandwidth, state), hosts and compute sites."""
        topo = service.topology
        net = service.network_snapshot(recent_events=0)
        connected = {sw.dpid: sw.connected for sw in net.switches}
        masters = view.switch_masters()
        links = [{"index": v.index, "a": v.a, "b": v.b, "latency_ms": v.latency_ms,
                  "bandwidth_mbps": v.bandwidth_mbps, "cost": v.cost,
                  "distance_km": v.distance_km, "up": v.up, "reserved_mbps": v.reserved_mbps,
                  "load_mbps": v.load_mbps} for v in net.links]
        nodes = [{"name": n.name, "kind": n.kind, "dpid": n.dpid, "label": n.label,
                  "lat": n.lat, "lon": n.lon, "connected": connected[n.dpid],
                  "master": masters.get(n.dpid)}
                 for n in topo.nodes]
        return {"name": topo.name, "description": topo.description, "nodes": nodes,
                "links": links, "hosts": service.hosts(),
                "compute_sites": [{"id": c.id, "node": c.node, "kind": c.kind,
                                   "capacity": c.capacity, "unit": c.unit, "price": c.price,
                                   "free_capacity": c.free_capacity, "host": c.host}
                                  for c in topo.compute_sites]}

    @app.get(f"{v1}/switches", responses=ERRORS, dependencies=read, tags=["state"])
    def switches() -> list[dict[str, Any]]:
        out = service.switches()
        for s in out:
            s["dpid_hex"] = f"{s['dpid']:#x}"
            s["ports"] = ({str(k): v for k, v in s["ports"].items()}
                          if s["ports"] is not None else None)
        return out

    @app.get(f"{v1}/switches/{{dpid}}/flows", responses=LIVE_ERRORS, dependencies=read,
             tags=["state"])
    def switch_flows(dpid: str, source: ReadSource = "auto") -> dict[str, Any]:
        """The flows of one switch. ``source: "switch"``: read from the switch now (every
        part of a flow-stats reply), with packet and byte counters. ``source:
        "controller"``: the controller's plan, ``installed`` (its confirmed view, read from
        the switch at reconciliation and kept by barriers) when the switch is synced, else
        ``wanted``."""
        d = parse_dpid(dpid, service)
        name = service.switch(d).name
        switch_error = None
        if source != "controller":
            try:
                stats = service.read_flow_stats(d, timeout_s=LIVE_READ_TIMEOUT_S)
            except SwitchUnavailable as exc:
                if source == "switch":
                    raise
                switch_error = str(exc)
            else:
                return {"dpid": f"{d:#x}", "switch": name, "source": "switch", "plan": None,
                        "switch_error": None,
                        "flows": [{**_flow_dict(st.entry), "packets": st.packets,
                                   "bytes": st.bytes, "duration_s": st.duration_s}
                                  for st in stats]}
        plan, entries = service.plan_flows(d)
        return {"dpid": f"{d:#x}", "switch": name, "source": "controller",
                "plan": plan, "switch_error": switch_error,
                "flows": [_flow_dict(e) for e in entries]}

    @app.get(f"{v1}/switches/{{dpid}}/ports", responses=LIVE_ERRORS, dependencies=read,
             tags=["state"])
    def switch_ports(dpid: str, source: ReadSource = "auto") -> dict[str, Any]:
        """Ports: ``live`` as the controller last heard (port status), what the topology
        expects there, and, read from the switch now (port descriptions and statistics):
        name, hw_addr, link_up, admin_up, curr_speed_kbps and ``counters`` (rx/tx packets,
        bytes, dropped, errors; None without a live read)."""
        d = parse_dpid(dpid, service)
        switch_error = None
        reading: dict[int, dict[str, Any]] = {}
        if source != "controller":
            try:
                reading = {p["port_no"]: p for p in
                           service.read_ports(d, timeout_s=LIVE_READ_TIMEOUT_S)}
            except SwitchUnavailable as exc:
                if source == "switch":
                    raise
                switch_error = str(exc)
        live_read = source != "controller" and switch_error is None
        sw = service.switch(d)
        wiring = service.wiring
        names = wiring.dpid_node
        reported = dict(sw.ports) if sw.ports is not None else {}
        out = []
        for p in sorted(set(wiring.ports_of(d)) | set(reported) | set(reading)):
            peer = wiring.peer(d, p)
            expected: dict[str, Any] | None = None
            if peer is not None and len(peer) == 4:
                _, link_index, peer_dpid, peer_port_no = peer
                expected = {"kind": "link", "link": link_index,
                            "peer_switch": names.get(peer_dpid),
                            "peer_port_no": peer_port_no}
            elif peer is not None:
                expected = {"kind": "host", "host": peer[1]}
            row = reading.get(p, {})
            counters = ({k: row.get(k) for k in _PORT_COUNTER_KEYS}
                        if row.get("rx_packets") is not None else None)
            out.append({"port_no": p, "live": reported.get(p), "expected": expected,
                        "name": row.get("name"), "hw_addr": row.get("hw_addr"),
                        "link_up": row.get("link_up"), "admin_up": row.get("admin_up"),
                        "curr_speed_kbps": row.get("curr_speed_kbps"),
                        "counters": counters})
        return {"dpid": f"{d:#x}", "switch": sw.name, "connected": sw.connected,
                "source": "switch" if live_read else "controller",
                "switch_error": switch_error, "ports": out}

    @app.get(f"{v1}/links", responses=ERRORS, dependencies=read, tags=["state"])
    def links() -> dict[str, Any]:
        """Each file link with its state and ``measurements`` (external one-way delay and
        loss per direction, the delay that counts and its origin), and the LLDP report
        (missing, unexpected, ...)."""
        measured = service.link_measurements()
        return {"links": [{**s, "measurements": m} for s, m in zip(
                    service.link_states(), measured, strict=True)],
                "report": jsonable_encoder(service.links())}

    @app.put(f"{v1}/links/{{index}}/measurements", responses=ERRORS, dependencies=write,
             tags=["state"], openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": MEASUREMENT_SCHEMA}}}})
    async def put_link_measurements(index: int, request: Request) -> dict[str, Any]:
        """One-way delay (``delay_ms``) and ``loss`` (0..1) per direction measured by an
        operator's probes (TWAMP and the like): ``{"a_to_b": {...}, "b_to_a": {...}}``.
        Which delay counts is ``network.delay_source``. 400 naming the field for nonsense
        (nothing kept), 404 for an unknown link."""
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the body is not JSON") from None
        view = await run_in_threadpool(service.set_link_measurement, index, body)
        return {"index": index, **view}

    @app.get(f"{v1}/hosts", responses=ERRORS, dependencies=read, tags=["state"])
    def hosts() -> list[dict[str, Any]]:
        return service.hosts()

    @app.get(f"{v1}/paths", response_model=PathsOut, responses=ERRORS, dependencies=read,
             tags=["routes"])
    async def paths(src: Annotated[str, Query(min_length=1, max_length=64)],
                    dst: Annotated[str, Query(min_length=1, max_length=64)],
                    max_latency_ms: Annotated[float | None, Query(gt=0, le=1e6)] = None,
                    min_bandwidth_mbps: Annotated[float | None, Query(ge=0, le=1e9)] = None,
                    k: Annotated[int, Query(ge=1, le=16)] = 1,
                    disjoint: bool = False) -> JSONResponse:
        """What the engine would choose, installing nothing. 404 for an unknown host or
        node; 409 with the failing bound and the best latency when nothing meets them."""
        # async on purpose: the answer takes microseconds under the service lock, far less
        # than the thread-pool hop a sync endpoint costs (benchmarks/bench_api.py)
        if src == dst:
            raise same_ends(src, dst)
        for name, v in (("max_latency_ms", max_latency_ms),
                        ("min_bandwidth_mbps", min_bandwidth_mbps)):
            if v is not None and not math.isfinite(v):
                raise BadRequest(f"{name} must be a finite number")
        out = service.query_paths(src, dst, max_latency_ms=max_latency_ms,
                                  min_bandwidth_mbps=min_bandwidth_mbps, k=k,
                                  disjoint=disjoint)
        metrics.observe_query_ms(out["compute_ms"])
        # plain data built here: skip re-validating it against PathsOut (the schema still
        # documents it; tests check the shape)
        return JSONResponse(out)

    @app.post(f"{v1}/intents", status_code=201, response_model=IntentOut, responses=ERRORS,
              dependencies=write, tags=["intents"])
    def add_intent(body: IntentIn) -> dict[str, Any]:
        """Add an intent; answers once its flows are confirmed by barriers (bounded wait):
        ``installed``, ``pending`` (switches not there or not confirmed yet), ``infeasible``
        (no path meets the bounds: ``reason`` says why)."""
        if body.src == body.dst:
            raise same_ends(body.src, body.dst)
        intent = intents.add(body.to_spec())
        return intent_view(intent, "api")

    @app.post(f"{v1}/intents/batch", status_code=201, response_model=list[IntentOut],
              responses=ERRORS, dependencies=write, tags=["intents"])
    def add_intent_batch(body: IntentBatchIn) -> list[dict[str, Any]]:
        """Add many intents at once: routed in one pass, sent as one change, stored in one
        transaction (in a cluster: one etcd transaction, consecutive ids). All or nothing:
        a bad intent answers 4xx naming it (``intents[i]``) and nothing is added."""
        for i, item in enumerate(body.intents):
            if item.src == item.dst:
                raise Conflict(f"intents[{i}]: {same_ends(item.src, item.dst)}")
        return [intent_view(i, "api") for i in intents.add_many(
            [item.to_spec() for item in body.intents])]

    @app.get(f"{v1}/intents", response_model=list[IntentOut], responses=ERRORS,
             dependencies=read, tags=["intents"])
    def list_intents() -> list[dict[str, Any]]:
        return [intent_view(i, intents.source(i.id)) for i in service.intents()]

    # {intent_id:int}: /intents/batch is not an intent (GET on it is 405, not 422)
    @app.get(f"{v1}/intents/{{intent_id:int}}", response_model=IntentDetailOut,
             responses=ERRORS, dependencies=read, tags=["intents"])
    def show_intent(intent_id: int) -> dict[str, Any]:
        """State, path, history of reroutes and the intent's flows per switch (from the
        plan; ``installed`` says whether the switch holds it as far as the controller
        knows): its own flows, its tunnel head's and those of the tunnel it rides."""
        intent, entries = service.intent_flows(intent_id)
        names = service.wiring.dpid_node
        flows = [{**_flow_dict(e), "dpid": f"{d:#x}", "switch": names.get(d, "?"),
                  "installed": installed} for d, e, installed in entries]
        return {**intent_view(intent, intents.source(intent_id)), "flows": flows}

    @app.delete(f"{v1}/intents/{{intent_id:int}}", response_model=IntentDeletedOut,
                responses=ERRORS, dependencies=write, tags=["intents"])
    def delete_intent(intent_id: int) -> dict[str, Any]:
        """Remove an intent added over the API; answers once the deletes are confirmed by
        barriers (bounded wait). 409 for an intent of the topology file."""
        n = intents.remove(intent_id)
        return {"id": intent_id, "deleted": True, "flows_removed": n}

    @app.get(f"{v1}/routes", responses=ERRORS, dependencies=read, tags=["routes"])
    def routes() -> dict[str, Any]:
        """What is installed now, per switch (the controller's confirmed view)."""
        out = [{"dpid": f"{sw.dpid:#x}", "switch": sw.name, "connected": sw.connected,
                "synced": sw.synced, "flows": [_flow_dict(e) for e in entries]}
               for sw, entries in service.installed_flows()]
        return {"switches": out}

    @app.get(f"{v1}/latency-circles", responses=ERRORS, dependencies=read, tags=["routes"])
    def latency_circles(
            center: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
            max_latency_ms: Annotated[float | None, Query(gt=0, le=1e6)] = None,
    ) -> dict[str, Any]:
        """Nodes within a latency bound of a node. Default: tiers 1, 5 and 20 ms around
        each national hub."""
        if max_latency_ms is not None and not math.isfinite(max_latency_ms):
            raise BadRequest("max_latency_ms must be a finite number")
        tiers = [max_latency_ms] if max_latency_ms is not None else list(DEFAULT_CIRCLE_TIERS_MS)
        reach = service.within_latency(
            [center] if center is not None else
            [n.name for n in service.topology.nodes_of_kind("national_hub")], max(tiers))
        centers = list(reach)
        return {"tiers_ms": tiers, "circles": [
            {"center": c, "tiers": [
                {"max_latency_ms": t,
                 "nodes": [{"name": n, "latency_ms": lat}
                           for n, lat in sorted(reach[c].items(), key=lambda x: (x[1], x[0]))
                           if lat <= t]} for t in tiers]} for c in centers]}

    @app.get(f"{v1}/events", responses=ERRORS, dependencies=read, tags=["state"])
    def events(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        """Recent topology changes, failures, reroutes (oldest first), with timestamps."""
        out = []
        for ev in service.events(limit):
            ev = jsonable_encoder(ev, custom_encoder={float: lambda x: x
                                                      if math.isfinite(x) else None})
            if isinstance(ev.get("time"), float):
                ev["timestamp"] = _wall(ev["time"])
            out.append(ev)
        return out

    def _metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    app.get(f"{v1}/metrics", responses={200: {"content": {"text/plain": {}}}, **ERRORS},
            dependencies=read, tags=["state"], response_class=Response,
            summary="Prometheus metrics")(_metrics)
    app.get("/metrics", include_in_schema=False, dependencies=read)(_metrics)
    # the web map: the page at / and the live stream /api/v1/stream (docs/webmap.md)
    web = web_router(service, dependencies=read, cluster=view,
                     compute_marker=steering.sites_marker)
    app.state.webmap = web.broadcaster  # type: ignore[attr-defined]
    app.include_router(web)
    # compute steering: sites, placements, anycast services (controller/api/compute.py)
    app.state.steering = steering
    app.include_router(compute_router(steering, read=read, write=write))
    # the audit trail: GET /api/v1/audit (admin), and every write recorded by the outermost
    # layer, so the cluster gate's refusals are recorded too (controller/api/audit.py)
    app.include_router(audit_router(audit, store, dependencies=[access.dependency()],
                                    responses=ERRORS))
    app.add_middleware(ClusterGate, cluster=view)
    app.add_middleware(AuditLayer, trail=audit, identify=access.token_name)
    document_auth(app)
    _document_cluster_unavailable(app)
    _document_links(app)
    return app


_LINKS: tuple[tuple[str, dict[str, str], tuple[tuple[str, str], ...]], ...] = (
    # (the creating POST and its status, the parameters the answer gives, the operations
    # they open: method, path)
    ("/intents 201", {"intent_id": "$response.body#/id"},
     (("get", "/intents/{intent_id}"), ("delete", "/intents/{intent_id}"))),
    ("/compute-sites 201", {"site_id": "$response.body#/id"},
     (("get", "/compute-sites/{site_id}"), ("patch", "/compute-sites/{site_id}"),
      ("delete", "/compute-sites/{site_id}"))),
    ("/placements 201", {"placement_id": "$response.body#/id"},
     (("get", "/placements/{placement_id}"), ("delete", "/placements/{placement_id}"))),
    # not to POST /services/{name}/assignments: its client must be a host of the network,
    # and a 404 for an unknown client would read as the service missing
    ("/services 201", {"name": "$response.body#/name"},
     (("get", "/services/{name}"), ("delete", "/services/{name}"),
      ("get", "/services/{name}/assignments"))),
    ("/services/{name}/assignments 200",
     {"name": "$request.path.name", "client": "$response.body#/client_host"},
     (("delete", "/services/{name}/assignments/{client}"),)),
)
"""OpenAPI links from each POST that creates a resource to the operations on it, so a
client (and a stateful test) can follow an id from the answer to the resource."""


def _document_links(app: FastAPI) -> None:
    """Add :data:`_LINKS` to the OpenAPI document when it is first built."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        doc = build()
        paths = doc.get("paths", {})
        for source, parameters, targets in _LINKS:
            path, status = source.split()
            response = paths[f"{API_PREFIX}{path}"]["post"]["responses"][status]
            links = response.setdefault("links", {})
            for method, target in targets:
                op_id = paths[f"{API_PREFIX}{target}"][method]["operationId"]
                wanted = set(re.findall(r"{(\w+)}", target))
                links[op_id] = {
                    "operationId": op_id,
                    "parameters": {k: v for k, v in parameters.items() if k in wanted}}
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _document_cluster_unavailable(app: FastAPI) -> None:
    """Every write under /api/v1 may answer 503 ``cluster_unavailable`` (ClusterGate, for
    whichever router declared the route): say so in the OpenAPI document."""

    def edit(_path: str, method: str, op: dict[str, Any]) -> None:
        if method in WRITE_METHODS:
            op.setdefault("responses", {}).setdefault("503", {
                "description": CLUSTER_UNAVAILABLE_DOC,
                "content": {"application/json": {"schema": ERROR_REF}}})

    edit_operations(app, edit)
