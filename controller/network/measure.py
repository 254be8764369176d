"""Link delay measurements from outside the controller, and which delay counts.

Operators run their own probes (TWAMP and the like) and report them with ``PUT
/api/v1/links/{index}/measurements``: one-way ``delay_ms`` and optionally ``loss`` (0..1)
per direction, ``{"a_to_b": {"delay_ms": 4.1, "loss": 0.0}, "b_to_a": {...}}`` (either
direction or both; ``a``/``b`` as the topology file names the link's ends).
:func:`parse_measurements` checks a report (400 naming the field, nothing kept).

The controller's own measurement stays: LLDP probes and echo round trips give one delay per
link (the same both ways, :meth:`NetworkState._measure_delay`). Which one counts is the
setting ``network.delay_source`` (:func:`effective_delay_ms`):

* ``external`` (default): an external measurement no older than
  ``network.measurement_max_age_s``; without one, LLDP's;
* ``lldp``: LLDP's always (external ones are shown, not used);
* ``max``: the larger of the fresh external one and LLDP's (either when only one exists).

A link with no measured delay counts its configured latency wherever a path's measured
latency is summed (:func:`path_delay_ms` reports how many such links a path has).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.errors import BadRequest

__all__ = ["DELAY_SOURCES", "DIRECTIONS", "MAX_DELAY_MS", "MEASUREMENT_SCHEMA",
           "DirectionMeasurement",
           "effective_delay_ms", "parse_measurements", "path_delay_ms"]

DELAY_SOURCES = ("lldp", "external", "max")
DIRECTIONS = ("a_to_b", "b_to_a")
MAX_DELAY_MS = 1e6
_DIRECTION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["delay_ms"], "additionalProperties": False,
    "properties": {"delay_ms": {"type": "number", "minimum": 0, "maximum": MAX_DELAY_MS},
                   "loss": {"type": ["number", "null"], "minimum": 0, "maximum": 1}}}
MEASUREMENT_SCHEMA: dict[str, Any] = {
    "type": "object", "minProperties": 1, "additionalProperties": False,
    "properties": {d: _DIRECTION_SCHEMA for d in ("a_to_b", "b_to_a")}}
"""the OpenAPI schema of a report (:func:`parse_measurements` checks it itself, so nonsense
answers 400 naming the field)"""


@dataclass(frozen=True, slots=True)
class DirectionMeasurement:
    """One direction of a link as an external probe measured it."""

    delay_ms: float
    loss: float | None
    at: float
    """monotonic seconds when it arrived"""

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"delay_ms": self.delay_ms, "loss": self.loss,
                "age_s": round(max(0.0, now - self.at), 3)}


def _number(value: Any, what: str, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 <= value <= high:
        raise BadRequest(f"{what} must be a finite number between 0 and {high:g}, "
                         f"got {value!r}")
    return float(value)


def parse_measurements(body: Any, now: float) -> dict[str, DirectionMeasurement]:
    """A report as ``{direction: DirectionMeasurement}``; :class:`BadRequest` naming the
    field for anything else (no direction, an unknown key, a delay that is negative, NaN,
    text or above :data:`MAX_DELAY_MS`, a loss outside 0..1)."""
    if not isinstance(body, Mapping):
        raise BadRequest("a measurement is an object with a_to_b and/or b_to_a")
    unknown = sorted(str(k) for k in body if k not in DIRECTIONS)
    if unknown:
        raise BadRequest(f"unknown measurement field(s) {', '.join(unknown)} (known: "
                         f"{', '.join(DIRECTIONS)})")
    if not body:
        raise BadRequest("a measurement needs a_to_b and/or b_to_a")
    out: dict[str, DirectionMeasurement] = {}
    for direction, m in body.items():
        if not isinstance(m, Mapping) or "delay_ms" not in m:
            raise BadRequest(f"{direction} must be an object with delay_ms (and loss)")
        extra = sorted(str(k) for k in m if k not in ("delay_ms", "loss"))
        if extra:
            raise BadRequest(f"unknown field(s) {', '.join(extra)} in {direction} (known: "
                             "delay_ms, loss)")
        delay = _number(m["delay_ms"], f"{direction}.delay_ms", MAX_DELAY_MS)
        loss = None if m.get("loss") is None else _number(m["loss"], f"{direction}.loss", 1.0)
        out[direction] = DirectionMeasurement(delay, loss, now)
    return out


def effective_delay_ms(source: str, lldp_ms: float | None,
                       external: DirectionMeasurement | None, now: float,
                       max_age_s: float) -> tuple[float | None, str | None]:
    """The delay that counts for one direction of a link, and where it came from
    (``external``, ``lldp`` or None: not measured); see the module docstring."""
    ext = external.delay_ms if external is not None and now - external.at <= max_age_s \
        else None
    if source == "lldp" or ext is None:
        return (lldp_ms, "lldp") if lldp_ms is not None else (None, None)
    if source == "max" and lldp_ms is not None and lldp_ms > ext:
        return lldp_ms, "lldp"
    return ext, "external"


def path_delay_ms(link_ids: Iterable[int],
                  delay_of: Callable[[int], tuple[float | None, float]]
                  ) -> tuple[float, int]:
    """A path's measured latency: the sum over its directed ``link_ids`` of the measured
    delay (``delay_of(link_id) -> (measured or None, configured)``), the configured latency
    where nothing is measured; and how many links had no measurement."""
    total, unmeasured = 0.0, 0
    for lid in link_ids:
        measured, configured = delay_of(lid)
        if measured is None:
            unmeasured += 1
            total += configured
        else:
            total += measured
    return total, unmeasured
