"""The PCEP server: sessions with PCCs over TCP, one asyncio loop in its own thread.

Each connection runs the RFC 5440 session (Open, Keepalive, dead timer, Close) and hands path
requests, reports and errors to the :class:`~controller.pce.engine.PceEngine` under one lock.
A peer that sends something malformed gets a PCEP error (a PCErr for a bad or missing object,
a Close with reason "malformed" for a message that cannot be framed) and only its own session
ends; requests over a session's rate are answered NO-PATH "PCE unavailable" instead of
computed. The thread-safe methods at the bottom (``sessions``, ``lsps``, ``set_link``,
``initiate`` ...) are what the REST API calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from controller.pce import codec
from controller.pce.codec import (
    Bandwidth,
    Close,
    CloseReason,
    EndPoints,
    Ero,
    ErrorObject,
    Lsp,
    Message,
    MessageType,
    Metric,
    MetricType,
    NoPath,
    ObjectiveFunction,
    Open,
    PcepDecodeError,
    PcepObject,
    PolicyColor,
    Rp,
    Srp,
    SrSubobject,
)
from controller.pce.engine import Answer, LspRecord, PathRequest, PceEngine

__all__ = ["PceServer", "SessionInfo"]

log = logging.getLogger("controller.pce")

OPEN_WAIT_S = 60.0
"""RFC 5440's OpenWait and KeepWait timers."""
MAX_UNKNOWN_MESSAGES = 5
"""Unknown messages a peer may send in a minute before its session is closed (reason 5)."""
ASKED_KEPT = 16
"""Requests kept per (source, destination) for the reports that follow them."""
ASKED_PAIRS_KEPT = 4096
"""(source, destination) pairs whose requests a session keeps (a flood of random pairs
cannot grow it further)."""
WRITE_TIMEOUT_S = 10.0
"""How long a message may wait for a peer to read (its buffers full) before the PCE drops
the connection: a peer that sends and never reads holds nothing for longer."""
MAX_LSPS_PER_PCC = 10_000
"""LSPs the database keeps per PCC; a report of one more gets PCErr 20/1."""
MAX_ERRORS = 20
"""Malformed objects a peer may send in a minute before its session is closed (reason 3)."""
OF_OBJECTIVES = {1: "te", 2: "te", 3: "te"}
"""RFC 5541 objective functions: MCP, MLP (least loaded) and MBP (most residual bandwidth)
are answered as minimum cost within the bounds; others are refused (PCErr 4)."""


@dataclass
class SessionInfo:
    """One PCEP session: its peer, what it opened with, and its counters."""

    peer: str
    port: int
    session_id: int
    connected_at: float
    state: str = "open-wait"
    keepalive_s: int = 0
    dead_timer_s: int = 0
    stateful: bool = False
    instantiation: bool = False
    msd: int | None = None
    synced: bool = False
    counters: dict[str, int] = field(default_factory=lambda: {
        "messages_in": 0, "messages_out": 0, "requests": 0, "replies_path": 0,
        "replies_no_path": 0, "reports": 0, "updates": 0, "initiates": 0,
        "errors_sent": 0, "errors_received": 0, "rate_limited": 0, "unknown_messages": 0})

    def as_dict(self) -> dict[str, Any]:
        return {"peer": self.peer, "port": self.port, "session_id": self.session_id,
                "state": self.state, "keepalive_s": self.keepalive_s,
                "dead_timer_s": self.dead_timer_s, "stateful": self.stateful,
                "instantiation": self.instantiation, "msd": self.msd, "synced": self.synced,
                "connected_at": round(self.connected_at, 3), "counters": dict(self.counters)}


class _SessionClosed(Exception):
    pass


