"""REST endpoints of the PCE (``docs/pce.md``) under ``/api/v1/pce``, and the app ``cpn-pce``
serves them in.

Reads: the PCEP sessions, the LSP database (per LSP its bounds, segments, computed delay and
cost, history), the routers' links, counters. Writes (admin token): a link's state or measured
delay (``PUT /pce/links/{a}/{b}``: delegated LSPs pushed out of their bound get a PCUpd), a
PCE-initiated LSP (``POST /pce/lsps``: PCInitiate). ``GET /pce/path`` computes a path
without PCEP.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.params import Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from controller.api.auth import ApiAuth
from controller.api.tokens import TokenRegistry
from controller.errors import BadRequest, Conflict, CpnError, NotFound
from controller.pce.engine import OBJECTIVES, PathRequest
from controller.pce.server import PceServer

__all__ = ["create_pce_app", "pce_router"]

Ipv4 = Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}$", max_length=15)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PathIn(_Body):
    source: Ipv4 = Field(description="router id of the head end")
    destination: Ipv4
    max_latency_ms: float | None = Field(default=None, gt=0, le=1e6,
                                         description="delay bound; none: unbounded")
    min_bandwidth_mbps: float = Field(default=0.0, ge=0, le=1e9)
    objective: str = Field(default="te", description=f"one of {', '.join(OBJECTIVES)}")
    max_sid_depth: int | None = Field(default=None, ge=1, le=255)

    def request(self) -> PathRequest:
        if self.objective not in OBJECTIVES:
            raise BadRequest(f"objective must be one of {', '.join(OBJECTIVES)}")
        return PathRequest(source=self.source, destination=self.destination,
                           max_latency_ms=self.max_latency_ms or math.inf,
                           min_bandwidth_mbps=self.min_bandwidth_mbps,
                           objective=self.objective, max_sid_depth=self.max_sid_depth)


class LspIn(PathIn):
    pcc: str = Field(description="address of the PCC's PCEP session")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    color: int = Field(default=1, ge=1, le=2**32 - 1, description="the SR policy's colour")


class LinkIn(_Body):
    up: bool | None = None
    latency_ms: float | None = Field(default=None, ge=0, le=1e6,
                                     description="the measured one-way delay")


def pce_router(server: PceServer, *, read: list[Depends], write: list[Depends]) -> APIRouter:
    """``/api/v1/pce/...`` on ``server``."""
    r = APIRouter(prefix="/api/v1/pce", tags=["pce"])

    @r.get("/sessions", dependencies=read)
    def sessions() -> list[dict[str, Any]]:
        """The PCEP sessions: peer, state, capabilities, timers, counters."""
        return server.sessions()

    @r.get("/lsps", dependencies=read)
    def lsps() -> list[dict[str, Any]]:
        """The LSP database: every reported LSP, its bounds, segments and history."""
        return server.lsps()

    @r.get("/lsps/{pcc}/{plsp_id}", dependencies=read)
    def lsp(pcc: str, plsp_id: int) -> dict[str, Any]:
        found = server.lsp(pcc, plsp_id)
        if found is None:
            raise NotFound(f"no LSP {plsp_id} of PCC {pcc}")
        return found

    @r.post("/lsps", status_code=202, dependencies=write)
    def initiate(body: LspIn) -> dict[str, Any]:
        """Create an LSP on a PCC (PCInitiate) on the path computed for the bounds; the PCC
        reports it when it has made it."""
        try:
            out = server.initiate(body.pcc, body.request(), body.name, body.color)
        except LookupError as exc:
            raise Conflict(str(exc)) from None
        if not out["sent"]:
            raise Conflict(f"no path: {out['reason']}")
        return out

    @r.delete("/lsps/{pcc}/{plsp_id}", status_code=202, dependencies=write)
    def remove(pcc: str, plsp_id: int) -> dict[str, Any]:
        """Ask the PCC to remove an LSP the PCE created (PCInitiate with the R flag); the
        PCC's report then removes it from the database."""
        try:
            return server.remove_initiated(pcc, plsp_id)
        except KeyError as exc:
            raise NotFound(str(exc.args[0])) from None
        except LookupError as exc:
            raise Conflict(str(exc)) from None

    @r.get("/path", dependencies=read)
    def path(query: Annotated[PathIn, Query()]) -> dict[str, Any]:
        """The path the PCE would answer a PCReq with (nothing is sent or kept)."""
        return server.compute(query.request()).as_dict()

    @r.get("/links", dependencies=read)
    def links() -> list[dict[str, Any]]:
        return server.links()

    @r.put("/links/{a}/{b}", dependencies=write)
    def set_link(a: str, b: str, body: LinkIn) -> dict[str, Any]:
        """Take a link down or up, or set its measured delay; delegated LSPs it pushes out of
        their bound are moved (PCUpd), and listed here."""
        if body.up is None and body.latency_ms is None:
            raise BadRequest("give up, latency_ms or both")
        try:
            moved = server.set_link(a, b, up=body.up, latency_ms=body.latency_ms)
        except KeyError as exc:
            raise NotFound(str(exc.args[0])) from None
        return {"moved": moved}

    @r.get("/metrics", dependencies=read)
    def metrics() -> dict[str, Any]:
        """Counters: sessions, requests, replies with and without a path, updates,
        initiates, errors, the request latency."""
        return server.stats()

    return r


def create_pce_app(server: PceServer, *, token: str | None,
                   tokens: TokenRegistry | None = None) -> FastAPI:
    """The app of ``cpn-pce``: the PCE's routes, reads open, writes with an admin token."""
    app = FastAPI(title="CPN PCE API", version="1",
                  description="A PCE for routers. Writes need `Authorization: Bearer <token>`.")
    access = ApiAuth(tokens if tokens is not None else TokenRegistry(token))

    @app.exception_handler(CpnError)
    def _cpn_error(_req: Request, exc: CpnError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status,
                            content={"error": exc.code, "detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}"
                           for e in exc.errors())
        return JSONResponse(status_code=422, content={"error": "invalid_request",
                                                      "detail": detail or "invalid"})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "pcep": f"{server.host}:{server.port}"}

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[access.dependency()])
    def prometheus() -> str:
        """The counters of ``GET /api/v1/pce/metrics`` in Prometheus' text format."""
        return exposition(server.stats())

    app.include_router(pce_router(server, read=[access.dependency()],
                                  write=[access.dependency()]))
    return app


_GAUGES = {"sessions_up", "lsps", "lsps_delegated", "request_ms_p50", "request_ms_max"}


def exposition(stats: dict[str, Any]) -> str:
    """Prometheus text: ``cpn_pce_<name>_total`` for counters, ``cpn_pce_<name>`` for
    gauges (a value not known yet is left out)."""
    lines = []
    for name, value in sorted(stats.items()):
        if value is None:
            continue
        metric = f"cpn_pce_{name}" if name in _GAUGES else f"cpn_pce_{name}_total"
        kind = "gauge" if name in _GAUGES else "counter"
        lines += [f"# TYPE {metric} {kind}", f"{metric} {value}"]
    return "\n".join(lines) + "\n"
