"""Benchmark pathcore against networkx and rustworkx on the same graphs, in one run.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_pathcore.py            # full run (a few minutes)
    .venv/bin/python benchmarks/bench_pathcore.py --quick    # about a minute

Prints a markdown table of times and ratios (peer time / pathcore time, so > 1 means pathcore
is faster) and writes it, with the raw numbers as JSON, to benchmarks/results/. Every timed
answer is also checked against the peers (same least latency, constrained path no worse), so
a fast wrong answer cannot pass. Nothing here asserts a time: the targets are printed next to
the measurements. See benchmarks/README.md for the method.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import pickle
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import rustworkx as rx

import pathcore
from controller.topology.files import zoo_file

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
EARTH_RADIUS_KM = 6371.0
ROUTE_FACTOR = 1.5
MS_PER_KM = 0.0049
DEFAULT_LATENCY_MS = 1.0  # Zoo edges with an endpoint lacking coordinates
BANDWIDTH_MBPS = 100_000.0
PLANE_KM = 3000.0  # synthetic graphs: points in a 3000 km x 3000 km square
TOL = 1e-9


# ---------------------------------------------------------------------------------------------
# Graph data: one neutral edge list, loaded into each library
# ---------------------------------------------------------------------------------------------


@dataclass
class GraphData:
    """Undirected edges (u, v, latency_ms, cost) over nodes 0..n-1; each is a bidirectional
    link in pathcore and two arcs in networkx/rustworkx."""

    name: str
    n: int
    edges: list[tuple[int, int, float, float]]

    @property
    def names(self) -> list[str]:
        return [f"v{i}" for i in range(self.n)]


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))


def load_zoo(name: str) -> GraphData:
    text = zoo_file(name).read_text(encoding="utf-8")
    if not re.search(r"^\s*multigraph\s+1\s*$", text, re.MULTILINE):
        text = re.sub(r"graph\s*\[", "graph [\n  multigraph 1", text, count=1)
    zg = nx.parse_gml(text, label="id")
    index = {node: i for i, node in enumerate(zg.nodes)}
    rng = random.Random(name)
    edges = []
    for u, v in zg.edges():
        a, b = zg.nodes[u], zg.nodes[v]
        if all(k in d for d in (a, b) for k in ("Latitude", "Longitude")):
            km = haversine_km(a["Latitude"], a["Longitude"], b["Latitude"], b["Longitude"])
            latency_ms = km * ROUTE_FACTOR * MS_PER_KM
        else:
            latency_ms = DEFAULT_LATENCY_MS
        edges.append((index[u], index[v], latency_ms, float(rng.randint(1, 10))))
    return GraphData(name, len(index), edges)


def geometric(n: int, seed: int = 1) -> GraphData:
    """A connected random geometric graph: n uniform points in a square, ~2n local edges
    (mean degree 4). A snake through grid cells makes it connected; each node then links
    to its 1st, 2nd, 3rd nearest neighbours (in that order of rounds) until 2n edges.
    latency = plane distance x 1.5 x 0.0049 ms/km; cost = random integer 1..10."""
    rng = random.Random(seed)
    xs = [rng.uniform(0, PLANE_KM) for _ in range(n)]
    ys = [rng.uniform(0, PLANE_KM) for _ in range(n)]
    side = max(1, int(math.sqrt(n / 2)))  # about 2 points per cell
    cell = PLANE_KM / side
    cells: dict[tuple[int, int], list[int]] = {}
    where = []
    for i in range(n):
        c = (min(side - 1, int(xs[i] / cell)), min(side - 1, int(ys[i] / cell)))
        cells.setdefault(c, []).append(i)
        where.append(c)

    def dist(i: int, j: int) -> float:
        return math.hypot(xs[i] - xs[j], ys[i] - ys[j])

    edge_set: set[tuple[int, int]] = set()
    edges: list[tuple[int, int]] = []

    def add(i: int, j: int) -> None:
        key = (i, j) if i < j else (j, i)
        if i != j and key not in edge_set:
            edge_set.add(key)
            edges.append(key)

    # snake through the cells, row by row, alternating direction: connected and local
    order = sorted(
        range(n),
        key=lambda i: (where[i][1], where[i][0] if where[i][1] % 2 == 0 else -where[i][0], xs[i]),
    )
    for a, b in itertools.pairwise(order):
        add(a, b)
    target = 2 * n
    nearest: list[list[int]] = []
    for i in range(n):
        cx, cy = where[i]
        cand = [
            j
            for dx in (-1, 0, 1)
            for dy in (-1, 0, 1)
            for j in cells.get((cx + dx, cy + dy), ())
            if j != i
        ]
        cand.sort(key=lambda j: dist(i, j))
        nearest.append(cand[:3])
    for rank in range(3):
        for i in rng.sample(range(n), n):
            if len(edges) >= target:
                break
            if rank < len(nearest[i]):
                add(i, nearest[i][rank])
    out = [
        (u, v, dist(u, v) * ROUTE_FACTOR * MS_PER_KM, float(rng.randint(1, 10))) for u, v in edges
    ]
    return GraphData(f"geo-{n // 1000}k" if n >= 1000 else f"geo-{n}", n, out)


def to_pathcore(data: GraphData) -> pathcore.Graph:
    g = pathcore.Graph()
    names = data.names
    g.add_nodes(names)
    g.add_links(
        [(names[u], names[v], lat, BANDWIDTH_MBPS, cost) for u, v, lat, cost in data.edges],
        bidirectional=True,
    )
    return g


def to_rustworkx(data: GraphData) -> rx.PyDiGraph:
    g = rx.PyDiGraph(multigraph=True)
    g.add_nodes_from(range(data.n))
    arcs = []
    for u, v, lat, _ in data.edges:
        arcs.append((u, v, lat))
        arcs.append((v, u, lat))
    g.add_edges_from(arcs)
    return g


def to_networkx(data: GraphData, key: str = "latency") -> nx.DiGraph:
    """DiGraph keeping, per node pair, the parallel edge least in ``key`` (helps networkx)."""
    g = nx.DiGraph()
    g.add_nodes_from(range(data.n))
    for u, v, lat, cost in data.edges:
        attrs = {"latency": lat, "cost": cost}
        for a, b in ((u, v), (v, u)):
            if g.has_edge(a, b):
                old = g[a][b]
                if (old[key], old["latency"]) <= (attrs[key], attrs["latency"]):
                    continue
            g.add_edge(a, b, **attrs)
    return g


# ---------------------------------------------------------------------------------------------
# Timing helpers
# ---------------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Least wall time of ``repeat`` runs (the machine is shared: the least is the run least
    disturbed by other work, as in ``timeit``) and the first run's result."""
    best, out = math.inf, None
    for i in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
        if i == 0:
            out = result
    return best, out


