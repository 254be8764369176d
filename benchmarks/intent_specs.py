"""Random city/cluster intents for the controller benchmarks (bench_controller.py, bench_core.py),
so both measure the same workload, and the anchors both compare with."""

from __future__ import annotations

import random
import time
from collections import Counter

from controller.topology.files import topology_file
from controller.topology.model import IntentSpec, Match, Topology

__all__ = ["ONOS_1000_INTENTS_MS", "ONOS_1_INTENT_MS", "ONOS_5000_INTENTS_MS",
           "ANCHORS_MS", "RESTORE_TARGET_MS", "Specs", "TOPOLOGY", "python_reference_s"]

ONOS_1_INTENT_MS = 15.5
"""ONOS 1.0 on one node, one intent installed (as published by ON.Lab)"""
ONOS_1000_INTENTS_MS = 48.0
"""ONOS 1.0 on one node, 1,000 intents installed"""
ONOS_5000_INTENTS_MS = 364.6
"""ONOS 1.0 on one node, 5,000 intents installed"""
ANCHORS_MS = {1: ONOS_1_INTENT_MS, 1000: ONOS_1000_INTENTS_MS, 5000: ONOS_5000_INTENTS_MS}
"""intents in one batch -> ONOS 1.0's published time on one node"""
RESTORE_TARGET_MS = 100.0
"""the restoration target: port-status to the new flows confirmed"""
TOPOLOGY = topology_file("national")


def python_reference_s(n: int = 10_000_000, runs: int = 3) -> float:
    """Seconds this interpreter takes for ``n`` additions in a plain loop, best of ``runs``:
    how fast the shared machine runs Python in this hour. The controller's compute is Python
    too, so runs of different hours compare only beside this figure."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        s = 0
        for i in range(n):
            s += i
        best = min(best, time.perf_counter() - t0)
    return best


class Specs:
    """Random intents between city and cluster hosts, each with a bound the network meets
    (best latency x 1.3..2.5 + 1 ms). With ``via_link`` only intents whose path (least cost
    within the bound, as the controller routes) crosses that link and that have a detour
    within the bound without it: the worst case for restoration. Each (src, dst) gets one
    intent for all its traffic; more intents for the same pair match a TCP port of their
    own, at a higher priority."""

    def __init__(self, topology: Topology, seed: int, via_link: int | None = None) -> None:
        self.topology = topology
        self.rng = random.Random(seed)
        self.graph, self.link_ids = topology.to_graph()
        self.cities = [h for h in topology.hosts if h.name.startswith("h-city-")]
        self.clusters = [h for h in topology.hosts if h.name.startswith("h-dc-")]
        if not self.cities or not self.clusters:  # a carrier map: any host to any other
            self.cities = self.clusters = list(topology.hosts)
        self.used: Counter[tuple[str, str]] = Counter((i.src, i.dst) for i in topology.intents)
        """(src, dst) -> intents made for it and not released"""
        self.port = 20000
        self.via_link = via_link
        self.cut: list[int] = []
        if via_link is not None:
            lid = self.link_ids[via_link]
            rev = self.graph.reverse_link(lid)
            self.cut = [lid] + ([rev] if rev is not None else [])

    def busiest_link(self) -> int:
        """The link most city/cluster least-latency paths cross."""
        use: Counter[int] = Counter()
        index_of = {lid: i for i, lid in self.link_ids.items()}
        for a in self.cities:
            for b in self.clusters:
                path = self.graph.shortest_path(a.node, b.node)
                for lid in path.links if path is not None else ():
                    rev = self.graph.reverse_link(lid)
                    i = index_of.get(lid, index_of.get(rev)) if rev is not None else \
                        index_of.get(lid)
                    if i is not None:
                        use[i] += 1
        return use.most_common(1)[0][0]

    def _ok(self, a: str, b: str, bound: float) -> bool:
        if self.via_link is None:
            return True
        path = self.graph.constrained_path(a, b, max_latency_ms=bound, weight="cost")
        if path is None or not set(path.links) & set(self.cut):
            return False
        return self.graph.constrained_path(a, b, max_latency_ms=bound,
                                           exclude_links=self.cut) is not None

    def make(self, n: int) -> list[IntentSpec]:
        out: list[IntentSpec] = []
        attempts = 0
        while len(out) < n:
            attempts += 1
            if attempts > 200 * n + 10_000:
                raise SystemExit(f"found only {len(out)} of {n} intents crossing the link")
            a, b = self.rng.choice(self.cities), self.rng.choice(self.clusters)
            if self.rng.random() < 0.5:
                a, b = b, a
            if a.node == b.node:
                continue
            best = self.graph.shortest_path(a.node, b.node)
            assert best is not None
            bound = round(best.latency_ms * self.rng.uniform(1.3, 2.5) + 1.0, 2)
            if not self._ok(a.node, b.node, bound):
                continue
            match, priority = None, 100
            if self.used[(a.name, b.name)]:
                self.port += 1
                match, priority = Match(ip_proto=6, dst_port=self.port), 200
            self.used[(a.name, b.name)] += 1
            out.append(IntentSpec(src=a.name, dst=b.name, max_latency_ms=bound,
                                  match=match, priority=priority))
        return out

    def release(self, specs: list[IntentSpec]) -> None:
        """``specs`` were removed: their pairs may have an intent for all traffic again."""
        for spec in specs:
            self.used[(spec.src, spec.dst)] -= 1
