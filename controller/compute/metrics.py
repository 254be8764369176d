"""Live compute metrics of a site (IETF CATS): what a site reports, how fresh it is, its levels.

A site reports, by push (``PUT /api/v1/compute-sites/{id}/metrics``) or by pull (its
``metrics_url`` scraped by :mod:`controller.compute.scraper`), at least::

    {"utilisation": 0..1, "compute_delay_ms": >= 0, "free_capacity": >= 0 | null,
     "healthy": true | false}

plus other fields, kept as given (JSON scalars). :func:`parse_metrics` checks all of it and
raises :class:`ComputeSiteError` (400) naming the field for nonsense, so a caller that keeps
the last good :class:`SiteMetrics` keeps it untouched. Pure: the time is an argument.

Freshness: metrics are *fresh* while their age is at most three reporting intervals
(:func:`is_fresh`); older ones are *stale*, and what stale means for selection is a setting
(``compute.stale_policy``, default: the site takes no new clients).

Levels, after the CATS metric definition (raw values, then one normalised score per category,
then one overall score), by :func:`levels`:

* **level 0, raw**: the values as reported.
* **level 1, per category, each in 0..1 (1 = best)**:

  - ``compute`` = mean of ``1 - utilisation`` and ``D / (D + compute_delay_ms)`` with
    ``D = COMPUTE_DELAY_REF_MS`` (10 ms): an idle site with no queue scores 1, a site at
    utilisation 0.5 with 10 ms of queueing and processing delay scores 0.5;
  - ``capacity`` = ``free_capacity / capacity`` clipped to 0..1 when the site's capacity is
    known, else 1 if anything is free and 0 if nothing is; absent (``None``) when the site
    does not report free capacity;
  - ``health`` = 1 if healthy, else 0.

* **level 2, overall**: ``health x (2 x compute + capacity) / 3``, or ``health x compute``
  without a capacity score: an unhealthy site scores 0 whatever its load, and the compute
  category (which carries the delay the client sees) weighs twice the capacity one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.errors import ComputeSiteError

__all__ = [
    "COMPUTE_DELAY_REF_MS",
    "FRESH_INTERVALS",
    "MAX_COMPUTE_DELAY_MS",
    "MAX_FIELDS",
    "SOURCES",
    "SiteMetrics",
    "age_s",
    "is_fresh",
    "levels",
    "parse_metrics",
]

SOURCES: tuple[str, ...] = ("push", "pull")
FRESH_INTERVALS = 3
"""metrics older than this many reporting intervals are stale"""
COMPUTE_DELAY_REF_MS = 10.0
"""the compute delay that halves the delay part of the ``compute`` score"""
MAX_COMPUTE_DELAY_MS = 3_600_000.0
"""an hour: a larger compute delay is refused as nonsense"""
MAX_FREE_CAPACITY = 1e12
MAX_FIELDS = 36
"""fields of one report at most (the four above and the others)"""
MAX_EXTRA_TEXT = 256
_CORE = ("utilisation", "compute_delay_ms", "free_capacity", "healthy")


@dataclass(frozen=True, slots=True)
class SiteMetrics:
    """One good report of a site's metrics, as received."""

    utilisation: float
    """share of the site's computing in use, 0..1"""
    compute_delay_ms: float
    """queueing plus processing delay a new request sees at the site, >= 0"""
    free_capacity: float | None
    """free capacity in the site's unit (None: not reported)"""
    healthy: bool
    extra: Mapping[str, Any] = field(default_factory=dict)
    """other fields of the report, as given"""
    received_at: float = 0.0
    """monotonic seconds when the report arrived"""
    source: str = "push"
    """``push`` or ``pull``"""

    def raw(self) -> dict[str, Any]:
        """Level 0: the report's values (core fields, then the others)."""
        return {"utilisation": self.utilisation, "compute_delay_ms": self.compute_delay_ms,
                "free_capacity": self.free_capacity, "healthy": self.healthy,
                **dict(self.extra)}