class _Session:
    def __init__(self, server: PceServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, info: SessionInfo) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.info = info
        self.tokens = float(server.request_burst)
        self.tokens_at = time.monotonic()
        self.recent_unknown: list[float] = []
        self.recent_errors: list[float] = []
        self.pending_srp: dict[int, int] = {}
        """SRP id of an update or initiate sent -> its PLSP-ID (0 for an initiate)"""
        self.asked: dict[tuple[str, str], list[tuple[PathRequest, Answer]]] = {}
        """recent requests per (source, destination) with their answers: a PCC that asks
        before it reports (FRR's dynamic candidate paths) reports the LSP afterwards, with
        the SIDs it was given, by which the report finds its request"""

    # sending ------------------------------------------------------------------------------------
    async def send(self, msg_type: int, objects: list[PcepObject]) -> None:
        """Write one message; a peer that has not read what it was sent within the
        server's ``write_timeout_s`` (its buffers full) loses its connection."""
        self.writer.write(codec.encode_message(msg_type, objects))
        self.info.counters["messages_out"] += 1
        try:
            await asyncio.wait_for(self.writer.drain(), self.server.write_timeout_s)
        except TimeoutError:
            self.writer.transport.abort()
            raise _SessionClosed("the peer stopped reading") from None

    async def send_error(self, error_type: int, error_value: int,
                         extra: list[PcepObject] | None = None) -> None:
        self.info.counters["errors_sent"] += 1
        self.server.metrics["errors_sent"] += 1
        await self.send(MessageType.PCERR,
                        (extra or []) + [ErrorObject(error_type=error_type,
                                                     error_value=error_value)])

    async def close(self, reason: int) -> None:
        with contextlib.suppress(OSError, ConnectionError, _SessionClosed):
            await self.send(MessageType.CLOSE, [Close(reason=reason)])
        raise _SessionClosed(f"closed: reason {reason}")

    # receiving ------------------------------------------------------------------------------------
    async def read_message(self, timeout_s: float | None) -> Message | None:
        """The next message; None for one that was answered with a PCErr and skipped."""
        try:
            header = await asyncio.wait_for(self.reader.readexactly(codec.HEADER_LEN),
                                            timeout_s)
        except TimeoutError:
            await self.close(CloseReason.DEAD_TIMER)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise _SessionClosed("peer closed the connection") from exc
        try:
            length = codec.frame_length(header)
            rest = await asyncio.wait_for(self.reader.readexactly(length - codec.HEADER_LEN),
                                          max(timeout_s or 0.0, 10.0))
        except PcepDecodeError as exc:
            log.warning("pcep %s: %s", self.info.peer, exc)
            await self.close(CloseReason.MALFORMED)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            raise _SessionClosed("peer stopped in the middle of a message") from exc
        self.info.counters["messages_in"] += 1
        try:
            return codec.decode_message(header + rest)
        except PcepDecodeError as exc:
            log.info("pcep %s: %s", self.info.peer, exc)
            if exc.close_reason is not None:
                await self.close(exc.close_reason)
            if exc.error_type == 0:  # an unknown message type
                self.info.counters["unknown_messages"] += 1
                if self._too_many(self.recent_unknown, MAX_UNKNOWN_MESSAGES):
                    await self.close(CloseReason.TOO_MANY_UNKNOWN_MESSAGES)
                return None
            await self.send_error(exc.error_type, exc.error_value)
            if self._too_many(self.recent_errors, MAX_ERRORS):
                await self.close(CloseReason.MALFORMED)
            return None

    @staticmethod
    def _too_many(recent: list[float], limit: int) -> bool:
        now = time.monotonic()
        recent.append(now)
        while recent and recent[0] < now - 60.0:
            recent.pop(0)
        return len(recent) > limit

    # the session ----------------------------------------------------------------------------------
    async def run(self) -> None:
        srv = self.server
        await self.send(MessageType.OPEN, [Open(
            keepalive_s=srv.keepalive_s, dead_timer_s=srv.dead_timer_s,
            session_id=self.info.session_id, stateful_flags=codec.STATEFUL_U | codec.STATEFUL_I,
            sr_msd=0)])
        msg = await self.read_message(srv.open_wait_s)
        peer_open = msg.first(Open) if msg is not None and msg.type == MessageType.OPEN \
            else None
        if not isinstance(peer_open, Open):
            await self.send_error(1, 1)  # the first message was not an Open
            await self.close(CloseReason.NO_EXPLANATION)
            return
        if peer_open.version != 1 or (0 < peer_open.dead_timer_s < peer_open.keepalive_s):
            await self.send_error(1, 4)  # unacceptable, non-negotiable session parameters
            await self.close(CloseReason.NO_EXPLANATION)
            return
        info = self.info
        info.keepalive_s, info.dead_timer_s = peer_open.keepalive_s, peer_open.dead_timer_s
        flags = peer_open.stateful_flags or 0
        info.stateful = bool(flags & codec.STATEFUL_U)
        info.instantiation = bool(flags & codec.STATEFUL_I)
        info.msd = peer_open.sr_msd
        await self.send(MessageType.KEEPALIVE, [])
        info.state = "keep-wait"
        keepalive_task = asyncio.get_running_loop().create_task(self._keepalives())
        try:
            dead = float(info.dead_timer_s) if info.dead_timer_s else None
            got_keepalive = False
            while True:
                msg = await self.read_message(dead if got_keepalive else srv.open_wait_s)
                if msg is None:
                    continue
                if not got_keepalive and msg.type == MessageType.KEEPALIVE:
                    got_keepalive = True
                    info.state = "up"
                    log.info("pcep %s: session up (keepalive %s s, dead timer %s s, msd %s)",
                             info.peer, info.keepalive_s, info.dead_timer_s, info.msd)
                    continue
                await self.dispatch(msg)
        finally:
            keepalive_task.cancel()

    async def _keepalives(self) -> None:
        if not self.server.keepalive_s:
            return
        while True:
            await asyncio.sleep(self.server.keepalive_s)
            try:
                await self.send(MessageType.KEEPALIVE, [])
            except (OSError, ConnectionError, _SessionClosed):
                return  # the connection is gone: the session's reader ends it

    async def dispatch(self, msg: Message) -> None:
        kind = msg.type
        if kind == MessageType.KEEPALIVE:
            return
        if kind == MessageType.PCREQ:
            await self.on_request(msg)
        elif kind == MessageType.PCRPT:
            await self.on_report(msg)
        elif kind == MessageType.PCERR:
            self.info.counters["errors_received"] += 1
            errs = [(o.error_type, o.error_value) for o in msg.objects
                    if isinstance(o, ErrorObject)]
            log.info("pcep %s: PCErr %s", self.info.peer, errs)
        elif kind == MessageType.CLOSE:
            raise _SessionClosed("peer sent Close")
        elif kind == MessageType.OPEN:
            await self.send_error(9, 1)  # a second Open within the session
        else:  # a PCE's own messages (PCRep, PCUpd, PCInitiate) or a notification
            self.info.counters["unknown_messages"] += 1
            if self._too_many(self.recent_unknown, MAX_UNKNOWN_MESSAGES):
                await self.close(CloseReason.TOO_MANY_UNKNOWN_MESSAGES)

    # path computation -------------------------------------------------------------------------
    def _take_token(self) -> bool:
        srv = self.server
        now = time.monotonic()
        self.tokens = min(float(srv.request_burst),
                          self.tokens + (now - self.tokens_at) * srv.request_rate)
        self.tokens_at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    async def on_request(self, msg: Message) -> None:
        groups = _split(msg.objects, Rp)
        if not groups or groups[0][0] is None:
            await self.send_error(6, 1)  # RP object missing
            return
        reply: list[PcepObject] = []
        for rp, objs in groups:
            assert isinstance(rp, Rp)
            self.info.counters["requests"] += 1
            self.server.metrics["requests"] += 1
            ends = next((o for o in objs if isinstance(o, EndPoints)), None)
            if ends is None:
                await self.send_error(6, 3, [rp])  # END-POINTS missing
                continue
            if ends.ipv6:  # FRR's PCC aborts on IPv6 answers: refuse them here
                await self.send_error(4, 2, [rp])
                continue
            unsupported = next((o for o in objs if isinstance(o, ObjectiveFunction)
                                and o.code not in OF_OBJECTIVES and o.p_flag), None)
            if unsupported is not None:
                await self.send_error(4, 4, [rp])  # unsupported objective function
                continue
            req = self._path_request(ends, objs)
            started = time.perf_counter()
            if not self._take_token():
                self.info.counters["rate_limited"] += 1
                self.server.metrics["rate_limited"] += 1
                answer = Answer(reason="PCE unavailable: request rate over the limit")
                reply += [_echo_rp(rp), NoPath(reason_flags=0x1)]
            else:
                with self.server.lock:
                    answer = self.server.engine.compute(req)
                    asked = self.asked.setdefault((req.source, req.destination), [])
                    asked.append((req, answer))
                    del asked[:-ASKED_KEPT]
                    if len(self.asked) > ASKED_PAIRS_KEPT:  # the oldest pair goes
                        self.asked.pop(next(iter(self.asked)))
                    lsp = next((o for o in objs if isinstance(o, Lsp)), None)
                    if lsp is not None and lsp.plsp_id:
                        rec = self.server.engine.lsp(self.info.peer, lsp.plsp_id)
                        rec.request, rec.computed = req, answer
                        rec.note(time.time(), "request", **answer.as_dict())
                reply += [_echo_rp(rp)] + _answer_objects(answer, req, for_reply=True)
            self.server.record_latency(time.perf_counter() - started)
            key = "replies_path" if answer.found else "replies_no_path"
            self.info.counters[key] += 1
            self.server.metrics[key] += 1
        if reply:
            await self.send(MessageType.PCREP, reply)

    def _path_request(self, ends: EndPoints, objs: list[PcepObject], *,
                      report: bool = False) -> PathRequest:
        """The request a PCReq's objects make; for a report (``report``) only the bounds
        count: its other metrics are the path's own values."""
        max_latency = math.inf
        max_cost: float | None = None
        max_hops: int | None = None
        msd = self.info.msd or None
        objective = "te"
        bandwidth = 0.0
        for o in objs:
            if isinstance(o, Metric):
                if o.bound:
                    if o.metric_type == MetricType.PATH_DELAY:  # NaN kept: refused later
                        bound_ms = o.value / 1000.0
                        max_latency = bound_ms if math.isnan(bound_ms) else min(max_latency,
                                                                               bound_ms)
                    elif o.metric_type in (MetricType.TE, MetricType.IGP):
                        max_cost = o.value
                    elif o.metric_type == MetricType.HOP_COUNT:
                        max_hops = int(o.value)
                    elif o.metric_type == MetricType.SID_DEPTH and o.value >= 1:
                        msd = min(msd or 255, int(o.value))
                elif report:
                    continue
                elif o.metric_type == MetricType.IGP:
                    objective = "igp"
                elif o.metric_type == MetricType.HOP_COUNT:
                    objective = "hops"
                elif o.metric_type == MetricType.PATH_DELAY:
                    objective = "latency"
            elif isinstance(o, Bandwidth) and o.obj_type == 1:
                bandwidth = o.mbps
        return PathRequest(source=ends.source, destination=ends.destination,
                           max_latency_ms=max_latency, min_bandwidth_mbps=bandwidth,
                           objective=objective, max_cost=max_cost, max_hops=max_hops,
                           max_sid_depth=msd)

    # reports ----------------------------------------------------------------------------------
    async def on_report(self, msg: Message) -> None:
        groups = _split(msg.objects, Lsp, leading=(Srp,))
        if not groups:
            await self.send_error(6, 8)  # LSP object missing
            return
        now = time.time()
        for lsp, objs in groups:
            if not isinstance(lsp, Lsp):
                await self.send_error(6, 8)
                continue
            self.info.counters["reports"] += 1
            srp = next((o for o in objs if isinstance(o, Srp)), None)
            if lsp.plsp_id == 0 and not lsp.sync:
                self.info.synced = True  # the end-of-synchronisation marker
                log.info("pcep %s: LSP state synchronised", self.info.peer)
                continue
            ero = next((o for o in objs if isinstance(o, Ero)), None)
            if ero is None and not lsp.remove:
                await self.send_error(6, 9)  # ERO missing
                continue
            with self.server.lock:
                engine = self.server.engine
                if lsp.remove:
                    engine.remove_lsp(self.info.peer, lsp.plsp_id)
                    continue
                full = (self.info.peer, lsp.plsp_id) not in engine.lsps and \
                    engine.lsp_count(self.info.peer) >= self.server.max_lsps_per_pcc
                if not full:
                    rec = engine.lsp(self.info.peer, lsp.plsp_id)
            if full:  # RFC 8231: the PCE cannot process (an otherwise valid) report
                await self.send_error(20, 1, [lsp])
                continue
            with self.server.lock:
                self._update_record(rec, lsp, ero, objs)
                if srp is not None and srp.srp_id in self.pending_srp:
                    self.pending_srp.pop(srp.srp_id)
                    rec.note(now, "acknowledged", srp_id=srp.srp_id,
                             labels=[s.label for s in rec.segments])
                else:
                    rec.note(now, "report", delegated=rec.delegated,
                             operational=rec.operational,
                             labels=[s.label for s in rec.segments])

    def _update_record(self, rec: LspRecord, lsp: Lsp, ero: Ero | None,
                       objs: list[PcepObject]) -> None:
        engine = self.server.engine
        rec.name = lsp.name or rec.name
        rec.delegated, rec.operational = lsp.delegate, lsp.operational
        rec.administrative = lsp.administrative
        rec.created_by_pce = rec.created_by_pce or lsp.create
        if lsp.identifiers is not None:
            rec.source = lsp.identifiers.sender
            rec.destination = lsp.identifiers.endpoint
        if ero is not None:
            segs = [engine.segment_from_wire(s.label, s.nai) for s in ero.segments]
            rec.segments = tuple(s for s in segs if s is not None)
        if rec.request is None and rec.source and rec.destination and \
                rec.source != "0.0.0.0":
            asked = self._asked_for(rec, objs)
            if asked is not None:
                rec.request, rec.computed = asked
            else:
                ends = EndPoints(source=rec.source, destination=rec.destination)
                rec.request = self._path_request(ends, objs, report=True)
        if rec.computed is None and rec.request is not None and rec.segments:
            head = engine.sr.by_router_id.get(rec.request.source)
            delay = engine.sr.delay_ms(head, rec.segments) if head else None
            if delay is not None:
                rec.computed = Answer(segments=rec.segments, latency_ms=delay)

    def _asked_for(self, rec: LspRecord, objs: list[PcepObject]
                   ) -> tuple[PathRequest, Answer] | None:
        """The latest request for the LSP's ends answered with the SIDs it reports (and the
        bandwidth, when it reports one)."""
        labels = [s.label for s in rec.segments]
        bandwidth = next((o.mbps for o in objs if isinstance(o, Bandwidth)
                          and o.obj_type == 1), None)
        assert rec.source is not None and rec.destination is not None
        for req, answer in reversed(self.asked.get((rec.source, rec.destination), [])):
            if [s.label for s in answer.segments] != labels:
                continue
            if bandwidth is not None and not math.isclose(bandwidth, req.min_bandwidth_mbps,
                                                          rel_tol=1e-6, abs_tol=1e-9):
                continue
            return req, answer
        return None

    async def send_update(self, rec: LspRecord, answer: Answer, srp_id: int) -> None:
        self.pending_srp[srp_id] = rec.plsp_id
        self.info.counters["updates"] += 1
        self.server.metrics["updates"] += 1
        assert rec.request is not None
        await self.send(MessageType.PCUPD, [
            Srp(srp_id=srp_id),
            Lsp(plsp_id=rec.plsp_id, delegate=True, administrative=True, name=None),
            *_answer_objects(answer, rec.request, for_reply=False)])

    async def send_initiate(self, req: PathRequest, answer: Answer, name: str, color: int,
                            srp_id: int) -> None:
        self.pending_srp[srp_id] = 0
        self.info.counters["initiates"] += 1
        self.server.metrics["initiates"] += 1
        await self.send(MessageType.PCINITIATE, [
            Srp(srp_id=srp_id),
            Lsp(plsp_id=0, delegate=True, administrative=True, create=True, name=name),
            EndPoints(source=req.source, destination=req.destination),
            *_answer_objects(answer, req, for_reply=False), PolicyColor(color=color)])


