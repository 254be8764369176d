"""The operator's web map: a static page at ``/`` and a live stream at ``/api/v1/stream``.

* ``/`` serves ``controller/web/index.html``; ``/static/<file>`` the page's script and style
  from the same package directory (shipped inside the wheel, no CDN, nothing from the
  internet at run time).
* ``/api/v1/stream`` is a server-sent event stream (``text/event-stream``). Each message
  (``event: state``) carries the live part of the map as plain data: link state (up,
  reserved, load), switch connection, the member mastering each switch (``masters``: name ->
  member id or null, from the :class:`~controller.cluster.view.ClusterView`), whether this
  member's reads may lag the cluster (``stale``), intents (state, path, latency, cost) and the
  latest events. One shared :class:`Broadcaster` per app polls the service's change marker
  (``ControllerService.change_marker``: a version counter, the newest event and the intents'
  states and paths), the cluster's masters and staleness, and the compute sites' state and
  live metrics (a site's report or its going stale: the page then reads the sites again)
  every :data:`POLL_INTERVAL_S`
  while at least one page listens, and builds a message from one consistent
  ``network_snapshot`` only when one of them moves. So a link
  going down reaches every page within about a quarter of a second, and ten open pages cost
  one poll, not ten.
* Bounded: at most :data:`MAX_SUBSCRIBERS` streams (503 beyond); each stream keeps only the
  newest message (a slow reader skips intermediate states, which are full snapshots anyway);
  a comment line every :data:`KEEPALIVE_S` finds dead connections; :meth:`Broadcaster.close`
  ends every stream at once (call it before stopping the server, so uvicorn does not wait for
  open streams).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from controller.cluster.view import Standalone

if TYPE_CHECKING:
    from fastapi.params import Depends

    from controller.cluster.view import ClusterView
    from controller.network.service import ControllerService
    from controller.network.views import NetworkSnapshot
    from controller.topology.model import Topology

__all__ = ["KEEPALIVE_S", "MAX_SUBSCRIBERS", "POLL_INTERVAL_S", "WEB_DIR", "Broadcaster",
           "live_state", "web_router"]

WEB_DIR = Path(__file__).resolve().parent / "web"
POLL_INTERVAL_S = 0.25
KEEPALIVE_S = 10.0
MAX_SUBSCRIBERS = 64
RECENT_EVENTS = 30
_STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _plain(value: Any) -> Any:
    """Event details as JSON-safe data (tuples to lists, non-finite floats to null)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float):
        return _finite(value)
    return str(value)


def live_state(service: ControllerService, cluster: ClusterView | None = None
               ) -> dict[str, Any]:
    """The live part of the map: what the stream sends (see the module docstring).
    ``cluster`` None: the controller runs alone (:class:`Standalone`)."""
    view = cluster if cluster is not None else Standalone(service)
    return _live_state(service.network_snapshot(RECENT_EVENTS), service.topology,
                       view.switch_masters(), view.stale())


def _live_state(net: NetworkSnapshot, topo: Topology, masters: dict[int, str | None],
                stale: bool) -> dict[str, Any]:
    now_mono = time.monotonic()
    now_wall = time.time()
    links = [{"index": v.index, "up": v.up, "reserved_mbps": _finite(v.reserved_mbps),
              "load_mbps": None} for v in net.links]
    connected = {sw.dpid: sw.connected for sw in net.switches}
    # name -> connected stays as it was (pages and scripts read it); the master of each
    # switch rides beside it under the same names
    switches = {n.name: connected[n.dpid] for n in topo.nodes}
    by_name = {n.name: masters.get(n.dpid) for n in topo.nodes}
    intents = [{"id": i.id, "name": i.name, "src": i.spec.src, "dst": i.spec.dst,
                "max_latency_ms": i.spec.max_latency_ms, "state": i.state,
                "reason": i.reason, "path": list(i.path) if i.path else None,
                "latency_ms": _finite(i.latency_ms), "cost": _finite(i.cost),
                "reroutes": len(i.history),
                "sla": None if i.sla is None else i.sla["state"],
                "measured_ms": None if i.sla is None else _finite(i.sla["measured_ms"])}
               for i in net.intents]
    events = []
    for ev in net.events:
        ev = _plain(ev)
        t = ev.get("time")
        if isinstance(t, float):
            ev["timestamp"] = time.strftime(
                "%Y-%m-%dT%H:%M:%S", time.gmtime(now_wall - (now_mono - t))) + "Z"
        events.append(ev)
    return {"links": links, "switches": switches, "masters": by_name, "stale": stale,
            "intents": intents, "events": events}