def vm_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


@dataclass
class Row:
    benchmark: str
    graph: str
    pathcore_s: float
    peers: dict[str, float] = field(default_factory=dict)  # peer -> seconds (same work)
    capped: dict[str, bool] = field(default_factory=dict)  # peer hit its time/path cap
    note: str = ""
    target: str = ""

    def ratio(self, peer: str) -> str:
        r = self.peers[peer] / self.pathcore_s if self.pathcore_s > 0 else math.inf
        return f"> {r:,.1f}x" if self.capped.get(peer) else f"{r:,.1f}x"


# ---------------------------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------------------------


def pick_pairs(n: int, count: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [tuple(rng.sample(range(n), 2)) for _ in range(count)]  # type: ignore[misc]


def bench_dijkstra(data: GraphData, n_pairs: int, n_sources: int, repeat: int) -> list[Row]:
    pc, rg, ng = to_pathcore(data), to_rustworkx(data), to_networkx(data)
    names = data.names
    pairs = pick_pairs(data.n, n_pairs, seed=7)
    sources = [s for s, _ in pick_pairs(data.n, n_sources, seed=8)]

    def pc_st() -> list[float | None]:
        out = []
        for s, t in pairs:
            p = pc.shortest_path(names[s], names[t], weight="latency")
            out.append(None if p is None else p.latency_ms)
        return out

    def rx_st() -> list[float | None]:
        out = []
        for s, t in pairs:
            d = rx.digraph_dijkstra_shortest_path_lengths(rg, s, float, goal=t)
            out.append(d[t] if t in d else None)
        return out

    def rx_st_path() -> list[list[int]]:
        out = []
        for s, t in pairs:
            found = rx.digraph_dijkstra_shortest_paths(rg, s, target=t, weight_fn=float)
            out.append(list(found[t]) if t in found else [])
        return out

    def nx_st() -> list[float | None]:
        out = []
        for s, t in pairs:
            try:
                path = nx.dijkstra_path(ng, s, t, weight="latency")
                out.append(nx.path_weight(ng, path, "latency"))
            except nx.NetworkXNoPath:
                out.append(None)
        return out

    t_pc, d_pc = timed(pc_st, repeat)
    t_rx, d_rx = timed(rx_st, repeat)
    t_rxp, _ = timed(rx_st_path, repeat)
    t_nx, d_nx = timed(nx_st, repeat)
    for a, b, c in zip(d_pc, d_rx, d_nx, strict=True):
        assert (a is None) == (b is None) == (c is None), (a, b, c)
        if a is not None:
            assert math.isclose(a, b, rel_tol=1e-9) and math.isclose(a, c, rel_tol=1e-9), (a, b, c)
    rows = [
        Row(
            "Dijkstra s-t, path (per query)",
            data.name,
            t_pc / n_pairs,
            {"rustworkx": t_rxp / n_pairs, "networkx": t_nx / n_pairs},
            note=(
                f"{n_pairs} random pairs, best of {repeat}; "
                "rustworkx = digraph_dijkstra_shortest_paths(target=)"
            ),
            target="≥ rustworkx, ≥ 20x networkx at 10k",
        ),
        Row(
            "Dijkstra s-t, length (per query)",
            data.name,
            t_pc / n_pairs,
            {"rustworkx": t_rx / n_pairs},
            note="rustworkx = dijkstra_shortest_path_lengths(goal=); pathcore returns the path",
        ),
    ]

    def pc_all() -> list[dict[str, float]]:
        return [pc.within_latency(names[s], math.inf) for s in sources]

    def rx_all() -> list[Any]:
        return [rx.digraph_dijkstra_shortest_path_lengths(rg, s, float) for s in sources]

    def nx_all() -> list[dict[int, float]]:
        return [nx.single_source_dijkstra_path_length(ng, s, weight="latency") for s in sources]

    t_pc, a_pc = timed(pc_all, repeat)
    t_rx, a_rx = timed(rx_all, repeat)
    t_nx, a_nx = timed(nx_all, repeat)
    for s, mp, mr, mn in zip(sources, a_pc, a_rx, a_nx, strict=True):
        assert len(mp) == len(mn) == len(mr) + 1, (len(mp), len(mr), len(mn))  # rx omits src
        for v, d in mn.items():
            assert math.isclose(mp[names[v]], d, rel_tol=1e-9, abs_tol=1e-12)
            if v != s:
                assert math.isclose(mr[v], d, rel_tol=1e-9)
    rows.append(
        Row(
            "Dijkstra single source, all targets (per source)",
            data.name,
            t_pc / n_sources,
            {"rustworkx": t_rx / n_sources, "networkx": t_nx / n_sources},
            note=f"{n_sources} sources, best of {repeat}; pathcore = within_latency(src, inf)",
            target="≥ rustworkx, ≥ 20x networkx at 10k",
        )
    )

    def pc_arrays() -> list[tuple[list[float], list[int]]]:
        return [pc.shortest_path_arrays(names[s]) for s in sources]

    t_arr, a_arr = timed(pc_arrays, repeat)
    for (dist, _), mn in zip(a_arr, a_nx, strict=True):
        assert sum(math.isfinite(d) for d in dist) == len(mn)
        for v, d in mn.items():
            assert math.isclose(dist[v], d, rel_tol=1e-9, abs_tol=1e-12)  # node id v = "v{v}"
    rows.append(
        Row(
            "Dijkstra single source, all targets, arrays (per source)",
            data.name,
            t_arr / n_sources,
            {"rustworkx": t_rx / n_sources, "networkx": t_nx / n_sources},
            note=(
                f"{n_sources} sources, best of {repeat}; pathcore = shortest_path_arrays(src): "
                "(dist, pred) lists by node id"
            ),
            target="≥ rustworkx, ≥ 20x networkx",
        )
    )
    return rows


def bench_tree(data: GraphData, n_targets: int, repeat: int) -> list[Row]:
    """Least-latency next-hop tree toward a target: one reverse Dijkstra in pathcore vs
    networkx single_source_dijkstra on the reversed graph (predecessors give the next hops),
    and, on maps of up to 1,000 nodes, vs one pathcore shortest_path per source (what a
    per-source controller loop does)."""
    pc, ng = to_pathcore(data), to_networkx(data).reverse(copy=True)
    names = data.names
    targets = [t for t, _ in pick_pairs(data.n, n_targets, seed=9)]
    ids = {name: i for i, name in enumerate(names)}
    links = {rec.id: (ids[rec.u], ids[rec.v], rec.latency_ms) for rec in pc.links()}

    def pc_tree() -> list[dict[str, int]]:
        return [pc.shortest_path_tree(names[t]) for t in targets]

    def nx_tree() -> list[tuple[dict[int, float], dict[int, list[int]]]]:
        # paths from t in the reversed graph: the node before v on t's path is v's next hop
        return [nx.single_source_dijkstra(ng, t, weight="latency") for t in targets]

    def pc_loop() -> list[dict[str, int]]:
        out = []
        for t in targets:
            hops: dict[str, int] = {}
            for s in names:
                if s != names[t]:
                    p = pc.shortest_path(s, names[t])
                    if p is not None:
                        hops[s] = p.links[0]
            out.append(hops)
        return out

    def pc_tree_arrays() -> list[tuple[list[float], list[int]]]:
        return [pc.shortest_path_arrays(names[t], reverse=True) for t in targets]

    t_pc, trees = timed(pc_tree, repeat)
    t_arr, tree_arrays = timed(pc_tree_arrays, repeat)
    t_nx, nx_trees = timed(nx_tree, repeat)
    for tree, (_, pred) in zip(trees, tree_arrays, strict=True):
        assert tree == {names[i]: p for i, p in enumerate(pred) if p >= 0}
    # n shortest_path calls per target: only on the controller-sized maps
    peers = {"networkx": t_nx / n_targets}
    if data.n <= 1000:
        peers["pathcore shortest_path per source"] = timed(pc_loop, 1)[0] / n_targets
    for t, tree, (dist, _) in zip(targets, trees, nx_trees, strict=True):
        assert len(tree) == len(dist) - 1, (len(tree), len(dist))
        for s, d in dist.items():
            cur, total = s, 0.0
            while cur != t:
                u, v, lat = links[tree[names[cur]]]
                assert u == cur
                cur, total = v, total + lat
            assert math.isclose(total, d, rel_tol=1e-9, abs_tol=1e-12), (s, t, total, d)
    return [
        Row(
            "Least-latency next-hop tree toward one target (per target)",
            data.name,
            t_pc / n_targets,
            peers,
            note=(
                f"{n_targets} targets, best of {repeat}; pathcore = shortest_path_tree(t); "
                "networkx = single_source_dijkstra on the reversed graph"
            ),
        ),
        Row(
            "Least-latency next-hop tree toward one target, arrays (per target)",
            data.name,
            t_arr / n_targets,
            {"networkx": t_nx / n_targets, "pathcore shortest_path_tree": t_pc / n_targets},
            note=(
                f"{n_targets} targets, best of {repeat}; pathcore = "
                "shortest_path_arrays(t, reverse=True): the same next hops by node id"
            ),
        ),
    ]


def nx_method(
    g_cost: nx.DiGraph, s: int, t: int, bound: float, max_paths: int, max_s: float
) -> tuple[float | None, bool, int]:
    """Walk shortest_simple_paths by cost until a path meets the latency bound.
    Returns (cost or None, capped, paths examined)."""
    t0 = time.perf_counter()
    count = 0
    for path in nx.shortest_simple_paths(g_cost, s, t, weight="cost"):
        count += 1
        if nx.path_weight(g_cost, path, "latency") <= bound:
            return nx.path_weight(g_cost, path, "cost"), False, count
        if count >= max_paths or time.perf_counter() - t0 > max_s:
            return None, True, count
    return None, False, count


def bench_constrained(
    data: GraphData, n_pairs: int, max_paths: int, max_s: float, frac: float = 0.5
) -> Row:
    pc = to_pathcore(data)
    g_cost = to_networkx(data, key="cost")
    names = data.names
    rng = random.Random(11)
    jobs = []
    tries = 0
    while len(jobs) < n_pairs and tries < 100 * n_pairs:
        tries += 1
        s, t = rng.sample(range(data.n), 2)
        fastest = pc.shortest_path(names[s], names[t], weight="latency")
        cheapest = pc.shortest_path(names[s], names[t], weight="cost")
        if fastest is None or cheapest.latency_ms <= fastest.latency_ms * (1 + 1e-6):
            continue  # trivial: the cheapest path already is the fastest
        bound = fastest.latency_ms + frac * (cheapest.latency_ms - fastest.latency_ms)
        jobs.append((s, t, bound))
    t_pc, paths = timed(
        lambda: [pc.constrained_path(names[s], names[t], max_latency_ms=b) for s, t, b in jobs],
        repeat=3,
    )
    t_nx, capped, examined, beaten = 0.0, False, [], 0
    for (s, t, bound), p in zip(jobs, paths, strict=True):
        assert p is not None and p.latency_ms <= bound * (1 + 1e-9)
        dt, (nx_cost, was_capped, count) = timed(
            lambda s=s, t=t, bound=bound: nx_method(g_cost, s, t, bound, max_paths, max_s)
        )
        t_nx += dt
        capped |= was_capped
        examined.append(count)
        if nx_cost is not None:
            assert p.cost <= nx_cost + TOL, (s, t, bound, p.cost, nx_cost)
            beaten += p.cost < nx_cost - TOL
    return Row(
        "Constrained least-cost path, latency-bounded (per query)",
        data.name,
        t_pc / len(jobs),
        {"networkx": t_nx / len(jobs)},
        {"networkx": capped},
        note=(
            f"{len(jobs)} pairs, bound = min latency + {frac} x (latency of cheapest - min); "
            f"networkx examined {min(examined)}..{max(examined)} paths "
            f"(cap {max_paths} paths / {max_s:g} s per query)"
        ),
        target="≥ 100x networkx method",
    )


def bench_batch(data: GraphData, n_requests: int, repeat: int) -> list[Row]:
    pc = to_pathcore(data)
    names = data.names
    rng = random.Random(13)
    for link in range(pc.link_count):
        pc.set_residual_bandwidth(link, rng.uniform(0, BANDWIDTH_MBPS))
    requests = []
    while len(requests) < n_requests:
        s, t = rng.sample(range(data.n), 2)
        fastest = pc.shortest_path(names[s], names[t], weight="latency")
        cheapest = pc.shortest_path(names[s], names[t], weight="cost")
        if fastest is None:
            continue
        span = max(0.0, cheapest.latency_ms - fastest.latency_ms)
        bound = fastest.latency_ms + rng.random() * span
        min_bw = rng.choice([0.0, 0.0, 10_000.0, 40_000.0])
        requests.append((names[s], names[t], bound, min_bw))
    t_batch, batch = timed(lambda: pc.batch_constrained_paths(requests), repeat)
    t_loop, loop = timed(
        lambda: [
            pc.constrained_path(s, t, max_latency_ms=b, min_bandwidth_mbps=bw)
            for s, t, b, bw in requests
        ],
        repeat,
    )
    found = 0
    for a, b in zip(batch, loop, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            found += 1
            assert math.isclose(a.cost, b.cost, abs_tol=TOL)
    return [
        Row(
            f"{n_requests:,} constrained queries, batch_constrained_paths (total)",
            data.name,
            t_batch,
            {"pathcore loop": t_loop},
            note=(
                f"{found} feasible, best of {repeat}; min bandwidth 0/10/40 Gb/s over random "
                "residuals; ratio = one-by-one constrained_path loop / batch"
            ),
            target="≤ 1 s",
        )
    ]


def child_build(lib: str, data_path: str) -> None:
    """Runs in a fresh interpreter: build one library's graph, print time and RSS growth."""
    with open(data_path, "rb") as f:
        data: GraphData = pickle.load(f)
    n = data.n
    names = data.names
    if lib == "pathcore-bulk":
        links = [(names[u], names[v], lat, BANDWIDTH_MBPS, cost) for u, v, lat, cost in data.edges]
    gc.collect()
    rss0 = vm_rss_kb()
    t0 = time.perf_counter()
    if lib == "pathcore-bulk":
        g: Any = pathcore.Graph()
        g.add_nodes(names)
        g.add_links(links, bidirectional=True)
        count = (g.node_count, g.link_count)
    elif lib == "pathcore-loop":
        g = pathcore.Graph()
        for name in names:
            g.add_node(name)
        for u, v, lat, cost in data.edges:
            g.add_link(names[u], names[v], lat, BANDWIDTH_MBPS, cost, True)
        count = (g.node_count, g.link_count)
    elif lib == "rustworkx":
        g = to_rustworkx(data)
        count = (g.num_nodes(), g.num_edges())
    elif lib == "networkx":
        g = nx.DiGraph()
        g.add_nodes_from(range(n))
        g.add_edges_from((u, v, {"latency": lat, "cost": c}) for u, v, lat, c in data.edges)
        g.add_edges_from((v, u, {"latency": lat, "cost": c}) for u, v, lat, c in data.edges)
        count = (g.number_of_nodes(), g.number_of_edges())
    else:
        raise SystemExit(f"unknown lib {lib}")
    seconds = time.perf_counter() - t0
    rss1 = vm_rss_kb()
    print(
        json.dumps(
            {
                "lib": lib,
                "seconds": seconds,
                "rss_mb": (rss1 - rss0) / 1024,
                "nodes": count[0],
                "links": count[1],
            }
        )
    )


def bench_build(data: GraphData) -> list[Row]:
    """Each library builds the graph in its own fresh interpreter, so RSS growth is its own."""
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "graph.pickle"
        data_path.write_bytes(pickle.dumps(data))
        for lib in ("pathcore-bulk", "pathcore-loop", "rustworkx", "networkx"):
            proc = subprocess.run(
                [sys.executable, __file__, "--child-build", lib, str(data_path)],
                capture_output=True,
                text=True,
                timeout=600,
                check=True,
            )
            out[lib] = json.loads(proc.stdout.strip().splitlines()[-1])
    bulk = out["pathcore-bulk"]
    peers = {k: v["seconds"] for k, v in out.items() if k != "pathcore-bulk"}
    rss = ", ".join(f"{k} {v['rss_mb']:.0f} MB" for k, v in out.items())
    return [
        Row(
            f"Build {bulk['nodes']:,} nodes / {bulk['links']:,} directed links",
            data.name,
            bulk["seconds"],
            peers,
            note=f"pathcore add_nodes + add_links; RSS growth: {rss}",
            target="≤ 1 s and ≤ 200 MB",
        )
    ]


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def markdown(rows: list[Row]) -> str:
    lines = [
        "| benchmark | graph | pathcore | peer: time (peer / pathcore) | target | notes |",
        "|---|---|---:|---|---|---|",
    ]
    for r in rows:
        peers = "<br>".join(
            f"{p}: {'> ' if r.capped.get(p) else ''}{fmt_s(t)} ({r.ratio(p)})"
            for p, t in r.peers.items()
        )
        cells = [r.benchmark, r.graph, fmt_s(r.pathcore_s), peers, r.target, r.note]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer queries, about a minute")
    ap.add_argument("--child-build", nargs=2, metavar=("LIB", "DATA"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_build:
        child_build(args.child_build[0], args.child_build[1])
        return
    quick = args.quick
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    rows: list[Row] = []

    def step(label: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {label}", file=sys.stderr, flush=True)

    kdl, cogent = load_zoo("Kdl"), load_zoo("Cogentco")
    step("generating synthetic graphs")
    geo = {n: geometric(n, seed=1) for n in (1_000, 5_000, 10_000, 100_000)}
    for data, (pairs, sources, repeat) in [
        (cogent, (200, 50, 5) if not quick else (100, 50, 3)),
        (kdl, (200, 50, 5) if not quick else (100, 50, 3)),
        (geo[1_000], (200, 50, 5) if not quick else (100, 50, 3)),
        (geo[10_000], (100, 20, 3) if not quick else (40, 8, 2)),
        (geo[100_000], (20, 5, 2) if not quick else (4, 2, 1)),
    ]:
        step(f"dijkstra {data.name}")
        rows += bench_dijkstra(data, pairs, sources, repeat)
    for data, (targets, repeat) in [
        (kdl, (20, 5) if not quick else (10, 3)),
        (geo[10_000], (5, 3) if not quick else (2, 1)),
    ]:
        step(f"tree {data.name}")
        rows += bench_tree(data, targets, repeat)
    for data, (pairs, cap_paths, cap_s) in [
        (kdl, (20, 2000, 10.0) if not quick else (6, 500, 1.5)),
        (geo[5_000], (10, 2000, 10.0) if not quick else (3, 300, 1.5)),
    ]:
        step(f"constrained {data.name}")
        rows.append(bench_constrained(data, pairs, cap_paths, cap_s))
    step("batch")
    rows += bench_batch(geo[1_000], 10_000, 1 if quick else 5)
    step("build")
    rows += bench_build(geo[100_000])
    step("done")

    table = markdown(rows)
    machine = f"{platform.processor() or platform.machine()}, {platform.python_version()}"
    header = (
        f"pathcore benchmark ({'quick' if quick else 'full'}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"Python {platform.python_version()}, networkx {nx.__version__}, "
        f"rustworkx {rx.__version__}, {os.cpu_count()} CPUs, load average at start "
        f"{load_at_start[0]:.1f}"
    )
    print(header)
    print()
    print(table)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    mode = "quick" if quick else "full"
    (RESULTS_DIR / f"{stamp}-{mode}.md").write_text(f"{header}\n\n{table}\n", encoding="utf-8")
    (RESULTS_DIR / f"{stamp}-{mode}.json").write_text(
        json.dumps(
            {"header": header, "machine": machine, "rows": [r.__dict__ for r in rows]}, indent=2
        ),
        encoding="utf-8",
    )
    print(f"\nwritten to {RESULTS_DIR}/{stamp}-{mode}.{{md,json}}", file=sys.stderr)


if __name__ == "__main__":
    main()