def _split(objects: list[PcepObject], head: type[PcepObject],
           leading: tuple[type[PcepObject], ...] = ()) -> list[tuple[PcepObject | None,
                                                                     list[PcepObject]]]:
    """Objects grouped by each ``head`` object (an RP per request, an LSP per report); objects
    of a ``leading`` kind (an SRP) belong to the next group."""
    groups: list[tuple[PcepObject | None, list[PcepObject]]] = []
    carry: list[PcepObject] = []
    for o in objects:
        if isinstance(o, head):
            groups.append((o, carry))
            carry = []
        elif leading and isinstance(o, leading):
            carry.append(o)
        elif groups:
            groups[-1][1].append(o)
        else:
            groups.append((None, [o]))
    if carry and groups:
        groups[-1][1].extend(carry)
    return groups


def _echo_rp(rp: Rp) -> Rp:
    return Rp(request_id=rp.request_id, flags=rp.flags & 0x7)  # keep the priority only


def _answer_objects(answer: Answer, req: PathRequest, *, for_reply: bool) -> list[PcepObject]:
    """A path as ERO and METRIC objects (delay in microseconds, then the objective's cost),
    or NO-PATH with the bounds it could not meet."""
    delay_us = Metric(metric_type=MetricType.PATH_DELAY, value=answer.latency_ms * 1000.0,
                      computed=True)
    if not answer.found:
        objs: list[PcepObject] = [NoPath(reason_flags={"source": 0x4, "destination": 0x2}.get(
            answer.unknown_endpoint or "", 0))]
        if not math.isinf(req.max_latency_ms):
            objs.append(Metric(metric_type=MetricType.PATH_DELAY,
                               value=req.max_latency_ms * 1000.0, bound=True))
        return objs
    ero = Ero(segments=[SrSubobject(label=s.label, nai_type=codec.NAI_IPV4_NODE
                                    if s.kind == "node" else codec.NAI_IPV4_ADJACENCY,
                                    nai=s.nai) for s in answer.segments])
    cost_type = MetricType.IGP if req.objective == "igp" else MetricType.TE
    cost = Metric(metric_type=cost_type, value=float(answer.cost(
        "igp" if req.objective == "igp" else "te")), computed=True)
    objs = [ero, delay_us, cost]
    if for_reply and req.min_bandwidth_mbps:
        objs.append(Bandwidth(bytes_per_s=req.min_bandwidth_mbps * 1e6 / 8))
    return objs


