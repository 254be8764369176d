"""SLA monitoring: the measured latency of each intent's (or anycast assignment's) path next
to its bound.

Every ``network.sla_interval_s`` the core hands :meth:`SlaMonitor.sample` each routed
intent's measured path latency (the sum of its links' measured delays,
:mod:`controller.network.measure`). Per intent the monitor keeps an EWMA of the samples
(``alpha`` the newest one's weight) and counts samples in a row over the bound; after
``samples`` of them the intent's ``sla`` becomes ``violated`` and an ``sla_violation`` event
is returned; after as many in a row within the bound it is ``ok`` again with
``sla_restored``. When an intent moves to another path its smoothing starts again from the
new path's first sample (its state and the counts do not carry a stale path's figures).

The same monitor watches anycast assignments (:mod:`controller.compute.steering`: the key is
``(service, client host)``, the measured latency the path's plus the site's reported compute
delay under ``cats``), with its own pair of metrics.

Pure: ``now`` is an argument. The process-wide metrics ``cpn_sla_violations_total`` and
``cpn_intents_sla_violated`` (intents) are kept here.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client import Counter, Gauge

from controller.network.counters import PROCESS_REGISTRY

__all__ = ["SLA_VIOLATED", "SLA_VIOLATIONS", "SlaMonitor", "SlaRecord", "SlaSample"]

SLA_VIOLATIONS = Counter("cpn_sla_violations", "Intents that went over their latency bound "
                         "(measured, smoothed) for the configured number of samples",
                         registry=PROCESS_REGISTRY)
SLA_VIOLATED = Gauge("cpn_intents_sla_violated", "Intents whose measured latency is over "
                     "their bound now", registry=PROCESS_REGISTRY)


class SlaSample(NamedTuple):
    """One measurement of what ``key`` names (an intent id, an assignment): its path
    (directed link ids), bound and measured latency; ``unmeasured``: links of the path with
    no measurement (their configured latency counted)."""

    key: Hashable
    links: tuple[int, ...]
    bound_ms: float
    measured_ms: float
    unmeasured: int


@dataclass(slots=True)
class SlaRecord:
    """What the monitor knows of one intent."""

    links: tuple[int, ...]
    bound_ms: float
    smoothed_ms: float
    last_ms: float
    unmeasured: int
    over: int = 0
    """samples in a row over the bound (while ok) or within it (while violated)"""
    state: str = "ok"
    since: float | None = None
    """when the state last changed (None: ok since first sampled)"""
    violations: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "measured_ms": round(self.smoothed_ms, 3),
                "last_sample_ms": round(self.last_ms, 3), "bound_ms": self.bound_ms,
                "unmeasured_links": self.unmeasured, "violations": self.violations}


class SlaMonitor:
    """SLA state per key (see the module docstring); ``metrics``: the counter of violations
    and the gauge of keys violated now that this monitor keeps (the intents' by default)."""

    def __init__(self, *, samples: int = 3, alpha: float = 0.3,
                 interval_s: float = 1.0,
                 metrics: tuple[Counter, Gauge] = (SLA_VIOLATIONS, SLA_VIOLATED)) -> None:
        if samples < 1 or not 0 < alpha <= 1:
            raise ValueError("samples >= 1 and 0 < alpha <= 1")
        self.samples = samples
        self.alpha = alpha
        self.interval_s = interval_s
        self._violations, self._violated = metrics
        self.records: dict[Hashable, SlaRecord] = {}
        self._last: float | None = None

    def due(self, now: float) -> bool:
        """A sample is due (``interval_s`` since the last; never with interval 0)."""
        if self.interval_s <= 0:
            return False
        return self._last is None or now - self._last >= self.interval_s

    def sample(self, now: float, samples: Iterable[SlaSample]) -> list[dict[str, Any]]:
        """Take one round of samples; intents not in it (removed, or without a path) are
        forgotten. Returns the events (``kind`` sla_violation or sla_restored, ``key``,
        ``measured_ms``, ``bound_ms``)."""
        self._last = now
        events: list[dict[str, Any]] = []
        seen: set[Hashable] = set()
        for s in samples:
            seen.add(s.key)
            r = self.records.get(s.key)
            if r is None or r.links != s.links:
                state = r.state if r is not None else "ok"
                r = SlaRecord(s.links, s.bound_ms, s.measured_ms, s.measured_ms, s.unmeasured,
                              state=state, since=r.since if r is not None else None,
                              violations=r.violations if r is not None else 0)
                self.records[s.key] = r
            else:
                r.smoothed_ms = self.alpha * s.measured_ms + (1 - self.alpha) * r.smoothed_ms
            r.last_ms, r.bound_ms, r.unmeasured = s.measured_ms, s.bound_ms, s.unmeasured
            over = r.smoothed_ms > r.bound_ms
            wrong = over if r.state == "ok" else not over
            r.over = r.over + 1 if wrong else 0
            if r.over >= self.samples:
                r.over = 0
                r.since = now
                if r.state == "ok":
                    r.state, kind = "violated", "sla_violation"
                    r.violations += 1
                    self._violations.inc()
                else:
                    r.state, kind = "ok", "sla_restored"
                events.append({"kind": kind, "key": s.key,
                               "measured_ms": round(r.smoothed_ms, 3), "bound_ms": r.bound_ms})
        for gone in self.records.keys() - seen:
            del self.records[gone]
        self._violated.set(sum(1 for r in self.records.values() if r.state == "violated"))
        return events

    def violated(self) -> set[Hashable]:
        return {i for i, r in self.records.items() if r.state == "violated"}