class _Subscriber:
    """One open stream: holds only the newest message."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.message: str | None = None
        self.last_seq = 0
        """the newest message this stream has been given (never send one twice)"""
        self.closed = False
        self.wake = asyncio.Event()

    def offer(self, message: tuple[int, str] | None) -> None:  # in the subscriber's loop
        if message is None:
            self.closed = True
        elif message[0] > self.last_seq:
            self.last_seq, self.message = message
        else:
            return
        self.wake.set()

    async def next(self, timeout_s: float) -> str | None:
        """The newest message; '' on timeout (send a keep-alive); None when closed."""
        try:
            await asyncio.wait_for(self.wake.wait(), timeout_s)
        except TimeoutError:
            return ""
        self.wake.clear()
        if self.closed:
            return None
        msg, self.message = self.message, None
        return msg or ""


class Broadcaster:
    """One poller shared by every open stream of an app (see the module docstring)."""

    def __init__(self, service: ControllerService, *, interval_s: float = POLL_INTERVAL_S,
                 max_subscribers: int = MAX_SUBSCRIBERS,
                 cluster: ClusterView | None = None,
                 compute_marker: Callable[[], Hashable] | None = None) -> None:
        self.service = service
        self.compute_marker = compute_marker
        """what the compute table shows (Steering.sites_marker): a new message when it moves,
        so a site's live score and freshness reach the page without a reload"""
        self.cluster: ClusterView = cluster if cluster is not None else Standalone(service)
        self.interval_s = interval_s
        self.max_subscribers = max_subscribers
        self._subs: set[_Subscriber] = set()
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._seq = 0
        self._last_marker: tuple[Any, ...] | None = None
        self._last_message: tuple[int, str] | None = None
        self.polls = 0
        """change-marker polls so far (one poller whatever the number of pages)"""

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def _poll(self) -> tuple[int, str] | None:
        """A new message when the state moved since the last poll (runs in a worker thread)."""
        with self._poll_lock:
            self.polls += 1
            # mastership moves without the service's marker moving: both count
            masters = self.cluster.switch_masters()
            stale = self.cluster.stale()
            compute = None if self.compute_marker is None else self.compute_marker()
            cluster_key = (tuple(sorted(masters.items())), stale, compute)
            marker = (self.service.change_marker(), cluster_key)
            if marker == self._last_marker and self._last_message is not None:
                return None
            net = self.service.network_snapshot(RECENT_EVENTS)
            self._last_marker = (net.marker, cluster_key)
            self._seq += 1
            data = json.dumps({"seq": self._seq, **_live_state(net, self.service.topology,
                                                               masters, stale)},
                              separators=(",", ":"))
            self._last_message = (self._seq,
                                  f"id: {self._seq}\nevent: state\ndata: {data}\n\n")
            return self._last_message

    def subscribe(self) -> _Subscriber | None:
        """A new stream, or None when closed or full."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed or len(self._subs) >= self.max_subscribers:
                return None
            sub = _Subscriber(loop)
            self._subs.add(sub)
            if self._task is None or self._task.done():
                self._task = loop.create_task(self._run())
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)

    def _broadcast(self, msg: tuple[int, str]) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.offer(msg)

    async def start(self, sub: _Subscriber) -> None:
        """Give a new stream the newest message (built now if the state moved; then the
        other streams get it too)."""
        msg = await asyncio.to_thread(self._poll)
        if msg is not None:
            self._broadcast(msg)
        elif self._last_message is not None:
            sub.offer(self._last_message)

    async def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._subs:
                    self._task = None
                    return
            msg = await asyncio.to_thread(self._poll)
            if msg is not None:
                self._broadcast(msg)
            await asyncio.sleep(self.interval_s)

    def close(self) -> None:
        """End every open stream now (thread-safe); later subscriptions are refused."""
        with self._lock:
            self._closed = True
            subs = list(self._subs)
            self._subs.clear()
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, None)
            except RuntimeError:  # the loop is gone already
                pass


def web_router(service: ControllerService, *, dependencies: Sequence[Depends] = (),
               broadcaster: Broadcaster | None = None,
               cluster: ClusterView | None = None,
               compute_marker: Callable[[], Hashable] | None = None) -> APIRouter:
    """The page (``/``), its assets (``/static/...``) and the live stream
    (``/api/v1/stream``). ``dependencies``: the API's read-access check, applied to the
    stream; the page and its assets hold no data and are always served (when reads need the
    token, the page sends it from its token field with every call). ``cluster``: where the
    stream reads each switch's master (None: the controller runs alone). The router's
    ``broadcaster`` attribute is the shared poller (close it before stopping the server).
    ``compute_marker``: see :class:`Broadcaster`."""
    router = APIRouter()
    hub = broadcaster if broadcaster is not None else Broadcaster(
        service, cluster=cluster, compute_marker=compute_marker)
    router.broadcaster = hub  # type: ignore[attr-defined]
    no_cache = {"Cache-Control": "no-cache"}

    @router.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=no_cache)

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        # a fixed list: nothing outside the package directory can be named
        media_type = _STATIC_FILES.get(name)
        if media_type is None:
            return JSONResponse(status_code=404, content={
                "error": "not_found", "detail": f"no static file {name!r}"})
        return FileResponse(WEB_DIR / name, media_type=media_type, headers=no_cache)

    # not in the OpenAPI document: a stream never ends, which generic clients and the
    # schema fuzzer (tests/api/test_api_schema.py) cannot read; docs/webmap.md describes it
    @router.get("/api/v1/stream", dependencies=list(dependencies), include_in_schema=False)
    async def stream(request: Request) -> Response:
        """Server-sent events for the web map: ``event: state`` with links (up, reserved,
        load), switches (connected), masters (member id per switch), stale, intents (state,
        path) and recent events; sent at once and then whenever something changes (checked
        every 250 ms)."""
        sub = hub.subscribe()
        if sub is None:
            return JSONResponse(status_code=503, content={
                "error": "unavailable", "detail": "too many open streams, or shutting down"})

        async def body() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n\n"
                await hub.start(sub)
                while True:
                    msg = await sub.next(KEEPALIVE_S)
                    if msg is None:
                        return
                    if msg == "":
                        if await request.is_disconnected():
                            return
                        yield ": keep-alive\n\n"
                        continue
                    yield msg
            finally:
                hub.unsubscribe(sub)

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={**no_cache, "X-Accel-Buffering": "no"})

    return router
