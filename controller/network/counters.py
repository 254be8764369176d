"""Counters of OpenFlow messages as they pass the os-ken app (prometheus-client).

They live in :data:`PROCESS_REGISTRY`, one per process, beside the app that increments them;
``/metrics`` (:mod:`controller.api.metrics`) serves them with everything it reads from the
service.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["OPENFLOW_MESSAGES", "PACKET_INS", "PROCESS_REGISTRY", "count_openflow_message",
           "count_packet_in"]

PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)
"""Counters incremented where messages pass (the os-ken app)."""

OPENFLOW_MESSAGES = Counter(
    "cpn_openflow_messages", "OpenFlow messages by type and direction (in: from switches, "
    "out: to switches)", ["type", "direction"], registry=PROCESS_REGISTRY)
PACKET_INS = Counter("cpn_packet_ins", "Packet-in messages by switch", ["dpid"],
                     registry=PROCESS_REGISTRY)


def count_openflow_message(msg_type: str, direction: str = "out", count: int = 1) -> None:
    """Count ``count`` OpenFlow messages of ``msg_type`` (e.g. ``"OFPFlowMod"``);
    ``direction`` is ``"in"`` (from a switch) or ``"out"`` (to a switch)."""
    OPENFLOW_MESSAGES.labels(type=msg_type, direction=direction).inc(count)


def count_packet_in(dpid: int) -> None:
    PACKET_INS.labels(dpid=f"{dpid:#x}").inc()
