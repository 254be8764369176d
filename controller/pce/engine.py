"""The PCE's computation and its LSP database (pure: no sockets, no threads, no clock).

:class:`PceEngine` keeps the routers' topology as two ``pathcore`` graphs (link ``cost`` as
the TE metric, and the IGP metric) and its SR view (:mod:`.segments`). :meth:`compute` answers
one path request with pathcore's exact ``constrained_path`` (least cost within the delay
bound, on residual bandwidth) encoded as a SID list; the LSP database holds what PCCs report,
with the bounds each LSP was computed for, so that :meth:`reoptimize` can tell which delegated
LSPs a link cut or a delay change has pushed out of their bound and compute their new paths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from controller.pce.segments import Segment, SrTopology
from controller.topology.model import Topology

__all__ = ["Answer", "LspRecord", "PathRequest", "PceEngine"]

OBJECTIVES = ("te", "igp", "hops", "latency")


@dataclass(frozen=True, slots=True)
class PathRequest:
    """What a PCC asks for. ``max_latency_ms`` is ``inf`` without a delay bound."""

    source: str
    """router id (IPv4) of the head end"""
    destination: str
    max_latency_ms: float = math.inf
    min_bandwidth_mbps: float = 0.0
    objective: str = "te"
    """what to minimise: ``te`` (link cost), ``igp`` (IGP metric), ``hops``, ``latency``"""
    max_cost: float | None = None
    """a bound on the objective's metric (a TE or IGP METRIC with the B flag)"""
    max_hops: int | None = None
    max_sid_depth: int | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """A computed path, or why there is none (``reason``; ``segments`` empty)."""

    nodes: tuple[str, ...] = ()
    link_indexes: tuple[int, ...] = ()
    segments: tuple[Segment, ...] = ()
    latency_ms: float = 0.0
    te_cost: float = 0.0
    igp_cost: int = 0
    reason: str | None = None
    unknown_endpoint: str | None = None
    """``source`` or ``destination`` when that router id is not in the topology"""

    @property
    def found(self) -> bool:
        return self.reason is None

    def cost(self, objective: str) -> float:
        return {"te": self.te_cost, "igp": float(self.igp_cost), "hops": float(len(self.nodes)
                - 1), "latency": self.latency_ms}[objective]

    def as_dict(self) -> dict[str, Any]:
        if not self.found:
            return {"found": False, "reason": self.reason}
        return {"found": True, "nodes": list(self.nodes),
                "segments": [s.as_dict() for s in self.segments],
                "latency_ms": round(self.latency_ms, 6), "te_cost": round(self.te_cost, 6),
                "igp_cost": self.igp_cost}


@dataclass
class LspRecord:
    """One LSP of a PCC, as reported, with the bounds and the path the PCE computed for it."""

    pcc: str
    plsp_id: int
    name: str | None = None
    source: str | None = None
    destination: str | None = None
    delegated: bool = False
    operational: int = 0
    administrative: bool = False
    created_by_pce: bool = False
    segments: tuple[Segment, ...] = ()
    request: PathRequest | None = None
    computed: Answer | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    HISTORY_MAX = 50

    def note(self, now: float, event: str, **detail: Any) -> None:
        self.history.append({"time": round(now, 3), "event": event, **detail})
        del self.history[:-self.HISTORY_MAX]

    def as_dict(self) -> dict[str, Any]:
        req = self.request
        return {
            "pcc": self.pcc, "plsp_id": self.plsp_id, "name": self.name,
            "source": self.source, "destination": self.destination,
            "delegated": self.delegated, "operational": self.operational,
            "administrative": self.administrative, "created_by_pce": self.created_by_pce,
            "segments": [s.as_dict() for s in self.segments],
            "max_latency_ms": req.max_latency_ms if req and math.isfinite(req.max_latency_ms)
            else None,
            "min_bandwidth_mbps": req.min_bandwidth_mbps
            if req and math.isfinite(req.min_bandwidth_mbps) else None,
            "objective": req.objective if req else None,
            "computed": self.computed.as_dict() if self.computed else None,
            "history": list(self.history),
        }


