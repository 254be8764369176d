"""One exception hierarchy for the controller.

Each class carries its HTTP status (``http_status``) and a machine-readable ``code``; the API
layer maps them to responses in one place (``controller.api.rest``), so every module raises
these rather than bare ``ValueError``/``KeyError`` for conditions an operator should see.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class CpnError(Exception):
    """Base of every error the controller reports to an operator."""

    http_status = 500
    code = "internal"


class TopologyError(CpnError):
    """A topology file or import is invalid.

    ``source`` is the file (or "<string>"), ``line`` the 1-based line of the offending item when
    known, ``field`` the dotted path of the field (e.g. ``links[3].latency_ms``).
    """

    http_status = 400
    code = "bad_topology"

    def __init__(self, message: str, *, source: str = "<string>", line: int | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        where = source if line is None else f"{source}:{line}"
        what = f"{field}: " if field else ""
        super().__init__(f"{where}: {what}{message}")


class BadRequest(CpnError):
    """A request is malformed in a way its schema cannot say (a bad dpid, equal ends)."""

    http_status = 400
    code = "bad_request"


class Unauthorized(CpnError):
    """A call lacks the API token it needs, or carries a wrong one."""

    http_status = 401
    code = "unauthorized"


class Forbidden(CpnError):
    """A call's token is valid but its role is below the one the call needs
    (``required_role``: viewer, operator or admin)."""

    http_status = 403
    code = "forbidden"

    def __init__(self, message: str, *, required_role: str) -> None:
        self.required_role = required_role
        super().__init__(message)


class RateLimited(CpnError):
    """A token sent writes faster than its rate allows; ``retry_after_s``: whole seconds
    until the next write is accepted (the ``Retry-After`` header)."""

    http_status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class NotFound(CpnError):
    """An object named in a request does not exist (node, host, intent, site)."""

    http_status = 404
    code = "not_found"


class Conflict(CpnError):
    """A request clashes with the current state (removing an intent of the topology file)."""

    http_status = 409
    code = "conflict"


class StoreError(CpnError):
    """The state store cannot be opened, read or written."""

    http_status = 500
    code = "store"


class ClusterUnavailable(StoreError):
    """The cluster's store (etcd) does not answer, or this member is cut off from it: writes
    are refused (nothing changed) while reads are served from the member's last applied
    state."""

    http_status = 503
    code = "cluster_unavailable"


class StaleWrite(Conflict):
    """A conditional write lost a race: another member committed a change to the same records
    after the state this write was computed from (retry on the newer state). ``revision``:
    the newer state's etcd revision, when known."""

    code = "stale_write"

    def __init__(self, message: str, *, revision: int | None = None) -> None:
        super().__init__(message)
        self.revision = revision


class InfeasibleRoute(CpnError):
    """No path meets the requested bounds; ``reason`` says which bound failed and by how much."""

    http_status = 409
    code = "infeasible"

    def __init__(self, reason: str, *, best_latency_ms: float | None = None) -> None:
        self.reason = reason
        self.best_latency_ms = best_latency_ms
        super().__init__(reason)


class LabError(CpnError):
    """The Mininet lab cannot run here (not root, OVS missing, Mininet failed)."""

    code = "lab"


class ComputeSiteError(BadRequest):
    """A compute site, service or placement request is malformed (bad id, unknown node, negative
    capacity, unknown kind, state or policy)."""

    code = "bad_compute_request"


class ComputeConflict(Conflict):
    """A compute request clashes with the current state: duplicate site id or service name,
    capacity below what is reserved, removing a site that still holds reservations."""


class NoCapacity(InfeasibleRoute):
    """No compute site can take a demand within the latency bound.

    ``reasons`` lists, one line each, why the candidates failed (none of the kind in the bound,
    full, down, draining, no path with the bandwidth); ``candidates`` holds the same per site as
    dicts (``site``, ``latency_ms``, ``status``, ...) for the API to return verbatim.
    """

    code = "no_capacity"

    def __init__(self, reasons: list[str], *, candidates: list[dict[str, object]] | None = None,
                 best_latency_ms: float | None = None) -> None:
        self.reasons = list(reasons)
        self.candidates = list(candidates or [])
        super().__init__("; ".join(self.reasons), best_latency_ms=best_latency_ms)


class InsufficientBandwidth(InfeasibleRoute):
    """Admission control: an intent's ``min_bandwidth_mbps`` does not fit in what the admitted
    intents leave of the links within its latency bound (``bottleneck``: the tightest link of
    the best path within the bound: ``link`` "a-b", ``index``, ``residual_mbps``,
    ``bandwidth_mbps``)."""

    code = "insufficient_bandwidth"

    def __init__(self, reason: str, *, bottleneck: dict[str, object] | None = None,
                 best_latency_ms: float | None = None) -> None:
        self.bottleneck = bottleneck
        super().__init__(reason, best_latency_ms=best_latency_ms)


class SwitchUnavailable(CpnError):
    """A live read could not be answered: the switch is not connected, the connection was lost,
    it answered with an OpenFlow error, or not within the time bound."""

    http_status = 503
    code = "switch_unavailable"


def lookup(table: Mapping[K, V], key: K, missing: str) -> V:
    """``table[key]``, or :class:`NotFound` saying ``missing.format(key)`` (a key that cannot
    be in the table at all, say an unhashable one from a request, is missing too)."""
    try:
        return table[key]
    except (KeyError, TypeError):
        raise NotFound(missing.format(key)) from None
