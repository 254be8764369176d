"""pathcore on the 15 real carrier maps of the Internet Topology Zoo.

Data: ``topologies/zoo/*.gml`` (see its README.md and SOURCE.md). Files are parsed
with networkx with ``multigraph 1`` forced (six files repeat an edge without declaring it).
Every GML edge becomes one bidirectional pathcore link.

* latency_ms = great-circle distance (haversine, R = 6371 km) x 1.5 route factor
  x 0.0049 ms/km; an edge with an endpoint lacking Latitude/Longitude gets
  ``DEFAULT_LATENCY_MS`` (1.0 ms) so that every file, Internet2 (no coordinates) included,
  keeps all its links;
* cost = a seeded random integer 1..10 per edge (the Zoo has no costs).

Oracles: the counts in SOURCE.md and networkx's parse; networkx Dijkstra for least latency;
for the constrained path, the "networkx method" -- walk ``shortest_simple_paths`` by cost
(first 200) and take the first path within the latency bound -- gives an upper bound on the
optimum cost, and networkx Dijkstra on latency decides feasibility (None iff the least latency
exceeds the bound).
"""

from __future__ import annotations

import itertools
import math
import random
import re
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from oracles import TOL, Model, check_path, read_links
from test_pathcore_shortest import matrix_entries

import pathcore
from controller.topology.files import zoo_dir

ZOO_DIR = zoo_dir()
EARTH_RADIUS_KM = 6371.0
ROUTE_FACTOR = 1.5
MS_PER_KM = 0.0049
DEFAULT_LATENCY_MS = 1.0
BANDWIDTH_MBPS = 100_000.0
YEN_PATHS = 200


def zoo_files() -> list[Path]:
    files = sorted(ZOO_DIR.glob("*.gml"))
    if len(files) != 15:
        pytest.fail(
            f"expected the 15 Topology Zoo GML files in {ZOO_DIR}, found {len(files)}",
            pytrace=False,
        )
    return files


def read_zoo_gml(path: Path) -> nx.MultiGraph:
    """Parse a Zoo GML file, accepting repeated edges (multigraph forced in memory)."""
    text = path.read_text(encoding="utf-8")
    if not re.search(r"^\s*multigraph\s+1\s*$", text, re.MULTILINE):
        text = re.sub(r"graph\s*\[", "graph [\n  multigraph 1", text, count=1)
    return nx.parse_gml(text, label="id")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))


def edge_latency_ms(zg: nx.MultiGraph, u: Any, v: Any) -> float:
    a, b = zg.nodes[u], zg.nodes[v]
    if not all(k in d for d in (a, b) for k in ("Latitude", "Longitude")):
        return DEFAULT_LATENCY_MS
    km = haversine_km(a["Latitude"], a["Longitude"], b["Latitude"], b["Longitude"])
    return km * ROUTE_FACTOR * MS_PER_KM


def source_table() -> dict[str, tuple[int, int]]:
    """{file: (nodes, edge records)} from the table in SOURCE.md."""
    out = {}
    for line in (ZOO_DIR / "SOURCE.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(\w+\.gml)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", line)
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


class Zoo:
    """One Zoo network in pathcore, with its networkx views and the oracle Model."""

    def __init__(self, path: Path) -> None:
        self.name = path.stem
        self.zg = read_zoo_gml(path)
        rng = random.Random(self.name)
        self.graph = pathcore.Graph()
        for n in self.zg.nodes:
            self.graph.add_node(str(n))
        self.edges: list[tuple[str, str, float, float]] = []
        forward: list[int] = []
        for u, v in self.zg.edges():
            lat, cost = edge_latency_ms(self.zg, u, v), float(rng.randint(1, 10))
            self.edges.append((str(u), str(v), lat, cost))
            forward.append(
                self.graph.add_link(
                    str(u),
                    str(v),
                    latency_ms=lat,
                    bandwidth_mbps=BANDWIDTH_MBPS,
                    cost=cost,
                    bidirectional=True,
                )
            )
        links = read_links(self.graph)
        # Pair each forward id with one unclaimed reverse link (same ends, same values).
        by_ends: dict[tuple[str, str, float, float], list[int]] = {}
        for rec in links.values():
            by_ends.setdefault((rec.u, rec.v, rec.latency_ms, rec.cost), []).append(rec.id)
        phys = {lid: lid for lid in forward}
        for lid in forward:
            fwd = links[lid]
            candidates = by_ends.get((fwd.v, fwd.u, fwd.latency_ms, fwd.cost), [])
            rid = next(i for i in candidates if i not in phys)
            phys[rid] = lid
        self.model = Model([str(n) for n in self.zg.nodes], links, phys)

    def collapsed(self, key: str) -> nx.Graph:
        """Undirected simple graph keeping, per node pair, the edge least in ``key`` (ties:
        least latency), with both 'latency' and 'cost' of that edge."""
        g = nx.Graph()
        g.add_nodes_from(self.model.nodes)
        for u, v, lat, cost in self.edges:
            attrs = {"latency": lat, "cost": cost}
            if g.has_edge(u, v):
                old = g[u][v]
                if (old[key], old["latency"]) <= (attrs[key], attrs["latency"]):
                    continue
            g.add_edge(u, v, **attrs)
        return g


