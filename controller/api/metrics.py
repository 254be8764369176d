"""Prometheus metrics of the controller (prometheus-client).

Two sources:

* Counters the os-ken app increments as messages pass (:mod:`controller.network.counters`:
  OpenFlow messages by type and direction, packet-ins by switch). They live in a registry of
  their own, one per process, so the network core needs no reference to the API.
* Everything else is read from the :class:`~controller.network.service.ControllerService` at scrape
  time by :class:`ServiceCollector` through its read views (one ``network_snapshot`` per
  scrape): intents by state, flows per switch, link utilisation (bandwidth reserved by
  intents / capacity), switches connected, measured link load and delay, LLDP frames
  dropped by reason (``cpn_lldp_rejected_total``, signed discovery), hosts not learned by
  reason (``cpn_hosts_refused_total``, host-learning limits). The service's
  ``change_records()`` are folded into real histograms on each scrape (each record once, by
  token): path computation time and restoration time (from the event to the last barrier of a
  Change caused by a port going down, a switch lost or flows removed behind our back).

``GET /metrics`` serves :meth:`Metrics.exposition`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.network.counters import PROCESS_REGISTRY

if TYPE_CHECKING:
    from controller.network.service import ControllerService

__all__ = ["CONTENT_TYPE", "Metrics", "ServiceCollector"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_MS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class ServiceCollector(Collector):
    """Reads the service's public state at scrape time (see the module docstring)."""

    def __init__(self, service: ControllerService, registry: CollectorRegistry) -> None:
        self._service = service
        self._lock = threading.Lock()
        self._last_token = 0
        self.path_compute = Histogram(
            "cpn_path_computation_ms", "Routing time of a Change (all intents and "
            "destinations), and of GET /paths queries, in milliseconds", ["source"],
            buckets=_MS_BUCKETS, registry=registry)
        self.restoration = Histogram(
            "cpn_restoration_ms", "From a failure event (port down, switch lost, flows "
            "removed) to the last barrier reply of the Change that restored the routes, ms",
            buckets=_MS_BUCKETS, registry=registry)
        self.changes = Counter("cpn_changes", "Changes sent to switches", registry=registry)
        self.messages = Counter("cpn_change_messages", "OpenFlow messages sent in Changes "
                                "(FlowMods and barriers)", registry=registry)

    def ingest(self) -> None:
        """Fold Change records not seen yet into the histograms (each record once)."""
        with self._lock:
            records = self._service.change_records()
            fresh = [r for r in records if r.token > self._last_token]
            for r in fresh:
                self.path_compute.labels(source="change").observe(r.compute_ms)
                self.changes.inc()
                self.messages.inc(r.messages)
                if r.kind.restoration and not r.timed_out:
                    self.restoration.observe(r.event_to_confirm_ms)
            if fresh:
                self._last_token = max(r.token for r in fresh)

    def collect(self) -> Iterator[Metric]:
        svc = self._service
        net = svc.network_snapshot(recent_events=0)
        flow_counts = svc.installed_flow_counts()
        states = {"installed": 0, "pending": 0, "infeasible": 0, "degraded": 0}
        for intent in net.intents:
            states[intent.state] = states.get(intent.state, 0) + 1
        g_state = GaugeMetricFamily("cpn_intents", "Intents by state", labels=["state"])
        for state, n in sorted(states.items()):
            g_state.add_metric([state], n)
        yield g_state
        g_flows = GaugeMetricFamily("cpn_flows", "Flows installed per switch (the controller's "
                                    "confirmed view)", labels=["dpid", "switch"])
        g_conn = GaugeMetricFamily("cpn_switch_connected", "1 when the switch is connected",
                                   labels=["dpid", "switch"])
        for sw in net.switches:
            g_flows.add_metric([f"{sw.dpid:#x}", sw.name], flow_counts.get(sw.dpid, 0))
            g_conn.add_metric([f"{sw.dpid:#x}", sw.name], 1.0 if sw.connected else 0.0)
        yield g_flows
        yield g_conn
        g_util = GaugeMetricFamily("cpn_link_utilisation_ratio", "Bandwidth reserved by intents "
                                   "over link capacity (0..1), forward direction",
                                   labels=["link", "ends"])
        g_load = GaugeMetricFamily("cpn_link_load_mbps", "Measured link load from port "
                                   "statistics (tx bytes over the poll interval)",
                                   labels=["link", "ends", "direction"])
        g_lutil = GaugeMetricFamily("cpn_link_load_utilisation_ratio", "Measured load of "
                                    "the busier direction over link capacity",
                                    labels=["link", "ends"])
        g_drops = GaugeMetricFamily("cpn_link_drops", "Packets dropped on the link's two "
                                    "ports during the last poll interval",
                                    labels=["link", "ends"])
        g_delay = GaugeMetricFamily("cpn_link_delay_measured_ms", "Link delay measured from "
                                    "LLDP transit times minus control-channel RTTs",
                                    labels=["link", "ends"])
        for v in net.links:  # one pass over the links fills every link family
            link = [str(v.index), f"{v.a}-{v.b}"]
            g_util.add_metric(link, v.reserved_mbps / v.bandwidth_mbps
                              if v.bandwidth_mbps > 0 else 0.0)
            load = v.load
            if load is not None:
                g_load.add_metric([*link, "a_to_b"], load["a_to_b_mbps"])
                g_load.add_metric([*link, "b_to_a"], load["b_to_a_mbps"])
                g_lutil.add_metric(link, load["utilisation"])
                g_drops.add_metric(link, load["drops"])
            if v.measured_delay_ms is not None:
                g_delay.add_metric(link, v.measured_delay_ms)
        yield from (g_util, g_load, g_lutil, g_drops, g_delay)
        c_pin = CounterMetricFamily("cpn_packet_in_rejected", "Packet-ins not used, by "
                                    "reason (unknown_switch, no_in_port, truncated, oversized, "
                                    "arp_malformed, arp_on_trunk, ipv4_malformed, mpls, "
                                    "other_ethertype; LLDP: cpn_lldp_rejected)",
                                    labels=["reason"])
        for reason, n in svc.packet_in_rejections().items():
            c_pin.add_metric([reason], n)
        yield c_pin
        c_lldp = CounterMetricFamily("cpn_lldp_rejected", "LLDP frames dropped, by reason "
                                     "(unsigned, bad_mac, stale, replayed, host_port, "
                                     "malformed)", labels=["reason"])
        for reason, n in svc.lldp_rejections().items():
            c_lldp.add_metric([reason], n)
        yield c_lldp
        c_hosts = CounterMetricFamily("cpn_hosts_refused", "Hosts not learned, by reason "
                                      "(port_full, banned)", labels=["reason"])
        for reason, n in svc.hosts_refused().items():
            c_hosts.add_metric([reason], n)
        yield c_hosts


class Metrics:
    """The metrics of one service: its registry plus the process counters."""

    def __init__(self, service: ControllerService) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = ServiceCollector(service, self.registry)
        self.registry.register(self.collector)

    def observe_query_ms(self, duration_ms: float) -> None:
        self.collector.path_compute.labels(source="query").observe(duration_ms)

    def exposition(self) -> bytes:
        self.collector.ingest()
        return generate_latest(self.registry) + generate_latest(PROCESS_REGISTRY)
