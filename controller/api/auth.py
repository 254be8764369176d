"""Who may call what, for the app: one FastAPI dependency (:meth:`ApiAuth.require`) on every
route that needs a token, the per-token write rate limit, and the 401/403/429 answers in the
OpenAPI document.

A call is checked in this order (the role table and the token file are in
:mod:`controller.api.tokens`):

1. A read that needs ``viewer`` while reads are open (the API on loopback): passes with no
   token.
2. No token, or one that matches no stored hash: 401 ``unauthorized``.
3. The token's role below the call's (:func:`~controller.api.tokens.required_role`): 403
   ``forbidden`` naming the role needed (``required_role`` in the body).
4. A write beyond the token's rate (a token bucket per token name: ``write_burst`` at once,
   ``write_rate_per_s`` sustained): 429 ``rate_limited`` with ``Retry-After``. Reads are
   not limited, refused writes take nothing from the bucket.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter

from controller.api.openapi import ERROR_REF, edit_operations
from controller.api.tokens import (
    ROUTE_ROLES,
    WRITE_METHODS,
    TokenRegistry,
    allows,
    required_role,
)
from controller.errors import Forbidden, RateLimited, Unauthorized
from controller.network.counters import PROCESS_REGISTRY

__all__ = ["API_REFUSED", "ApiAuth", "WriteRateLimiter", "document_auth"]

API_REFUSED = Counter(
    "cpn_api_refused", "API calls refused by the access rules, by reason (unauthorized, "
    "forbidden, rate_limited)", ["reason"], registry=PROCESS_REGISTRY)


class WriteRateLimiter:
    """A token bucket per token name: ``burst`` writes at once, refilled at ``rate_per_s``
    (0: no limit). ``clock``: monotonic seconds (tests pass their own)."""

    def __init__(self, rate_per_s: float, burst: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(burst, 1)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        """name -> (tokens left, when last refilled)"""

    def take(self, name: str) -> float:
        """Take one write from ``name``'s bucket: 0.0 when allowed, else the seconds until
        the next write would be."""
        if self.rate_per_s <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            left, then = self._buckets.get(name, (float(self.burst), now))
            left = min(float(self.burst), left + (now - then) * self.rate_per_s)
            if left >= 1.0:
                self._buckets[name] = (left - 1.0, now)
                return 0.0
            self._buckets[name] = (left, now)
            return (1.0 - left) / self.rate_per_s


class ApiAuth:
    """The app's access rules: ``tokens``, whether reads are open without a token, and the
    write rate limit."""

    def __init__(self, tokens: TokenRegistry, *, read_open: bool = True,
                 limiter: WriteRateLimiter | None = None) -> None:
        self.tokens = tokens
        self.read_open = read_open
        self.limiter = limiter if limiter is not None else WriteRateLimiter(0.0, 1)
        self.bearer = HTTPBearer(auto_error=False, description="API token (docs/security.md)")

    def token_name(self, token: str) -> str | None:
        """The name of ``token`` when it is a stored one (for the audit trail)."""
        entry = self.tokens.authenticate(token)
        return entry.name if entry is not None else None

    def dependency(self) -> Any:
        """``Depends(...)`` of :meth:`require` with the bearer scheme (for routes'
        ``dependencies=[...]``)."""
        credentials = Depends(self.bearer)

        def require(request: Request,
                    creds: HTTPAuthorizationCredentials | None = credentials) -> None:
            self.require(request, creds)

        return Depends(require)

    def require(self, request: Request, creds: HTTPAuthorizationCredentials | None) -> None:
        """Check one call (see the module docstring); raises the 401/403/429 errors."""
        method = request.method.upper()
        path: str = request.scope.get("path", "")
        need = required_role(method, path)
        write = method in WRITE_METHODS
        if not write and need == "viewer" and self.read_open:
            return
        if creds is None:
            API_REFUSED.labels(reason="unauthorized").inc()
            raise Unauthorized("this call needs 'Authorization: Bearer <token>'")
        entry = self.tokens.authenticate(creds.credentials)
        if entry is None:
            API_REFUSED.labels(reason="unauthorized").inc()
            raise Unauthorized("bad API token")
        if not allows(entry, need, method, path):
            API_REFUSED.labels(reason="forbidden").inc()
            which = (" of that site, or admin" if need == "site" else "")
            mine = f" of site {entry.site}" if entry.site is not None else ""
            raise Forbidden(f"{method} {path} needs role {need}{which}; token {entry.name!r} "
                            f"has role {entry.role}{mine}", required_role=need)
        if write:
            wait_s = self.limiter.take(entry.name)
            if wait_s > 0:
                retry = max(1, math.ceil(wait_s))
                API_REFUSED.labels(reason="rate_limited").inc()
                raise RateLimited(f"token {entry.name!r} is over its write rate "
                                  f"({self.limiter.rate_per_s:g}/s, burst "
                                  f"{self.limiter.burst}); retry in {retry} s",
                                  retry_after_s=retry)


def document_auth(app: FastAPI) -> None:
    """Say in the OpenAPI document which calls may answer 403 (a role needed beyond
    ``viewer``) and 429 (every write), and which role each needs."""

    def edit(path: str, method: str, op: dict[str, Any]) -> None:
        need = required_role(method, path)
        responses = op.setdefault("responses", {})
        if need != "viewer" or (method, path) in ROUTE_ROLES:
            responses.setdefault("403", {
                "description": f"forbidden: this call needs role {need} (required_role); "
                               "the token's role is below it",
                "content": {"application/json": {"schema": ERROR_REF}}})
            note = f"Needs role **{need}**."
            if note not in op.get("description", ""):
                op["description"] = f"{op.get('description', '')}\n\n{note}".strip()
        if method in WRITE_METHODS:
            responses.setdefault("429", {
                "description": "rate_limited: the token is over its write rate",
                "headers": {"Retry-After": {
                    "description": "seconds until a write is accepted again",
                    "schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": ERROR_REF}}})

    edit_operations(app, edit)