_CACHE: dict[str, Zoo] = {}


def zoo(path: Path) -> Zoo:
    if path.stem not in _CACHE:
        _CACHE[path.stem] = Zoo(path)
    return _CACHE[path.stem]


FILES = [pytest.param(p, id=p.stem) for p in sorted(ZOO_DIR.glob("*.gml"))] or [
    pytest.param(None, id="missing")
]


def _file(path: Path | None) -> Path:
    zoo_files()  # fails with a clear message when the dataset is missing
    assert path is not None
    return path


def sample_pairs(z: Zoo, n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(f"{z.name}-{seed}")
    nodes = z.model.nodes
    return [tuple(rng.sample(nodes, 2)) for _ in range(n)]  # type: ignore[misc]


def test_all_fifteen_files_present() -> None:
    assert len(zoo_files()) == 15


@pytest.mark.parametrize("path", FILES)
def test_counts_match(path: Path | None) -> None:
    z = zoo(_file(path))
    nodes, edges = source_table()[f"{z.name}.gml"]
    assert z.zg.number_of_nodes() == nodes and z.zg.number_of_edges() == edges
    assert z.graph.node_count == nodes
    assert len(z.model.links) == 2 * edges, "each bidirectional link lists two directions"
    assert z.graph.link_count == 2 * edges  # directed links, as documented
    assert len(set(z.model.phys.values())) == edges


@pytest.mark.parametrize("path", FILES)
def test_least_latency_matches_networkx(path: Path | None) -> None:
    z = zoo(_file(path))
    g_lat = z.collapsed("latency")
    rng = random.Random(z.name)
    for src in rng.sample(z.model.nodes, min(4, len(z.model.nodes))):
        dist = nx.single_source_dijkstra_path_length(g_lat, src, weight="latency")
        for dst in rng.sample(z.model.nodes, min(25, len(z.model.nodes))):
            p = z.graph.shortest_path(src, dst, weight="latency")
            assert p is not None, f"{z.name}: {src}->{dst} unreachable (the map is connected)"
            check_path(z.model, p, src, dst)
            assert math.isclose(p.latency_ms, dist[dst], rel_tol=1e-12, abs_tol=TOL), (
                f"{z.name} {src}->{dst}: pathcore {p.latency_ms}, networkx {dist[dst]}"
            )


@pytest.mark.parametrize("path", FILES)
def test_constrained_no_worse_than_networkx_method(path: Path | None) -> None:
    z = zoo(_file(path))
    g_lat, g_cost = z.collapsed("latency"), z.collapsed("cost")
    # networkx's Yen costs seconds per pair on the larger maps: fewer pairs there
    n_nodes = len(z.model.nodes)
    n_pairs, fracs = (6, (0.0, 0.3, 0.7)) if n_nodes <= 100 else (3, (0.3, 0.7))
    if n_nodes > 300:
        n_pairs, fracs = 1, (0.5,)
    found_by_networkx = 0
    for src, dst in sample_pairs(z, n_pairs, seed=1):
        min_lat = nx.dijkstra_path_length(g_lat, src, dst, weight="latency")
        cheapest = nx.dijkstra_path(g_cost, src, dst, weight="cost")
        min_cost = nx.path_weight(g_cost, cheapest, "cost")
        cheapest_lat = nx.path_weight(g_cost, cheapest, "latency")
        for frac in fracs:
            # +1e-9: float sums of the same path differ in the last bits with summation order
            bound = min_lat + frac * max(0.0, cheapest_lat - min_lat) + 1e-9
            p = z.graph.constrained_path(src, dst, max_latency_ms=bound)
            assert p is not None, f"{z.name} {src}->{dst}: least latency {min_lat} <= {bound}"
            links = check_path(z.model, p, src, dst)
            assert z.model.latency(links) <= bound + TOL
            assert p.cost >= min_cost - TOL
            for yen_path in itertools.islice(
                nx.shortest_simple_paths(g_cost, src, dst, weight="cost"), YEN_PATHS
            ):
                if nx.path_weight(g_cost, yen_path, "latency") <= bound:
                    found_by_networkx += 1
                    nx_cost = nx.path_weight(g_cost, yen_path, "cost")
                    assert p.cost <= nx_cost + TOL, (
                        f"{z.name} {src}->{dst} bound {bound}: pathcore cost {p.cost}, "
                        f"networkx method finds {nx_cost}"
                    )
                    break
        # just under the least latency nothing is feasible
        below = min_lat * (1 - 1e-6)
        if below >= 0:
            assert z.graph.constrained_path(src, dst, max_latency_ms=below) is None
    assert found_by_networkx > 0, "the networkx method never found a path: bounds too tight"


@pytest.mark.parametrize("name", ["Cogentco", "Geant2012", "Internet2"])
def test_latency_matrix_matches_networkx(name: str) -> None:
    z = zoo(_file(ZOO_DIR / f"{name}.gml"))
    g_lat = z.collapsed("latency")
    apsp = dict(nx.all_pairs_dijkstra_path_length(g_lat, weight="latency"))
    names = list(z.graph.nodes())
    got = matrix_entries(z.graph.latency_matrix(), names)
    assert len(got) == len(names) ** 2
    for (a, b), value in got.items():
        assert math.isclose(value, apsp[a][b], rel_tol=1e-12, abs_tol=TOL), (a, b, value)


def min_cost_two_flow(z: Zoo, src: str, dst: str, node_disjoint: bool) -> float | None:
    """Least total cost of two disjoint src->dst paths, as a min-cost flow of 2 units
    (networkx network simplex, integer costs). Each Zoo edge (parallel ones included) is a
    gadget u,v -> in_e -> out_e -> u,v with capacity 1 on in_e->out_e, so it carries one path
    in one direction; with node_disjoint, every node other than src/dst also gets
    capacity 1. Positive costs keep the gadget's u->in_e->out_e->u detour out of optima."""
    g = nx.DiGraph()

    def head(n: str) -> str:  # where arcs into node n land
        return f"{n}/in" if node_disjoint and n not in (src, dst) else n

    if node_disjoint:
        for n in z.model.nodes:
            if n not in (src, dst):
                g.add_edge(f"{n}/in", n, capacity=1, weight=0)
    for i, (u, v, _lat, cost) in enumerate(z.edges):
        a, b = f"e{i}/in", f"e{i}/out"
        g.add_edge(u, a, capacity=1, weight=int(cost))
        g.add_edge(v, a, capacity=1, weight=int(cost))
        g.add_edge(a, b, capacity=1, weight=0)
        g.add_edge(b, head(u), capacity=1, weight=0)
        g.add_edge(b, head(v), capacity=1, weight=0)
    g.add_edge("SOURCE", src, capacity=2, weight=0)
    flow = nx.max_flow_min_cost(g, "SOURCE", dst)
    if sum(flow["SOURCE"].values()) < 2:
        return None
    return float(nx.cost_of_flow(g, flow))


@pytest.mark.parametrize("path", FILES)
def test_disjoint_pair_matches_min_cost_flow(path: Path | None) -> None:
    z = zoo(_file(path))
    n_pairs = 1 if len(z.model.nodes) > 300 else 2  # the flow oracle is slow on Kdl
    for src, dst in sample_pairs(z, n_pairs, seed=2):
        for node_disjoint in (False, True):
            pair = z.graph.disjoint_paths(src, dst, weight="cost", node_disjoint=node_disjoint)
            best = min_cost_two_flow(z, src, dst, node_disjoint)
            if best is None:
                assert pair is None, f"{z.name} {src}->{dst}: no disjoint pair exists"
                continue
            assert pair is not None, f"{z.name} {src}->{dst}: min-cost flow finds {best}"
            a = check_path(z.model, pair[0], src, dst)
            b = check_path(z.model, pair[1], src, dst)
            assert not {z.model.physical(i) for i in a} & {z.model.physical(i) for i in b}
            if node_disjoint:
                assert not set(pair[0].nodes[1:-1]) & set(pair[1].nodes[1:-1])
            total = pair[0].cost + pair[1].cost
            assert math.isclose(total, best, abs_tol=TOL), (
                f"{z.name} {src}->{dst} node_disjoint={node_disjoint}: pathcore {total}, "
                f"min-cost flow {best}"
            )


def _files_without_parallel_links() -> list[Any]:
    """Maps whose edge records equal their distinct node pairs (per SOURCE.md)."""
    source = ZOO_DIR / "SOURCE.md"
    if not source.exists():
        return FILES
    plain = []
    for line in source.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(\w+)\.gml\s*\|\s*\d+\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|", line)
        if m and m.group(2) == m.group(3):
            plain.append(pytest.param(ZOO_DIR / f"{m.group(1)}.gml", id=m.group(1)))
    return plain


# With parallel links pathcore counts each link choice as its own path and Yen on the
# collapsed graph does not: those maps are left to the brute-force k-paths test.
@pytest.mark.parametrize("path", _files_without_parallel_links())
def test_k_shortest_match_networkx_yen(path: Path | None) -> None:
    z = zoo(_file(path))
    assert z.zg.number_of_edges() == nx.Graph(z.zg).number_of_edges()
    g_lat = z.collapsed("latency")
    for src, dst in sample_pairs(z, 2, seed=3):
        yen = itertools.islice(nx.shortest_simple_paths(g_lat, src, dst, weight="latency"), 8)
        expected = [nx.path_weight(g_lat, p, "latency") for p in yen]
        paths = z.graph.k_shortest_paths(src, dst, 8, weight="latency")
        got = [p.latency_ms for p in paths]
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=TOL), (z.name, src, dst, got, expected)
        assert len({tuple(p.links) for p in paths}) == len(paths)
        for p in paths:
            check_path(z.model, p, src, dst)
