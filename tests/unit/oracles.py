"""Independent reference implementations ("oracles") for testing pathcore.

Nothing here imports pathcore's algorithms. The oracles are:

* brute force: depth-first enumeration of every simple path (as a sequence of link ids) in a
  small directed multigraph, from which the exact constrained optimum, the k smallest path
  weights and the best link-/node-disjoint pair are read off directly;
* networkx: Dijkstra on a ``DiGraph`` that keeps, for every node pair, the parallel link of
  least weight (which cannot change a least-weight value), ``shortest_simple_paths`` (Yen),
  ``single_source_dijkstra`` with a cutoff and all-pairs Dijkstra.

The module also holds the hypothesis strategy that generates the random graphs, a builder that
turns a generated spec into a ``pathcore.Graph`` plus an oracle :class:`Model`, and the checks
every returned ``Path`` must pass. Values are dyadic (multiples of 1/4 or 1/2) on purpose: sums
are then exact in binary floating point, so a latency bound can equal a path's latency exactly
whatever the summation order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

TOL = 1e-9
WEIGHTS = ("latency", "cost", "hops")
# Brute force refuses graphs with more simple paths than this (keeps the oracle honest and fast).
MAX_ENUMERATED_PATHS = 200_000


def examples(n: int) -> settings:
    """Hypothesis settings for one property: ``n`` examples times $PATHCORE_EXAMPLES_SCALE.

    The default scale (1.0) is the CI budget; ``PATHCORE_EXAMPLES_SCALE=10`` runs a long soak.
    Settings are per test so that nothing here changes other modules' hypothesis profile.
    """
    scale = float(os.environ.get("PATHCORE_EXAMPLES_SCALE", "1"))
    return settings(
        max_examples=max(1, int(n * scale)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------------------------
# Reading pathcore objects without relying on one representation
# --------------------------------------------------------------------------------------------


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj[name]
    return getattr(obj, name)


@dataclass(frozen=True)
class LinkRec:
    """One directed link as pathcore reports it through ``Graph.links()``."""

    id: int
    u: str
    v: str
    latency_ms: float
    bandwidth_mbps: float
    residual_mbps: float
    cost: float
    up: bool


def read_links(graph: Any) -> dict[int, LinkRec]:
    """All links of a pathcore graph, keyed by id (accepts dicts or objects from links())."""
    out: dict[int, LinkRec] = {}
    for item in graph.links():
        rec = LinkRec(
            id=int(_field(item, "id")),
            u=str(_field(item, "u")),
            v=str(_field(item, "v")),
            latency_ms=float(_field(item, "latency_ms")),
            bandwidth_mbps=float(_field(item, "bandwidth_mbps")),
            residual_mbps=float(_field(item, "residual_mbps")),
            cost=float(_field(item, "cost")),
            up=bool(_field(item, "up")),
        )
        assert rec.id not in out, f"links() lists id {rec.id} twice"
        out[rec.id] = rec
    return out


def link_value(link: LinkRec, weight: str) -> float:
    if weight == "latency":
        return link.latency_ms
    if weight == "cost":
        return link.cost
    if weight == "hops":
        return 1.0
    raise ValueError(weight)


def path_value(path: Any, weight: str) -> float:
    """The total of ``weight`` that a returned pathcore ``Path`` reports."""
    if weight == "latency":
        return float(path.latency_ms)
    if weight == "cost":
        return float(path.cost)
    return float(path.hops)


# --------------------------------------------------------------------------------------------
# The oracle model: a directed multigraph with per-link ids
# --------------------------------------------------------------------------------------------


@dataclass
class Model:
    """A directed multigraph mirrored from a pathcore graph, with brute-force algorithms.

    ``phys`` maps a link id to its physical link (the id returned by ``add_link``); the two
    directions of a bidirectional link share one physical id.
    """

    nodes: list[str]
    links: dict[int, LinkRec]
    phys: dict[int, int] = field(default_factory=dict)

    def physical(self, link_id: int) -> int:
        return self.phys.get(link_id, link_id)

    def usable(
        self,
        min_bandwidth_mbps: float = 0.0,
        exclude_nodes: Iterable[str] = (),
        exclude_links: Iterable[int] = (),
    ) -> list[LinkRec]:
        """Links a path may use: up, residual >= min, not excluded, no excluded endpoint."""
        bad_nodes = set(exclude_nodes)
        bad_links = set(exclude_links)
        return [
            link
            for link in self.links.values()
            if link.up
            and link.residual_mbps >= min_bandwidth_mbps
            and link.id not in bad_links
            and link.u not in bad_nodes
            and link.v not in bad_nodes
        ]

    def simple_paths(
        self, src: str, dst: str, links: Sequence[LinkRec] | None = None
    ) -> list[tuple[int, ...]]:
        """Every simple (node-loopless) path src -> dst as a tuple of link ids, brute force.

        Parallel links give distinct paths. ``src == dst`` gives the single empty path.
        """
        links = self.usable() if links is None else links
        out_links: dict[str, list[LinkRec]] = {n: [] for n in self.nodes}
        for link in links:
            out_links[link.u].append(link)
        found: list[tuple[int, ...]] = []
        stack_links: list[int] = []
        on_path = {src}

        def walk(node: str) -> None:
            if node == dst:
                found.append(tuple(stack_links))
                if len(found) > MAX_ENUMERATED_PATHS:
                    raise RuntimeError("graph too large for brute force")
                return
            for link in out_links[node]:
                if link.v in on_path:
                    continue
                on_path.add(link.v)
                stack_links.append(link.id)
                walk(link.v)
                stack_links.pop()
                on_path.discard(link.v)

        walk(src)
        return found

    def total(self, path_links: Sequence[int], weight: str) -> float:
        return math.fsum(link_value(self.links[i], weight) for i in path_links)

    def latency(self, path_links: Sequence[int]) -> float:
        return self.total(path_links, "latency")

    def nodes_of(self, src: str, path_links: Sequence[int]) -> list[str]:
        return [src] + [self.links[i].v for i in path_links]

    # -- brute-force answers ----------------------------------------------------------------

    def best_constrained(
        self,
        src: str,
        dst: str,
        max_latency_ms: float,
        weight: str = "cost",
        min_bandwidth_mbps: float = 0.0,
        exclude_nodes: Iterable[str] = (),
        exclude_links: Iterable[int] = (),
    ) -> float | None:
        """Least ``weight`` among feasible simple paths, or None if none is feasible."""
        exclude_nodes = set(exclude_nodes)
        if src in exclude_nodes or dst in exclude_nodes:
            return None
        links = self.usable(min_bandwidth_mbps, exclude_nodes, exclude_links)
        best: float | None = None
        for p in self.simple_paths(src, dst, links):
            if self.latency(p) <= max_latency_ms:
                w = self.total(p, weight)
                if best is None or w < best:
                    best = w
        return best

    def k_smallest(
        self, src: str, dst: str, k: int, weight: str, max_latency_ms: float | None = None
    ) -> list[float]:
        """The k smallest weights among (latency-feasible) simple paths, ascending."""
        weights = sorted(
            self.total(p, weight)
            for p in self.simple_paths(src, dst)
            if max_latency_ms is None or self.latency(p) <= max_latency_ms
        )
        return weights[:k]

    def best_disjoint_pair(
        self, src: str, dst: str, weight: str, node_disjoint: bool = False
    ) -> float | None:
        """Least total weight of two physically link-disjoint simple paths (or node-disjoint:
        no shared intermediate node and no shared physical link); None if no such pair."""
        scored = []
        for p in self.simple_paths(src, dst):
            phys = frozenset(self.physical(i) for i in p)
            inner = frozenset(self.nodes_of(src, p)[1:-1])
            scored.append((self.total(p, weight), phys, inner))
        scored.sort(key=lambda t: t[0])
        best = math.inf
        for i, (w1, phys1, inner1) in enumerate(scored):
            if 2 * w1 >= best:
                break
            for w2, phys2, inner2 in scored[i + 1 :]:
                if w1 + w2 >= best:
                    break
                if phys1 & phys2:
                    continue
                if node_disjoint and inner1 & inner2:
                    continue
                best = w1 + w2
        return None if best == math.inf else best

    # -- networkx views ---------------------------------------------------------------------

    def nx_digraph(self, weight: str, links: Sequence[LinkRec] | None = None) -> nx.DiGraph:
        """DiGraph keeping the least-``weight`` parallel link per ordered pair, attr 'w'."""
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        for link in self.usable() if links is None else links:
            w = link_value(link, weight)
            if not g.has_edge(link.u, link.v) or g[link.u][link.v]["w"] > w:
                g.add_edge(link.u, link.v, w=w)
        return g


def nx_distance(g: nx.DiGraph, src: str, dst: str) -> float | None:
    try:
        return float(nx.dijkstra_path_length(g, src, dst, weight="w"))
    except nx.NetworkXNoPath:
        return None


# --------------------------------------------------------------------------------------------
# Checking what pathcore returns
# --------------------------------------------------------------------------------------------


def check_path(
    model: Model,
    path: Any,
    src: str,
    dst: str,
    usable: Iterable[LinkRec] | None = None,
) -> tuple[int, ...]:
    """Assert that ``path`` is a valid simple path src -> dst over usable links; return its ids.

    Valid means: nodes start at src and end at dst, each link id exists, is usable (up, and for
    constrained calls not excluded and with enough residual) and joins consecutive nodes, no
    node repeats, and the reported totals equal the sums of the link values.
    """
    allowed = {link.id for link in (model.usable() if usable is None else usable)}
    nodes = [str(n) for n in path.nodes]
    links = tuple(int(i) for i in path.links)
    assert nodes[0] == src and nodes[-1] == dst, f"path {nodes} is not {src}->{dst}"
    assert len(nodes) == len(links) + 1, f"{len(nodes)} nodes but {len(links)} links"
    assert len(set(nodes)) == len(nodes), f"path {nodes} repeats a node"
    for i, link_id in enumerate(links):
        assert link_id in model.links, f"path uses unknown link id {link_id}"
        assert link_id in allowed, f"path uses unusable link {model.links[link_id]}"
        link = model.links[link_id]
        assert (link.u, link.v) == (nodes[i], nodes[i + 1]), (
            f"link {link_id} joins {link.u}->{link.v}, path step is {nodes[i]}->{nodes[i + 1]}"
        )
    assert int(path.hops) == len(links)
    assert len(path) == len(nodes), "len(Path) is its number of nodes"
    assert math.isclose(float(path.latency_ms), model.latency(links), abs_tol=TOL)
    assert math.isclose(float(path.cost), model.total(links, "cost"), abs_tol=TOL)
    if links:
        bottleneck = min(model.links[i].residual_mbps for i in links)
        assert math.isclose(float(path.bottleneck_mbps), bottleneck, abs_tol=TOL), (
            f"bottleneck {path.bottleneck_mbps} != least residual {bottleneck}"
        )
    return links


# --------------------------------------------------------------------------------------------
# Random graphs (hypothesis) and building them in pathcore
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkSpec:
    u: int
    v: int
    latency_ms: float
    bandwidth_mbps: float
    cost: float
    bidirectional: bool
    down: bool
    residual_mbps: float | None


@dataclass(frozen=True)
class GraphSpec:
    n_nodes: int
    links: tuple[LinkSpec, ...]

    @property
    def names(self) -> list[str]:
        return [node_name(i) for i in range(self.n_nodes)]


def node_name(i: int) -> str:
    return f"n{i}"


# Dyadic values: many ties and zeros, exact sums.
LATENCIES = st.integers(0, 16).map(lambda x: x / 4)
COSTS = st.integers(0, 10).map(lambda x: x / 2)
BANDWIDTHS = st.sampled_from([0.0, 10.0, 100.0, 1000.0])
RESIDUAL_FRACTIONS = st.sampled_from([0.0, 0.25, 0.5, 1.0])
MIN_BANDWIDTHS = st.sampled_from([0.0, 0.0, 5.0, 10.0, 50.0, 100.0, 250.0, 1000.0])


@st.composite
def graph_specs(
    draw: st.DrawFn,
    min_nodes: int = 2,
    max_nodes: int = 8,
    max_links: int = 14,
    parallel: bool = True,
    down: bool = True,
    values: str = "dyadic",
    self_loops: bool = True,
) -> GraphSpec:
    """A random directed multigraph: some links bidirectional, some parallel, some down, a
    few self-loops (which no simple path may use)."""
    n = draw(st.integers(min_nodes, max_nodes))
    m = draw(st.integers(0, max_links))
    if values == "dyadic":
        lat, cost = LATENCIES, COSTS
    else:  # arbitrary finite floats, zeros and ties still likely
        lat = st.one_of(st.just(0.0), LATENCIES, st.floats(0, 1e3, allow_subnormal=False))
        cost = st.one_of(st.just(0.0), COSTS, st.floats(0, 1e3, allow_subnormal=False))
    links: list[LinkSpec] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(m):
        u = draw(st.integers(0, n - 1))
        v = draw(st.integers(0, n - 2))
        v = v + 1 if v >= u else v
        if self_loops and draw(st.integers(0, 15)) == 0:
            v = u
        bidir = draw(st.booleans())
        pairs = {(u, v), (v, u)} if bidir else {(u, v)}
        if not parallel and pairs & seen:
            continue
        seen |= pairs
        bandwidth = draw(BANDWIDTHS)
        residual = None
        if draw(st.booleans()):
            residual = bandwidth * draw(RESIDUAL_FRACTIONS)
        links.append(
            LinkSpec(
                u=u,
                v=v,
                latency_ms=draw(lat),
                bandwidth_mbps=bandwidth,
                cost=draw(cost),
                bidirectional=bidir,
                down=down and draw(st.integers(0, 6)) == 0,
                residual_mbps=residual,
            )
        )
    return GraphSpec(n, tuple(links))


@dataclass
class Built:
    graph: Any
    model: Model
    forward_ids: list[int]  # id returned by add_link for each LinkSpec
    new_ids: list[set[int]]  # ids that appeared in links() with each add_link


def build(spec: GraphSpec) -> Built:
    """Build ``spec`` in pathcore and mirror it (from ``links()``) into an oracle Model."""
    import pathcore

    g = pathcore.Graph()
    for name in spec.names:
        g.add_node(name)
    phys: dict[int, int] = {}
    forward_ids: list[int] = []
    new_ids: list[set[int]] = []
    known = set(read_links(g))
    for ls in spec.links:
        lid = g.add_link(
            node_name(ls.u),
            node_name(ls.v),
            latency_ms=ls.latency_ms,
            bandwidth_mbps=ls.bandwidth_mbps,
            cost=ls.cost,
            bidirectional=ls.bidirectional,
        )
        now = set(read_links(g))
        added = now - known
        known = now
        for i in added:
            phys[i] = lid
        forward_ids.append(lid)
        new_ids.append(added)
        if ls.down:
            g.set_link_up(lid, False)
        if ls.residual_mbps is not None:
            g.set_residual_bandwidth(lid, ls.residual_mbps)
    model = Model(nodes=spec.names, links=read_links(g), phys=phys)
    return Built(g, model, forward_ids, new_ids)
