"""Why there is no path: one explanation, in one format, for routes, ``/paths``, admission
and placement.

The explanation names the bound that fails and the best that exists: the least latency
between the two nodes, the widest bottleneck within the latency bound, the least latency with
the bandwidth asked for. Latencies are printed with :func:`fmt_ms` (two decimals: tens of
microseconds, finer than any configured fibre latency), bounds as given (:func:`fmt_bound`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["FailedBound", "NoPathReason", "fmt_bound", "fmt_ms", "fmt_path", "why_no_path"]


class FailedBound(StrEnum):
    """Which bound has no path."""

    DISCONNECTED = "disconnected"
    """no path at all (links or switches down)"""
    LATENCY = "latency"
    """the least latency that exists is above ``max_latency_ms``"""
    BANDWIDTH = "bandwidth"
    """paths meet the latency bound, none with ``min_bandwidth_mbps`` residual"""


@dataclass(frozen=True)
class NoPathReason:
    """Why no path meets the bounds between two nodes."""

    bound: FailedBound
    text: str
    best_latency_ms: float | None = None
    """the least latency of any path (None: disconnected)"""
    within: Any = None
    """the least-latency path within the latency bound whatever its bandwidth (a pathcore
    ``Path``; None when the latency bound fails too)"""

    def __str__(self) -> str:
        return self.text


def fmt_ms(latency_ms: float) -> str:
    """A latency for people: ``2.19 ms``."""
    return f"{latency_ms:.2f} ms"


def fmt_bound(value: float) -> str:
    """A bound as the operator gave it, always with a decimal point: ``1.0``, ``0.8``."""
    text = f"{value:g}"
    return text if any(c in text for c in ".einf") else f"{text}.0"


def fmt_path(nodes: Iterable[str]) -> str:
    return "-".join(nodes)


def why_no_path(graph: Any, src: str, dst: str, *, max_latency_ms: float | None,
                min_bandwidth_mbps: float = 0.0) -> NoPathReason:
    """Explain why no path from node ``src`` to ``dst`` of pathcore ``graph`` (its links up
    and their residual bandwidth as they are now) meets ``max_latency_ms`` (None: no bound)
    and ``min_bandwidth_mbps``. Call it when the constrained search found nothing."""
    best = graph.shortest_path(src, dst, weight="latency")
    if best is None:
        return NoPathReason(FailedBound.DISCONNECTED,
                            f"no path: {src} and {dst} are disconnected")
    bound = math.inf if max_latency_ms is None else max_latency_ms
    if best.latency_ms > bound:
        return NoPathReason(
            FailedBound.LATENCY,
            f"max_latency_ms {fmt_bound(bound)} is below the best available latency "
            f"{fmt_ms(best.latency_ms)} (path {fmt_path(best.nodes)})", best.latency_ms)
    bw = min_bandwidth_mbps
    within = graph.constrained_path(src, dst, max_latency_ms=bound, min_bandwidth_mbps=0.0,
                                    weight="latency")
    wide = graph.constrained_path(src, dst, max_latency_ms=math.inf, min_bandwidth_mbps=bw,
                                  weight="latency")
    where = "any latency" if max_latency_ms is None else f"{fmt_bound(bound)} ms"
    text = f"min_bandwidth_mbps {bw:g}: no path within {where} has {bw:g} Mbps residual bandwidth"
    if within is not None:
        text += (f"; best bottleneck within the bound {within.bottleneck_mbps:g} Mbps "
                 f"(path {fmt_path(within.nodes)})")
    if wide is not None:
        text += (f"; with {bw:g} Mbps the best latency is {fmt_ms(wide.latency_ms)} "
                 f"(path {fmt_path(wide.nodes)})")
    else:
        text += f"; no path has {bw:g} Mbps residual at any latency"
    return NoPathReason(FailedBound.BANDWIDTH, text, best.latency_ms, within)