class PceEngine:
    """Paths and LSPs on one SR topology."""

    def __init__(self, topo: Topology) -> None:
        self.topology = topo
        self.sr = SrTopology(topo)
        self.te_graph, ids = topo.to_graph()
        import pathcore

        self.igp_graph = pathcore.Graph()
        self.igp_graph.add_nodes([n.name for n in topo.nodes])
        igp_ids = self.igp_graph.add_links(
            [(lk.a, lk.b, lk.latency_ms, lk.bandwidth_mbps,
              float(self.sr.adjacency(lk.a, i).igp_metric)) for i, lk in enumerate(topo.links)],
            bidirectional=True)
        self._index_of: dict[int, int] = {}
        self._igp_index_of: dict[int, int] = {}
        self._ids_of: dict[int, list[tuple[Any, int]]] = {}
        for i, lid in ids.items():
            for graph, table, first in ((self.te_graph, self._index_of, lid),
                                        (self.igp_graph, self._igp_index_of, igp_ids[i])):
                rev = graph.reverse_link(first)
                table[first] = i
                self._ids_of.setdefault(i, []).append((graph, first))
                if rev is not None:
                    table[rev] = i
                    self._ids_of[i].append((graph, rev))
        self.lsps: dict[tuple[str, int], LspRecord] = {}
        self._held: dict[int, float] = {}
        self._per_pcc: dict[str, int] = {}
        """bandwidth held per link (file index) as last written to the graphs"""

    # topology changes --------------------------------------------------------------------------
    def link_index(self, a: str, b: str) -> int:
        """The file index of the link between ``a`` and ``b``; KeyError if there is none."""
        for i, lk in enumerate(self.topology.links):
            if {lk.a, lk.b} == {a, b}:
                return i
        raise KeyError(f"no link between {a!r} and {b!r}")

    def set_link(self, index: int, *, up: bool | None = None,
                 latency_ms: float | None = None) -> None:
        """Take a link down or up, or give it a measured delay (both directions)."""
        if latency_ms is not None and (not math.isfinite(latency_ms) or latency_ms < 0):
            raise ValueError("latency_ms must be a finite number >= 0")
        for graph, lid in self._ids_of[index]:
            if up is not None:
                graph.set_link_up(lid, up)
            if latency_ms is not None:
                graph.set_link_latency(lid, latency_ms)
        self.sr.set_link(index, up=up, latency_ms=latency_ms)

    def link_state(self, index: int) -> dict[str, Any]:
        lk = self.topology.links[index]
        return {"index": index, "a": lk.a, "b": lk.b, "up": index not in self.sr.down,
                "latency_ms": self.sr.latency_ms[index], "cost": lk.cost,
                "igp_metric": self.sr.adjacency(lk.a, index).igp_metric,
                "bandwidth_mbps": lk.bandwidth_mbps}

    def _apply_reservations(self, release: LspRecord | None = None) -> None:
        """Residual bandwidth = capacity less what delegated LSPs' computed paths hold (but
        ``release``'s); only links whose holding changed are written to the graphs."""
        held: dict[int, float] = {}
        for rec in self.lsps.values():
            ans, req = rec.computed, rec.request
            if rec is release or not rec.delegated or ans is None or not ans.found \
                    or req is None or not req.min_bandwidth_mbps:
                continue
            for idx in ans.link_indexes:
                held[idx] = held.get(idx, 0.0) + req.min_bandwidth_mbps
        for i in held.keys() | self._held.keys():
            if held.get(i, 0.0) == self._held.get(i, 0.0):
                continue
            residual = max(0.0, self.topology.links[i].bandwidth_mbps - held.get(i, 0.0))
            for graph, lid in self._ids_of[i]:
                graph.set_residual_bandwidth(lid, residual)
        self._held = held

    # computation -------------------------------------------------------------------------------
    def compute(self, req: PathRequest, *, release: LspRecord | None = None) -> Answer:
        """The least-cost path for ``req`` within its bounds, as SIDs; an :class:`Answer`
        with a reason when none. ``release``: an LSP whose own reservation does not count
        (it is the one being moved)."""
        src = self.sr.by_router_id.get(req.source)
        dst = self.sr.by_router_id.get(req.destination)
        if src is None or dst is None:
            end = "source" if src is None else "destination"
            addr = req.source if src is None else req.destination
            return Answer(reason=f"unknown {end} {addr}: no router has that id",
                          unknown_endpoint=end)
        if src == dst:
            return Answer(reason="source and destination are the same router")
        if req.objective not in OBJECTIVES:
            return Answer(reason=f"objective {req.objective!r} is not one of {OBJECTIVES}")
        if math.isnan(req.max_latency_ms) or req.max_latency_ms < 0 or \
                not math.isfinite(req.min_bandwidth_mbps) or req.min_bandwidth_mbps < 0:
            return Answer(reason="the delay bound and the bandwidth must be numbers >= 0")
        self._apply_reservations(release)
        try:
            graph = self.igp_graph if req.objective == "igp" else self.te_graph
            weight = {"te": "cost", "igp": "cost", "hops": "hops", "latency": "latency"}[
                req.objective]
            path = graph.constrained_path(src, dst, max_latency_ms=req.max_latency_ms,
                                          min_bandwidth_mbps=req.min_bandwidth_mbps,
                                          weight=weight)
            if path is None:
                return Answer(reason=self._why_none(src, dst, req))
            table = self._igp_index_of if graph is self.igp_graph else self._index_of
            indexes = tuple(table[lid] for lid in path.links)
        finally:
            if release is not None:
                self._apply_reservations()
        links = [self.topology.links[i] for i in indexes]
        nodes = tuple(path.nodes)
        te_cost = sum(lk.cost for lk in links)
        igp_cost = sum(self.sr.adjacency(nodes[k], i).igp_metric for k, i in enumerate(indexes))
        latency = sum(self.sr.latency_ms[i] for i in indexes)
        if req.max_hops is not None and len(indexes) > req.max_hops:
            return Answer(reason=f"the least-cost path within the bounds has {len(indexes)} "
                          f"hops, more than the bound of {req.max_hops}")
        value = {"te": te_cost, "igp": igp_cost, "hops": len(indexes), "latency": latency}[
            req.objective]
        if req.max_cost is not None and value > req.max_cost + 1e-9:
            return Answer(reason=f"the least {req.objective} cost within the bounds is "
                          f"{value:g}, more than the bound of {req.max_cost:g}")
        try:
            segments = self.sr.encode(nodes, indexes)
        except ValueError as exc:
            return Answer(reason=str(exc))
        if req.max_sid_depth and len(segments) > req.max_sid_depth:
            return Answer(reason=f"the path needs {len(segments)} SIDs, more than the PCC's "
                          f"maximum SID depth {req.max_sid_depth}")
        return Answer(nodes=nodes, link_indexes=indexes, segments=tuple(segments),
                      latency_ms=latency, te_cost=te_cost, igp_cost=igp_cost)

    def _why_none(self, src: str, dst: str, req: PathRequest) -> str:
        fastest = self.te_graph.shortest_path(src, dst, "latency")
        if fastest is None:
            return f"{dst} cannot be reached from {src} over the links that are up"
        if fastest.latency_ms > req.max_latency_ms:
            return (f"the least-delay path from {src} to {dst} takes "
                    f"{fastest.latency_ms:.3f} ms, more than the bound of "
                    f"{req.max_latency_ms:g} ms")
        return (f"no path from {src} to {dst} within {req.max_latency_ms:g} ms has "
                f"{req.min_bandwidth_mbps:g} Mbps free")

    # the LSP database ----------------------------------------------------------------------------
    def segment_from_wire(self, label: int | None, nai: tuple[str, ...]) -> Segment | None:
        """A reported SID as a :class:`Segment` (None when its NAI is unknown here)."""
        if label is None:
            return None
        if len(nai) == 1 and nai[0] in self.sr.by_router_id:
            node = self.sr.by_router_id[nai[0]]
            return Segment(label, "node", node, nai)
        if len(nai) == 2:
            for adjs in self.sr.adjacent.values():
                for adj in adjs:
                    if (adj.local_address, adj.remote_address) == nai:
                        return Segment(label, "adjacency", adj.v, nai)
        for name, sid in self.sr.node_sid.items():
            if sid == label:
                return Segment(label, "node", name, (self.sr.router_id[name],))
        return None

    def lsp(self, pcc: str, plsp_id: int) -> LspRecord:
        """The record of a PCC's LSP, made empty when new."""
        rec = self.lsps.get((pcc, plsp_id))
        if rec is None:
            rec = self.lsps[(pcc, plsp_id)] = LspRecord(pcc=pcc, plsp_id=plsp_id)
            self._per_pcc[pcc] = self._per_pcc.get(pcc, 0) + 1
        return rec

    def lsp_count(self, pcc: str) -> int:
        return self._per_pcc.get(pcc, 0)

    def remove_lsp(self, pcc: str, plsp_id: int) -> None:
        if self.lsps.pop((pcc, plsp_id), None) is not None:
            self._per_pcc[pcc] -= 1
        self._apply_reservations()

    def drop_pcc(self, pcc: str) -> None:
        """Forget every LSP of a PCC whose session ended (its delegations end with it)."""
        for key in [k for k in self.lsps if k[0] == pcc]:
            del self.lsps[key]
        self._per_pcc.pop(pcc, None)
        self._apply_reservations()

    def reoptimize(self) -> list[tuple[LspRecord, Answer]]:
        """Delegated LSPs whose path, replayed on the IGP as it is now, is broken or out of
        its delay bound, each with its new path (or the reason there is none)."""
        moves: list[tuple[LspRecord, Answer]] = []
        for rec in sorted(self.lsps.values(), key=lambda r: (r.pcc, r.plsp_id)):
            req = rec.request
            if not rec.delegated or req is None or not rec.segments:
                continue
            head = self.sr.by_router_id.get(req.source)
            if head is None:
                continue
            delay = self.sr.delay_ms(head, rec.segments)
            if delay is not None and delay <= req.max_latency_ms + 1e-9:
                continue
            moves.append((rec, self.compute(req, release=rec)))
        return moves