class PceServer:
    """A PCE listening on ``host:port`` (port 0: any free port) for PCEP sessions."""

    def __init__(self, engine: PceEngine, host: str = "127.0.0.1", port: int = 4189, *,
                 keepalive_s: int = 30, dead_timer_s: int = 120,
                 open_wait_s: float = OPEN_WAIT_S, request_rate: float = 500.0,
                 request_burst: int = 1000, max_sessions: int = 256,
                 max_lsps_per_pcc: int = MAX_LSPS_PER_PCC,
                 write_timeout_s: float = WRITE_TIMEOUT_S) -> None:
        ipaddress.ip_address(host)  # a literal address: ValueError otherwise
        self.engine = engine
        self.host = host
        self.port = port
        self.keepalive_s = keepalive_s
        self.dead_timer_s = dead_timer_s
        self.open_wait_s = open_wait_s
        self.request_rate = request_rate
        self.request_burst = request_burst
        self.max_sessions = max_sessions
        self.max_lsps_per_pcc = max_lsps_per_pcc
        self.write_timeout_s = write_timeout_s
        self.lock = threading.RLock()
        self.sessions_by_peer: dict[str, _Session] = {}
        self.metrics: dict[str, int] = {
            "sessions_opened": 0, "sessions_closed": 0, "sessions_refused": 0,
            "requests": 0, "replies_path": 0, "replies_no_path": 0, "rate_limited": 0,
            "updates": 0, "initiates": 0, "errors_sent": 0}
        self._latencies: list[float] = []
        self._next_session_id = 0
        self._next_srp_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # lifecycle --------------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> int:
        """Listen in a daemon thread; returns the port. Raises OSError when it cannot."""
        started: Future[int] = Future()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(asyncio.start_server(
                    self._accept, self.host, self.port, reuse_address=True))
            except OSError as exc:
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(self._server.sockets[0].getsockname()[1])
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="cpn-pcep", daemon=True)
        self._thread.start()
        self.port = started.result(timeout_s)
        log.info("PCEP listening on %s:%s", self.host, self.port)
        return self.port

    def stop(self, timeout_s: float = 5.0) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for sess in list(self.sessions_by_peer.values()):
                with contextlib.suppress(Exception):
                    await sess.send(MessageType.CLOSE, [Close(reason=1)])
                sess.writer.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        self._thread.join(timeout_s)

    def record_latency(self, seconds: float) -> None:
        self._latencies.append(seconds)
        del self._latencies[:-1000]

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer_host, peer_port = writer.get_extra_info("peername")[:2]
        self._next_session_id = (self._next_session_id + 1) % 256
        info = SessionInfo(peer=peer_host, port=peer_port, session_id=self._next_session_id,
                           connected_at=time.time())
        sess = _Session(self, reader, writer, info)
        if peer_host in self.sessions_by_peer or len(self.sessions_by_peer) >= self.max_sessions:
            self.metrics["sessions_refused"] += 1
            with contextlib.suppress(Exception):
                await sess.send_error(9, 1)  # one session per PCC
                await sess.send(MessageType.CLOSE, [Close(reason=1)])
            writer.close()
            return
        self.sessions_by_peer[peer_host] = sess
        self.metrics["sessions_opened"] += 1
        try:
            await sess.run()
        except _SessionClosed as exc:
            log.info("pcep %s: %s", peer_host, exc)
        # a session that fails in any other way is logged and closed; the PCE and its other
        # sessions go on
        except Exception:  # noqa: BLE001
            log.exception("pcep %s: session failed", peer_host)
        except asyncio.CancelledError:
            pass  # the PCE is stopping
        finally:
            if task is not None:
                self._tasks.discard(task)
            self.sessions_by_peer.pop(peer_host, None)
            self.metrics["sessions_closed"] += 1
            with self.lock:
                self.engine.drop_pcc(peer_host)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _srp_id(self) -> int:
        self._next_srp_id = self._next_srp_id % 0xFFFFFFFD + 1
        return self._next_srp_id

    def _call(self, coro_fn: Any, timeout_s: float = 10.0) -> Any:
        if self._loop is None:
            raise RuntimeError("the PCE is not running")
        return asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(timeout_s)

    # what the API calls (thread-safe) ------------------------------------------------------
    def sessions(self) -> list[dict[str, Any]]:
        return [s.info.as_dict() for s in list(self.sessions_by_peer.values())]

    def lsps(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.as_dict() for _, r in sorted(self.engine.lsps.items())]

    def lsp(self, pcc: str, plsp_id: int) -> dict[str, Any] | None:
        with self.lock:
            rec = self.engine.lsps.get((pcc, plsp_id))
            return rec.as_dict() if rec else None

    def links(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.engine.link_state(i) for i in range(len(self.engine.topology.links))]

    def compute(self, req: PathRequest) -> Answer:
        with self.lock:
            return self.engine.compute(req)

    def stats(self) -> dict[str, Any]:
        lat = sorted(self._latencies)
        out: dict[str, Any] = dict(self.metrics)
        out["sessions_up"] = sum(1 for s in self.sessions_by_peer.values()
                                 if s.info.state == "up")
        out["lsps"] = len(self.engine.lsps)
        out["lsps_delegated"] = sum(1 for r in self.engine.lsps.values() if r.delegated)
        out["request_ms_p50"] = round(lat[len(lat) // 2] * 1000, 3) if lat else None
        out["request_ms_max"] = round(lat[-1] * 1000, 3) if lat else None
        return out

    def set_link(self, a: str, b: str, *, up: bool | None = None,
                 latency_ms: float | None = None) -> list[dict[str, Any]]:
        """Change a link, then move every delegated LSP it pushed out of its bound (a PCUpd
        each). Returns one entry per LSP moved or left without a path. KeyError for an
        unknown link, ValueError for a bad delay."""

        async def go() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            with self.lock:
                self.engine.set_link(self.engine.link_index(a, b), up=up, latency_ms=latency_ms)
                moves = self.engine.reoptimize()
                now = time.time()
                sends = []
                for rec, answer in moves:
                    entry = {"pcc": rec.pcc, "plsp_id": rec.plsp_id, **answer.as_dict()}
                    sess = self.sessions_by_peer.get(rec.pcc)
                    if answer.found and sess is not None:
                        srp_id = self._srp_id()
                        rec.computed = answer
                        rec.note(now, "update", srp_id=srp_id,
                                 labels=[s.label for s in answer.segments],
                                 latency_ms=round(answer.latency_ms, 6))
                        entry["srp_id"] = srp_id
                        sends.append((sess, rec, answer, srp_id))
                    else:
                        rec.note(now, "no path", reason=answer.reason)
                    out.append(entry)
            # at once: a PCC that does not read holds up only its own updates
            await asyncio.gather(*(sess.send_update(rec, answer, srp_id)
                                   for sess, rec, answer, srp_id in sends),
                                 return_exceptions=True)
            return out

        return list(self._call(go, self.write_timeout_s + 10.0))

    def initiate(self, pcc: str, req: PathRequest, name: str, color: int = 1) -> dict[str, Any]:
        """Ask the PCC at ``pcc`` to create an LSP, of SR policy colour ``color``, on the
        path computed for ``req`` (PCInitiate). LookupError when no such session is up or
        it does not take PCE-initiated LSPs; the answer's reason when no path meets the
        bounds."""

        async def go() -> dict[str, Any]:
            sess = self.sessions_by_peer.get(pcc)
            if sess is None or sess.info.state != "up":
                raise LookupError(f"no PCEP session with {pcc} is up")
            if not sess.info.instantiation:
                raise LookupError(f"the PCC at {pcc} did not open with the LSP-instantiation "
                                  "capability (I flag)")
            with self.lock:
                answer = self.engine.compute(req)
            if not answer.found:
                return {"sent": False, **answer.as_dict()}
            srp_id = self._srp_id()
            try:
                await sess.send_initiate(req, answer, name, color, srp_id)
            except (_SessionClosed, OSError) as exc:
                raise LookupError(f"the session with {pcc} ended: {exc}") from None
            return {"sent": True, "srp_id": srp_id, **answer.as_dict()}

        return dict(self._call(go, self.write_timeout_s + 10.0))

    def remove_initiated(self, pcc: str, plsp_id: int) -> dict[str, Any]:
        """Ask the PCC at ``pcc`` to remove its LSP ``plsp_id`` (PCInitiate with the SRP's R
        flag; RFC 8281 lets a PCE remove only the LSPs it created). KeyError for an LSP not
        in the database, LookupError when its session is not up; the PCC's report with the
        LSP's R flag then removes it from the database."""

        async def go() -> dict[str, Any]:
            with self.lock:
                rec = self.engine.lsps.get((pcc, plsp_id))
                if rec is None:
                    raise KeyError(f"no LSP {plsp_id} of PCC {pcc}")
                srp_id = self._srp_id()
                rec.note(time.time(), "remove", srp_id=srp_id)
            sess = self.sessions_by_peer.get(pcc)
            if sess is None or sess.info.state != "up":
                raise LookupError(f"no PCEP session with {pcc} is up")
            sess.pending_srp[srp_id] = plsp_id
            try:
                await sess.send(MessageType.PCINITIATE, [
                    Srp(srp_id=srp_id, remove=True),
                    Lsp(plsp_id=plsp_id, delegate=True, name=rec.name)])
            except (_SessionClosed, OSError) as exc:
                raise LookupError(f"the session with {pcc} ended: {exc}") from None
            return {"sent": True, "srp_id": srp_id}

        return dict(self._call(go, self.write_timeout_s + 10.0))
