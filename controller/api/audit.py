"""The audit trail of the API's writes: every ``POST``/``PUT``/``PATCH``/``DELETE`` under
``/api/v1``, answered or refused (401, 403, 429, 503, 4xx, 5xx), recorded with its time,
token name (None without a valid token), remote address, method, path, status and the
SHA-256 of the request body, in the store (SQLite alone, etcd in a cluster), the latest
``retention`` records kept. Read at ``GET /api/v1/audit`` (admin) and ``cpnctl audit``.

* :class:`AuditLayer` is one ASGI layer, outermost, so it sees every write whichever layer
  answers it (the cluster gate's 503 included) and whatever route declared it. It reads
  the body first (to hash all of it, also when the call is refused before the body would
  be read) and hands it on unchanged.
* :class:`AuditTrail` takes records without waiting and writes them to the store from one
  thread, in batches (gathered for up to 0.25 s, so a burst of writes costs the store one
  commit, not one each). A write is not slowed by its record, and a store that is briefly down
  does not fail the request: the records wait (at most ``max_pending``; beyond that the
  oldest are dropped and counted) and are written when the store answers again; the
  outage and the recovery are logged once each. ``GET /audit`` first waits (bounded) for
  what is queued, so a write's record is there when its answer has come.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query
from prometheus_client import Counter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.api.tokens import API_PREFIX, WRITE_METHODS
from controller.network.counters import PROCESS_REGISTRY

if TYPE_CHECKING:
    from controller.store import Store

__all__ = ["AUDIT_RECORDS", "AuditLayer", "AuditRecordOut", "AuditTrail", "audit_router"]

AUDIT_RECORDS = Counter(
    "cpn_api_audit_records", "audit records written to the store, and dropped (the store "
    "stayed down while more than max_pending waited)", ["outcome"],
    registry=PROCESS_REGISTRY)

log = logging.getLogger("controller.api.audit")

FLUSH_ON_READ_S = 2.0
RETRY_S = 1.0
LINGER_S = 0.25
"""how long the writer gathers records before one transaction writes them (fewer commits, so
fewer fsyncs competing with the writes being audited; a read of the trail does not wait)"""


class AuditTrail:
    """Audit records on their way to ``store``: :meth:`record` queues one, a daemon thread
    writes them in batches (``add_audit`` with ``retention``)."""

    def __init__(self, store: Store, retention: int = 10_000, *, max_pending: int = 10_000,
                 batch: int = 200, linger_s: float = LINGER_S) -> None:
        self.store = store
        self.linger_s = linger_s
        self.retention = retention
        self.max_pending = max_pending
        self.batch = batch
        self.dropped = 0
        """records dropped because the store stayed down while ``max_pending`` piled up"""
        self.written = 0
        self._pending: deque[dict[str, Any]] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closing = False
        self._failing = False
        self._urgent = 0
        """flushes waiting: the writer does not linger meanwhile"""
        self._thread = threading.Thread(target=self._run, name="cpn-audit", daemon=True)
        self._thread.start()

    def record(self, **fields: Any) -> None:
        """Queue one record (fields of :data:`controller.store.interface.AUDIT_FIELDS`);
        never blocks on the store."""
        with self._cond:
            self._pending.append(fields)
            self._bound()
            self._cond.notify_all()

    def _bound(self) -> None:
        """Drop the oldest records beyond ``max_pending`` (the lock held)."""
        while len(self._pending) > self.max_pending:
            self._pending.popleft()
            self.dropped += 1
            AUDIT_RECORDS.labels(outcome="dropped").inc()

    def flush(self, timeout_s: float = FLUSH_ON_READ_S) -> bool:
        """Wait until every record queued so far is written (or ``timeout_s``); True when
        it is."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._urgent += 1
            self._cond.notify_all()
            try:
                while self._pending or self._in_flight:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return False
                    self._cond.wait(left)
            finally:
                self._urgent -= 1
        return True

    def close(self, timeout_s: float = 1.0) -> None:
        """Write what is queued (within ``timeout_s``; at once when the store is failing,
        so a stop is not held by a store that does not answer), then stop the thread."""
        if not self._failing:
            self.flush(timeout_s)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        with self._cond:
            if self._pending:
                log.warning(f"{len(self._pending)} audit records not written at stop (the "
                            "store did not answer)", extra={"event": "audit_lost"})

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                linger_until = time.monotonic() + self.linger_s
                while (len(self._pending) < self.batch and not self._urgent
                       and not self._closing and time.monotonic() < linger_until):
                    self._cond.wait(max(0.0, linger_until - time.monotonic()))
                batch = [self._pending.popleft()
                         for _ in range(min(self.batch, len(self._pending)))]
                self._in_flight = len(batch)
            ok = self._write(batch)
            with self._cond:
                self._in_flight = 0
                if not ok:  # back to the front, in order, for the next try
                    self._pending.extendleft(reversed(batch))
                    self._bound()
                self._cond.notify_all()
                if not ok:
                    self._cond.wait(RETRY_S)

    def _write(self, batch: list[dict[str, Any]]) -> bool:
        try:
            self.store.add_audit(batch, retention=self.retention)
        except Exception as exc:  # noqa: BLE001 - any store failure: keep and retry
            if not self._failing:
                self._failing = True
                log.warning(f"cannot write the audit trail to the store, retrying every "
                            f"{RETRY_S:g} s (requests are not affected): {exc}",
                            extra={"event": "audit_store_error"})
            return False
        self.written += len(batch)
        AUDIT_RECORDS.labels(outcome="written").inc(len(batch))
        if self._failing:
            self._failing = False
            log.info(f"audit trail written to the store again ({len(batch)} records)",
                     extra={"event": "audit_store_ok"})
        return True


