"""Counters of the cluster (prometheus-client), in the process registry that ``/metrics``
serves beside the OpenFlow counters: mastership changes, takeover times and etcd request
latency."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from controller.network.counters import PROCESS_REGISTRY

__all__ = ["ETCD_REQUEST_SECONDS", "MASTERSHIP_CHANGES", "TAKEOVER_SECONDS"]

MASTERSHIP_CHANGES = Counter(
    "cpn_cluster_mastership_changes", "Switches this member became master (gained) or "
    "stopped being master (lost) of", ["change"], registry=PROCESS_REGISTRY)
TAKEOVER_SECONDS = Histogram(
    "cpn_cluster_takeover_seconds", "From learning that a switch has no live master (a peer "
    "died, a lease expired, a rebalance) to this member's MASTER role reply from the switch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
    registry=PROCESS_REGISTRY)
ETCD_REQUEST_SECONDS = Histogram(
    "cpn_cluster_etcd_request_seconds", "etcd requests by operation, answered or failed",
    ["op"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
    registry=PROCESS_REGISTRY)
