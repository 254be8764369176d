"""Segment routing on a topology: a path as the shortest list of MPLS SIDs that steers packets
along exactly that path, and the delay a SID list gives on the IGP as it is now (pure).

A node SID sends a packet along the IGP's shortest paths to that node (all of them, when
several tie); an adjacency SID sends it over one link. :meth:`SrTopology.encode` walks a path
and, from each position, takes the farthest node of the path that the IGP reaches by that very
stretch of the path and by no other path of equal metric (one node SID), or else the next
link's adjacency SID. :meth:`SrTopology.delay_ms` replays a SID list on the IGP with the links
now down removed, taking the worst of tied paths: the PCE compares it with an LSP's bound.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from controller.topology.model import Topology

__all__ = ["DEFAULT_IGP_METRIC", "Adjacency", "Segment", "SrTopology"]

DEFAULT_IGP_METRIC = 10
"""The IGP metric of a link whose file gives none."""


@dataclass(frozen=True, slots=True)
class Adjacency:
    """One direction of a link: ``index`` is the link's position in the topology file."""

    index: int
    u: str
    v: str
    igp_metric: int
    local_address: str | None
    remote_address: str | None
    adj_sid: int | None


@dataclass(frozen=True, slots=True)
class Segment:
    """One SID of a list: ``kind`` is ``node`` (``node`` is where it leads) or ``adjacency``
    (``node`` is the link's far end); ``nai`` is the router id, or the interface addresses."""

    label: int
    kind: str
    node: str
    nai: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "kind": self.kind, "node": self.node,
                "nai": list(self.nai)}


class SrTopology:
    """The SR view of a topology: node SIDs, router ids, adjacencies, IGP metrics, and which
    links are down now (by file index)."""

    def __init__(self, topo: Topology) -> None:
        self.node_sid: dict[str, int] = {}
        self.router_id: dict[str, str] = {}
        for n in topo.nodes:
            if n.node_sid is None or n.router_id is None:
                raise ValueError(f"node {n.name!r} has no router id and node SID: the "
                                 "topology is not a segment routing topology")
            self.node_sid[n.name] = n.node_sid
            self.router_id[n.name] = n.router_id
        self.by_router_id = {rid: name for name, rid in self.router_id.items()}
        self.adjacent: dict[str, list[Adjacency]] = {n.name: [] for n in topo.nodes}
        self.latency_ms: dict[int, float] = {}
        for i, lk in enumerate(topo.links):
            metric = lk.igp_metric if lk.igp_metric is not None else DEFAULT_IGP_METRIC
            self.adjacent[lk.a].append(Adjacency(i, lk.a, lk.b, metric, lk.a_address,
                                                 lk.b_address, lk.a_adj_sid))
            self.adjacent[lk.b].append(Adjacency(i, lk.b, lk.a, metric, lk.b_address,
                                                 lk.a_address, lk.b_adj_sid))
            self.latency_ms[i] = lk.latency_ms
        self.down: set[int] = set()
        self._spf_cache: dict[str, tuple[dict[str, int], dict[str, int], dict[str, float]]] = {}

    def set_link(self, index: int, *, up: bool | None = None,
                 latency_ms: float | None = None) -> None:
        """A link (file index) down or up, or its delay; the IGP's answers are recomputed."""
        if up is not None:
            (self.down.discard if up else self.down.add)(index)
        if latency_ms is not None:
            self.latency_ms[index] = latency_ms
        self._spf_cache.clear()

    # the IGP -------------------------------------------------------------------------------
    def _spf(self, src: str) -> tuple[dict[str, int], dict[str, int], dict[str, float]]:
        """Dijkstra by IGP metric over up links: distance, number of shortest paths (parallel
        links count apart) and the worst latency among the shortest paths, per node (kept
        until a link changes)."""
        cached = self._spf_cache.get(src)
        if cached is None:
            cached = self._spf_cache[src] = self._dijkstra(src)
        return cached

    def _dijkstra(self, src: str) -> tuple[dict[str, int], dict[str, int], dict[str, float]]:
        dist = {src: 0}
        count = {src: 1}
        worst = {src: 0.0}
        done: set[str] = set()
        heap = [(0, src)]
        while heap:
            d, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            for adj in self.adjacent[u]:
                if adj.index in self.down:
                    continue
                nd = d + adj.igp_metric
                lat = worst[u] + self.latency_ms[adj.index]
                old = dist.get(adj.v)
                if old is None or nd < old:
                    dist[adj.v], count[adj.v], worst[adj.v] = nd, count[u], lat
                    heapq.heappush(heap, (nd, adj.v))
                elif nd == old and adj.v not in done:
                    count[adj.v] += count[u]
                    worst[adj.v] = max(worst[adj.v], lat)
        return dist, count, worst

    # encoding --------------------------------------------------------------------------------
    def adjacency(self, u: str, index: int) -> Adjacency:
        for adj in self.adjacent[u]:
            if adj.index == index:
                return adj
        raise KeyError(f"link {index} does not leave {u!r}")

    def encode(self, nodes: Sequence[str], link_indexes: Sequence[int]) -> list[Segment]:
        """The SID list that steers along ``nodes`` over the links ``link_indexes`` (file
        indexes, one per hop). Raises ValueError for a hop that needs an adjacency SID the
        file does not give."""
        if len(link_indexes) != len(nodes) - 1:
            raise ValueError("one link per hop")
        hops = [self.adjacency(nodes[k], link_indexes[k]) for k in range(len(link_indexes))]
        segments: list[Segment] = []
        pos = 0
        last = len(nodes) - 1
        while pos < last:
            dist, count, _ = self._spf(nodes[pos])
            reach = None
            metric = 0
            stretch: list[tuple[int, int]] = []
            for j in range(pos + 1, last + 1):
                metric += hops[j - 1].igp_metric
                stretch.append((j, metric))
            for j, metric in reversed(stretch):
                if dist.get(nodes[j]) == metric and count.get(nodes[j]) == 1:
                    reach = j
                    break
            if reach is not None:
                target = nodes[reach]
                segments.append(Segment(self.node_sid[target], "node", target,
                                        (self.router_id[target],)))
                pos = reach
                continue
            adj = hops[pos]
            if adj.adj_sid is None or adj.local_address is None or adj.remote_address is None:
                raise ValueError(f"the hop {adj.u} -> {adj.v} (links[{adj.index}]) is not the "
                                 "IGP's only shortest path and has no adjacency SID")
            segments.append(Segment(adj.adj_sid, "adjacency", adj.v,
                                    (adj.local_address, adj.remote_address)))
            pos += 1
        return segments

    # replay ------------------------------------------------------------------------------------
    def delay_ms(self, head: str, segments: Iterable[Segment]) -> float | None:
        """The worst delay of the paths ``segments`` give from ``head`` on the IGP now; None
        when a segment cannot be followed (its node unreachable, its link down)."""
        at = head
        total = 0.0
        for seg in segments:
            if seg.kind == "adjacency":
                adj = next((a for a in self.adjacent[at] if a.adj_sid == seg.label), None)
                if adj is None or adj.index in self.down:
                    return None
                total += self.latency_ms[adj.index]
                at = adj.v
            else:
                _, _, worst = self._spf(at)
                if seg.node not in worst:
                    return None
                total += worst[seg.node]
                at = seg.node
        return total