class AuditLayer:
    """ASGI layer recording every write under ``/api/v1`` to ``trail`` once answered (see
    the module docstring). ``identify``: the name of a bearer token (None when no stored
    token matches), asked here rather than after authentication so that a write refused
    before it (a malformed body, the cluster gate) still names who sent it."""

    def __init__(self, app: ASGIApp, trail: AuditTrail,
                 identify: Callable[[str], str | None]) -> None:
        self.app = app
        self.trail = trail
        self.identify = identify

    def _token_name(self, scope: Scope) -> str | None:
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and credentials.strip():
                    return self.identify(credentials.strip())
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        if (scope["type"] != "http" or scope.get("method") not in WRITE_METHODS
                or not (path == API_PREFIX or path.startswith(f"{API_PREFIX}/"))):
            await self.app(scope, receive, send)
            return
        started = time.time()
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status: list[int] = []

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, replay, send_status)
        finally:
            client = scope.get("client")
            self.trail.record(time=started, token=self._token_name(scope),
                              remote=client[0] if client else None, method=scope["method"],
                              path=path, status=status[0] if status else 500,
                              body_sha256=hashlib.sha256(body).hexdigest())


class AuditRecordOut(BaseModel):
    id: int = Field(description="grows with every record; never reused")
    time: str = Field(description="when the request came, ISO 8601 UTC")
    token: str | None = Field(description="the token's name; null without a valid token")
    remote: str | None = Field(description="the client's address")
    method: str
    path: str
    status: int = Field(description="the HTTP status answered")
    body_sha256: str = Field(description="hex SHA-256 of the request body")


def _out(record: dict[str, Any]) -> dict[str, Any]:
    when = datetime.fromtimestamp(float(record["time"]), tz=UTC)
    return {**record, "time": when.isoformat(timespec="milliseconds")}


def audit_router(trail: AuditTrail, store: Store, *, dependencies: list[Any],
                 responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    """``GET /api/v1/audit`` behind ``dependencies`` (admin)."""
    r = APIRouter(prefix=API_PREFIX, tags=["audit"])

    @r.get("/audit", response_model=list[AuditRecordOut], responses=responses,
           dependencies=dependencies)
    async def audit(limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
                    since: Annotated[int, Query(ge=0, le=2**62)] = 0) -> list[dict[str, Any]]:
        """The audit trail of writes, oldest first: with ``since`` (an audit id) the first
        ``limit`` records after it, else the latest ``limit``. Every write and every
        refused write under /api/v1: time, token name, remote address, method, path,
        status, SHA-256 of the body."""
        def read() -> list[dict[str, Any]]:
            trail.flush()
            return [_out(rec) for rec in store.audit(limit=limit, since_id=since)]

        return await run_in_threadpool(read)

    return r