def _number(body: Mapping[str, Any], name: str, low: float, high: float) -> float:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ComputeSiteError(f"metrics field {name!r} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ComputeSiteError(f"metrics field {name!r} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ComputeSiteError(f"metrics field {name!r} must be between {low:g} and {high:g}, "
                               f"got {value!r}")
    return float(value)


def _extra_value(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ComputeSiteError(f"metrics field {name!r} must be a finite number, "
                                   f"got {value!r}")
        return value
    if isinstance(value, str) and len(value) <= MAX_EXTRA_TEXT:
        return value
    raise ComputeSiteError(f"metrics field {name!r} must be a number, a boolean, null or text "
                           f"of at most {MAX_EXTRA_TEXT} characters")


def parse_metrics(body: Mapping[str, Any], now: float, source: str) -> SiteMetrics:
    """A site's report as :class:`SiteMetrics` received at ``now`` from ``source``.

    Raises :class:`ComputeSiteError` naming the field for a missing field, text, NaN or
    infinity, a negative or absurd delay, a utilisation outside 0..1, a negative free capacity,
    a ``healthy`` that is not a boolean, or extra fields that are not JSON scalars (at most
    ``MAX_FIELDS`` fields in all, names of 1-64 characters, texts of at most 256)."""
    if source not in SOURCES:
        raise ComputeSiteError(f"metrics source must be one of {', '.join(SOURCES)}, "
                               f"got {source!r}")
    if not isinstance(body, Mapping):
        raise ComputeSiteError("site metrics are a mapping of fields")
    for name in ("utilisation", "compute_delay_ms", "healthy"):
        if name not in body:
            raise ComputeSiteError(f"metrics field {name!r} is required")
    utilisation = _number(body, "utilisation", 0.0, 1.0)
    delay = _number(body, "compute_delay_ms", 0.0, MAX_COMPUTE_DELAY_MS)
    free = (None if body.get("free_capacity") is None
            else _number(body, "free_capacity", 0.0, MAX_FREE_CAPACITY))
    healthy = body["healthy"]
    if not isinstance(healthy, bool):
        raise ComputeSiteError(f"metrics field 'healthy' must be true or false, got {healthy!r}")
    others = [k for k in body if k not in _CORE]
    if len(body) > MAX_FIELDS:
        raise ComputeSiteError(f"at most {MAX_FIELDS} metrics fields, got {len(body)}")
    extra: dict[str, Any] = {}
    for k in others:
        if not isinstance(k, str) or not 0 < len(k) <= 64:
            raise ComputeSiteError(f"bad metrics field name {k!r}")
        extra[k] = _extra_value(k, body[k])
    return SiteMetrics(utilisation=utilisation, compute_delay_ms=delay, free_capacity=free,
                       healthy=healthy, extra=extra, received_at=now, source=source)


def age_s(m: SiteMetrics, now: float) -> float:
    """Seconds since ``m`` arrived (0 if the clock reads earlier)."""
    return max(0.0, now - m.received_at)


def is_fresh(m: SiteMetrics | None, now: float, interval_s: float) -> bool:
    """True when ``m`` exists and is at most ``FRESH_INTERVALS`` (3) intervals old."""
    return m is not None and age_s(m, now) <= FRESH_INTERVALS * interval_s


def levels(m: SiteMetrics, capacity: float | None = None) -> dict[str, Any]:
    """The CATS levels of ``m`` (see the module docstring for the normalisation):
    ``{"raw": {...}, "categories": {"compute", "capacity", "health"}, "score"}``, scores in
    0..1 rounded to 4 places, 1 best. ``capacity``: the site's total, to normalise
    ``free_capacity`` against."""
    compute = ((1.0 - m.utilisation)
               + COMPUTE_DELAY_REF_MS / (COMPUTE_DELAY_REF_MS + m.compute_delay_ms)) / 2
    cap: float | None
    if m.free_capacity is None:
        cap = None
    elif capacity is not None and capacity > 0:
        cap = min(1.0, max(0.0, m.free_capacity / capacity))
    else:
        cap = 1.0 if m.free_capacity > 0 else 0.0
    health = 1.0 if m.healthy else 0.0
    overall = health * (compute if cap is None else (2 * compute + cap) / 3)
    return {"raw": m.raw(),
            "categories": {"compute": round(compute, 4),
                           "capacity": None if cap is None else round(cap, 4),
                           "health": health},
            "score": round(overall, 4)}
