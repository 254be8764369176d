"""Exact latency-constrained paths (``constrained_path``, ``batch_constrained_paths``).

Oracle: brute force. ``oracles.Model.simple_paths`` enumerates every simple path of the small
generated multigraph (parallel links give distinct paths); the optimum is the least weight
among those whose latency is within the bound and whose links are up, not excluded and have
enough residual bandwidth. pathcore must return a feasible path of exactly that weight
(within 1e-9), and None exactly when no path is feasible. Latency bounds are drawn from the
latencies of real paths (hitting the bound exactly), from just below them and at random. An
infinite bound is also checked for k_shortest_paths (brute force) and within_latency
(networkx Dijkstra).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

import networkx as nx
from hypothesis import given
from hypothesis import strategies as st
from oracles import (
    COSTS,
    LATENCIES,
    MIN_BANDWIDTHS,
    TOL,
    WEIGHTS,
    Built,
    GraphSpec,
    build,
    check_path,
    examples,
    graph_specs,
    path_value,
    read_links,
)


@dataclass(frozen=True)
class Query:
    src: str
    dst: str
    max_latency_ms: float
    min_bandwidth_mbps: float
    exclude_nodes: tuple[str, ...]
    exclude_links: tuple[int, ...]


def draw_query(data: st.DataObject, built: Built, excludes: bool = True) -> Query:
    model = built.model
    src = data.draw(st.sampled_from(model.nodes), label="src")
    dst = data.draw(st.sampled_from(model.nodes), label="dst")
    latencies = sorted({model.latency(p) for p in model.simple_paths(src, dst)})
    bound_choices = [st.integers(0, 60).map(lambda x: x / 4)]
    if latencies:
        exact = st.sampled_from(latencies)
        bound_choices += [exact, exact, exact.map(lambda x: max(0.0, x - 0.125))]
    bound = data.draw(st.one_of(*bound_choices), label="max_latency_ms")
    min_bw = data.draw(MIN_BANDWIDTHS, label="min_bandwidth_mbps")
    ex_nodes: tuple[str, ...] = ()
    ex_links: tuple[int, ...] = ()
    if excludes and data.draw(st.booleans(), label="use excludes"):
        others = [n for n in model.nodes if n not in (src, dst)]
        ex_nodes = tuple(
            data.draw(st.lists(st.sampled_from(others), unique=True)) if others else []
        )
        if model.links:
            ex_links = tuple(
                data.draw(st.lists(st.sampled_from(sorted(model.links)), unique=True, max_size=4))
            )
    return Query(src, dst, bound, min_bw, ex_nodes, ex_links)


def solve(graph: Any, q: Query, weight: str) -> Any:
    """pathcore's constrained_path for the query ``q``."""
    return graph.constrained_path(
        q.src,
        q.dst,
        max_latency_ms=q.max_latency_ms,
        min_bandwidth_mbps=q.min_bandwidth_mbps,
        weight=weight,
        exclude_nodes=q.exclude_nodes,
        exclude_links=q.exclude_links,
    )


def check_constrained(built: Built, q: Query, weight: str, path: object) -> None:
    model = built.model
    best = model.best_constrained(
        q.src,
        q.dst,
        q.max_latency_ms,
        weight,
        q.min_bandwidth_mbps,
        q.exclude_nodes,
        q.exclude_links,
    )
    if best is None:
        assert path is None, f"{q} ({weight}): brute force finds no feasible path, got {path}"
        return
    assert path is not None, f"{q} ({weight}): brute force finds weight {best}, pathcore None"
    usable = model.usable(q.min_bandwidth_mbps, q.exclude_nodes, q.exclude_links)
    links = check_path(model, path, q.src, q.dst, usable)
    assert model.latency(links) <= q.max_latency_ms + TOL, (
        f"{q}: path latency {model.latency(links)} exceeds the bound"
    )
    got = path_value(path, weight)
    assert math.isclose(got, best, abs_tol=TOL), (
        f"{q} ({weight}): pathcore weight {got}, optimum {best} (path {list(path.links)})"
    )


@given(graph_specs(), st.data())
@examples(300)
def test_constrained_path_is_exact(spec: GraphSpec, data: st.DataObject) -> None:
    built = build(spec)
    for _ in range(4):
        q = draw_query(data, built)
        weight = data.draw(st.sampled_from(WEIGHTS), label="weight")
        path = solve(built.graph, q, weight)
        check_constrained(built, q, weight, path)


@given(graph_specs(), st.data())
@examples(150)
def test_constrained_path_default_weight_is_cost(spec: GraphSpec, data: st.DataObject) -> None:
    built = build(spec)
    q = draw_query(data, built, excludes=False)
    path = built.graph.constrained_path(
        q.src, q.dst, max_latency_ms=q.max_latency_ms, min_bandwidth_mbps=q.min_bandwidth_mbps
    )
    check_constrained(built, q, "cost", path)


@given(graph_specs(max_nodes=7, max_links=12, values="float"), st.data())
@examples(150)
def test_constrained_path_is_exact_float_values(spec: GraphSpec, data: st.DataObject) -> None:
    """Arbitrary float values: bounds sit halfway between distinct path latencies, so no
    rounding in either summation order can move a path across the bound."""
    built = build(spec)
    model = built.model
    src = data.draw(st.sampled_from(model.nodes))
    dst = data.draw(st.sampled_from(model.nodes))
    latencies = sorted({model.latency(p) for p in model.simple_paths(src, dst)})
    # gaps wide enough for pathcore's documented relative slack of 1e-9 on the bound
    gaps = [(a + b) / 2 for a, b in itertools.pairwise(latencies) if b - a > 1e-6 * max(1.0, b)]
    if latencies:
        gaps += [latencies[-1] + 1.0]
    if latencies and latencies[0] > 1e-6:
        gaps += [latencies[0] / 2]
    bound = data.draw(st.sampled_from(gaps)) if gaps else 1.0
    q = Query(src, dst, bound, 0.0, (), ())
    weight = data.draw(st.sampled_from(WEIGHTS))
    path = built.graph.constrained_path(src, dst, max_latency_ms=bound, weight=weight)
    check_constrained(built, q, weight, path)


def test_bound_equal_to_path_latency_is_feasible() -> None:
    """A path whose latency equals the bound is feasible; a little less and it is not.

    pathcore documents a relative slack of 1e-9 on the bound (float sums of the same path
    differ in their last bits with the order of summation), so "a little" is 1e-6 here."""
    import pathcore

    g = pathcore.Graph()
    for n in "sabt":
        g.add_node(n)
    # cheap but slow: s-a-t, latency 0.75 + 1.5 = 2.25; expensive but fast: s-b-t, 1.0
    g.add_link("s", "a", latency_ms=0.75, bandwidth_mbps=10.0, cost=1.0, bidirectional=True)
    g.add_link("a", "t", latency_ms=1.5, bandwidth_mbps=10.0, cost=1.0, bidirectional=True)
    g.add_link("s", "b", latency_ms=0.5, bandwidth_mbps=10.0, cost=5.0, bidirectional=True)
    g.add_link("b", "t", latency_ms=0.5, bandwidth_mbps=10.0, cost=5.0, bidirectional=True)
    assert list(g.constrained_path("s", "t", max_latency_ms=2.25).nodes) == ["s", "a", "t"]
    below = 2.25 * (1 - 1e-6)
    assert list(g.constrained_path("s", "t", max_latency_ms=below).nodes) == ["s", "b", "t"]
    assert g.constrained_path("s", "t", max_latency_ms=1.0 - 1e-6) is None
    assert list(g.constrained_path("s", "t", max_latency_ms=1.0).nodes) == ["s", "b", "t"]


def test_constrained_needs_more_than_a_label_per_node() -> None:
    """A classic trap for heuristics: the cheapest partial path to the middle node is too slow,
    so the optimum must keep a dominated-by-cost but faster label at that node."""
    import pathcore

    g = pathcore.Graph()
    for n in ("s", "x", "y", "m", "t"):
        g.add_node(n)
    g.add_link("s", "x", latency_ms=5.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=False)
    g.add_link("x", "m", latency_ms=5.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=False)
    g.add_link("s", "y", latency_ms=1.0, bandwidth_mbps=1.0, cost=3.0, bidirectional=False)
    g.add_link("y", "m", latency_ms=1.0, bandwidth_mbps=1.0, cost=3.0, bidirectional=False)
    g.add_link("m", "t", latency_ms=4.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=False)
    g.add_link("s", "t", latency_ms=1.0, bandwidth_mbps=1.0, cost=100.0, bidirectional=False)
    p = g.constrained_path("s", "t", max_latency_ms=10.0)
    assert list(p.nodes) == ["s", "y", "m", "t"] and p.cost == 7.0
    p = g.constrained_path("s", "t", max_latency_ms=14.0)
    assert list(p.nodes) == ["s", "x", "m", "t"] and p.cost == 3.0


@given(graph_specs(), st.data())
@examples(200)
def test_batch_equals_single_requests(spec: GraphSpec, data: st.DataObject) -> None:
    built = build(spec)
    g = built.graph
    queries = [draw_query(data, built, excludes=False) for _ in range(data.draw(st.integers(0, 8)))]
    weight = data.draw(st.sampled_from(WEIGHTS), label="weight")
    requests = [(q.src, q.dst, q.max_latency_ms, q.min_bandwidth_mbps) for q in queries]
    results = g.batch_constrained_paths(requests, weight=weight)
    assert len(results) == len(requests)
    for q, got in zip(queries, results, strict=True):
        single = g.constrained_path(
            q.src,
            q.dst,
            max_latency_ms=q.max_latency_ms,
            min_bandwidth_mbps=q.min_bandwidth_mbps,
            weight=weight,
        )
        check_constrained(built, q, weight, got)
        if single is None:
            assert got is None
        else:
            assert got is not None
            assert list(got.links) == list(single.links), f"{q}: batch and single differ"


@given(graph_specs(), st.data())
@examples(200)
def test_batch_routes_are_the_batch_answers_each_path_once(spec: GraphSpec,
                                                           data: st.DataObject) -> None:
    """batch_routes gives what batch_constrained_paths gives (checked against brute force),
    as (index, routes): -1 exactly where there is no path, else a route (nodes, links,
    latency, cost) equal to that path's; every distinct path once, requests on the same
    path sharing its tuples. Queries repeat (some requests drawn twice) so sharing happens."""
    built = build(spec)
    g = built.graph
    queries = [draw_query(data, built, excludes=False) for _ in range(data.draw(st.integers(0, 8)))]
    queries += [data.draw(st.sampled_from(queries)) for _ in range(
        data.draw(st.integers(0, 4)))] if queries else []
    weight = data.draw(st.sampled_from(WEIGHTS), label="weight")
    requests = [(q.src, q.dst, q.max_latency_ms, q.min_bandwidth_mbps) for q in queries]
    paths = g.batch_constrained_paths(requests, weight=weight)
    index, routes = g.batch_routes(requests, weight=weight)
    assert len(index) == len(requests)
    assert sorted(set(i for i in index if i >= 0)) == list(range(len(routes))), \
        "a route no request names"
    for q, path, n in zip(queries, paths, index, strict=True):
        check_constrained(built, q, weight, path)
        if path is None:
            assert n == -1, f"{q}: no path, yet route {n}"
            continue
        nodes, links, latency, cost = routes[n]
        assert type(nodes) is tuple and type(links) is tuple
        assert (nodes, links) == (tuple(path.nodes), tuple(path.links)), f"{q}"
        assert latency == path.latency_ms and cost == path.cost
    seen: dict[tuple[object, ...], int] = {}
    for n in index:
        if n >= 0:
            nodes, links = routes[n][0], routes[n][1]
            assert seen.setdefault((nodes[0], links), n) == n, \
                f"the path {nodes} comes twice (routes {seen[(nodes[0], links)]} and {n})"


def _lexicographic_best(built: Built, q: Query, weight: str) -> tuple[float, float, int] | None:
    """Brute force (weight, latency, hops) minimum among feasible paths: pathcore documents
    ties going to less latency, then fewer hops."""
    model = built.model
    usable = model.usable(q.min_bandwidth_mbps, q.exclude_nodes, q.exclude_links)
    keys = [
        (model.total(p, weight), model.latency(p), len(p))
        for p in model.simple_paths(q.src, q.dst, usable)
        if model.latency(p) <= q.max_latency_ms
    ]
    return min(keys, default=None)


@given(graph_specs(), st.data())
@examples(200)
def test_ties_go_to_less_latency_then_fewer_hops(spec: GraphSpec, data: st.DataObject) -> None:
    built = build(spec)
    g = built.graph
    q = draw_query(data, built)
    weight = data.draw(st.sampled_from(WEIGHTS), label="weight")
    best = _lexicographic_best(built, q, weight)
    path = solve(g, q, weight)
    got = None if path is None else (path_value(path, weight), path.latency_ms, path.hops)
    assert got == best, f"{q} ({weight}): pathcore {got}, lexicographic optimum {best}"
    unbounded = Query(q.src, q.dst, math.inf, 0.0, (), ())
    best = _lexicographic_best(built, unbounded, weight)
    path = g.shortest_path(q.src, q.dst, weight=weight)
    got = None if path is None else (path_value(path, weight), path.latency_ms, path.hops)
    assert got == best, f"shortest {q.src}->{q.dst} ({weight}): pathcore {got}, optimum {best}"


@given(graph_specs(), st.data())
@examples(100)
def test_answers_follow_incremental_updates(spec: GraphSpec, data: st.DataObject) -> None:
    """Query, change links (up/down, residual, latency, cost), query again: the answers must
    match the brute force on the updated graph (no stale state between queries)."""
    built = build(spec)
    g = built.graph
    for _round in range(3):
        for _ in range(3):
            q = draw_query(data, built)
            weight = data.draw(st.sampled_from(WEIGHTS), label="weight")
            path = solve(g, q, weight)
            check_constrained(built, q, weight, path)
        if not built.model.links:
            return
        for _ in range(data.draw(st.integers(1, 4), label="updates")):
            lid = data.draw(st.sampled_from(sorted(built.model.links)), label="link")
            both = data.draw(st.booleans(), label="both_directions")
            op = data.draw(st.sampled_from(["up", "residual", "latency", "cost"]), label="op")
            if op == "up":
                g.set_link_up(lid, data.draw(st.booleans()), both_directions=both)
            elif op == "residual":
                g.set_residual_bandwidth(lid, data.draw(MIN_BANDWIDTHS), both_directions=both)
            elif op == "latency":
                g.set_link_latency(lid, data.draw(LATENCIES), both_directions=both)
            else:
                g.set_link_cost(lid, data.draw(COSTS), both_directions=both)
        built.model.links = read_links(g)


@given(graph_specs(), st.data())
@examples(150)
def test_infinite_latency_bound_means_unbounded(spec: GraphSpec, data: st.DataObject) -> None:
    """math.inf is accepted wherever a latency bound is (constrained_path, k_shortest_paths,
    within_latency, batch_constrained_paths) and means no bound: the brute-force optimum
    without a latency condition, every reachable node (networkx), the unbounded k paths."""
    built = build(spec)
    g, model = built.graph, built.model
    q = draw_query(data, built)
    q = Query(q.src, q.dst, math.inf, q.min_bandwidth_mbps, q.exclude_nodes, q.exclude_links)
    weight = data.draw(st.sampled_from(WEIGHTS), label="weight")
    path = solve(g, q, weight)
    check_constrained(built, q, weight, path)
    (batched,) = g.batch_constrained_paths(
        [(q.src, q.dst, math.inf, q.min_bandwidth_mbps)], weight=weight
    )
    plain = Query(q.src, q.dst, math.inf, q.min_bandwidth_mbps, (), ())
    check_constrained(built, plain, weight, batched)
    k = data.draw(st.integers(1, 5), label="k")
    bounded = g.k_shortest_paths(q.src, q.dst, k, weight=weight, max_latency_ms=math.inf)
    expected = model.k_smallest(q.src, q.dst, k, weight)
    got = [path_value(p, weight) for p in bounded]
    assert len(got) == len(expected) and all(
        math.isclose(a, b, abs_tol=TOL) for a, b in zip(got, expected, strict=True)
    ), f"k_shortest_paths({q.src}, {q.dst}, {k}, inf): {got}, brute force {expected}"
    reach = nx.single_source_dijkstra_path_length(model.nx_digraph("latency"), q.src, weight="w")
    circle = g.within_latency(q.src, math.inf)
    assert set(circle) == set(reach)
    for node, latency_ms in reach.items():
        assert math.isclose(circle[node], latency_ms, abs_tol=TOL), (node, circle[node])


def test_excluded_endpoint_gives_none() -> None:
    import pathcore

    g = pathcore.Graph()
    g.add_nodes(["a", "b"])
    g.add_link("a", "b", 1.0, 10.0)
    assert g.constrained_path("a", "b", max_latency_ms=5.0) is not None
    assert g.constrained_path("a", "b", max_latency_ms=5.0, exclude_nodes=["a"]) is None
    assert g.constrained_path("a", "b", max_latency_ms=5.0, exclude_nodes=["b"]) is None


def test_batch_three_tuple_means_no_bandwidth_floor() -> None:
    import pathcore

    g = pathcore.Graph()
    g.add_nodes(["a", "b"])
    lid = g.add_link("a", "b", 1.0, 10.0)
    g.set_residual_bandwidth(lid, 0.0)
    (p,) = g.batch_constrained_paths([("a", "b", 5.0)])
    assert p is not None and list(p.links) == [lid]
    assert g.batch_constrained_paths([("a", "b", 5.0, 1.0)]) == [None]


@given(st.data())
@examples(60)
def test_constrained_on_knapsack_ladders(data: st.DataObject) -> None:
    """A chain of up to 25 stages, each with 2-3 parallel links of random integer latency and
    cost: up to 3^25 paths, a knapsack in disguise. Oracle: dynamic programming over the
    (integer) total latency -- exact, and independent of path enumeration."""
    import pathcore

    stages = data.draw(st.integers(3, 25), label="stages")
    options = [
        data.draw(
            st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=2, max_size=3)
        )
        for _ in range(stages)
    ]
    g = pathcore.Graph()
    g.add_nodes([f"s{i}" for i in range(stages + 1)])
    for i, opts in enumerate(options):
        for lat, cost in opts:
            g.add_link(f"s{i}", f"s{i + 1}", float(lat), 100.0, float(cost), False)
    # best[l] = least cost of a prefix with total latency exactly l
    best: dict[int, int] = {0: 0}
    for opts in options:
        nxt: dict[int, int] = {}
        for lat0, cost0 in best.items():
            for lat, cost in opts:
                key = lat0 + lat
                nxt[key] = min(nxt.get(key, cost0 + cost), cost0 + cost)
        best = nxt
    lo, hi = min(best), max(best)
    bound = data.draw(st.integers(max(0, lo - 2), hi), label="max_latency_ms")
    feasible = [cost for lat, cost in best.items() if lat <= bound]
    path = g.constrained_path("s0", f"s{stages}", max_latency_ms=float(bound))
    if not feasible:
        assert path is None
        return
    assert path is not None, f"bound {bound}: optimum cost {min(feasible)}"
    assert path.latency_ms <= bound and path.hops == stages
    assert path.cost == min(feasible), f"bound {bound}: pathcore {path.cost}, DP {min(feasible)}"


@st.composite
def tie_heavy_specs(draw: st.DrawFn) -> GraphSpec:
    """Small multigraphs whose links all take cost = latency from {0, 0.5, 1} (or cost 1 and
    latency from {0.5, 1}): many paths equal in cost and latency with different hop counts,
    and paths with fewer hops that are worse in cost or latency."""
    spec = draw(graph_specs(min_nodes=3, max_nodes=8, max_links=16))
    correlated = draw(st.booleans())
    links = []
    for link in spec.links:
        if correlated:
            v = draw(st.sampled_from([0.0, 0.5, 1.0]))
            links.append(replace(link, latency_ms=v, cost=v))
        else:
            links.append(replace(link, latency_ms=draw(st.sampled_from([0.5, 1.0])), cost=1.0))
    return GraphSpec(spec.n_nodes, tuple(links))


@given(tie_heavy_specs(), st.data())
@examples(150)
def test_ties_in_cost_and_latency_go_to_fewer_hops(spec: GraphSpec, data: st.DataObject) -> None:
    """Among feasible paths of least cost and then least latency, the fewest hops; hops never
    let a label with more cost or latency survive in place of a better one (the brute-force
    lexicographic optimum must be found exactly)."""
    built = build(spec)
    q = draw_query(data, built)
    for weight in ("cost", "latency", "hops"):
        best = _lexicographic_best(built, q, weight)
        path = solve(built.graph, q, weight)
        got = None if path is None else (path_value(path, weight), path.latency_ms, path.hops)
        assert got == best, f"{q} ({weight}): pathcore {got}, lexicographic optimum {best}"
        if path is not None:
            check_path(built.model, path, q.src, q.dst)


def test_fewer_hops_do_not_outweigh_cost_or_latency() -> None:
    """s->t three ways: three links of cost 1 and 1 ms (cost 3, 3 ms), one link of cost 3 and
    3 ms (the same cost and latency, fewer hops: the answer), and two links of cost 2, 4 ms
    (cheaper, too slow for 3 ms). Through a middle node m the one-hop label s->m is worse in
    cost than the two-hop one and must not displace it."""
    import pathcore

    g = pathcore.Graph()
    g.add_nodes(["s", "a", "b", "m", "c", "t"])
    for u, v in (("s", "a"), ("a", "b"), ("b", "t")):
        g.add_link(u, v, latency_ms=1.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=False)
    g.add_link("s", "t", latency_ms=3.0, bandwidth_mbps=1.0, cost=3.0, bidirectional=False)
    g.add_link("s", "c", latency_ms=2.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=False)
    g.add_link("c", "t", latency_ms=2.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=False)
    p = g.constrained_path("s", "t", max_latency_ms=3.0)
    assert (list(p.nodes), p.cost, p.latency_ms) == (["s", "t"], 3.0, 3.0)
    p = g.constrained_path("s", "t", max_latency_ms=4.0)
    assert (list(p.nodes), p.cost, p.latency_ms) == (["s", "c", "t"], 2.0, 4.0)
    # middle node: s->m direct (cost 2, 1 ms) vs s->a->m (cost 1 + 0.5, 1 ms: cheaper,
    # more hops); m->t slow and cheap or fast and dear.
    h = pathcore.Graph()
    h.add_nodes(["s", "a", "m", "t"])
    h.add_link("s", "m", latency_ms=1.0, bandwidth_mbps=1.0, cost=2.0, bidirectional=False)
    h.add_link("s", "a", latency_ms=0.5, bandwidth_mbps=1.0, cost=1.0, bidirectional=False)
    h.add_link("a", "m", latency_ms=0.5, bandwidth_mbps=1.0, cost=0.5, bidirectional=False)
    h.add_link("m", "t", latency_ms=5.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=False)
    h.add_link("m", "t", latency_ms=1.0, bandwidth_mbps=1.0, cost=4.0, bidirectional=False)
    p = h.constrained_path("s", "t", max_latency_ms=2.0)
    assert (list(p.nodes), p.cost, p.hops) == (["s", "a", "m", "t"], 5.5, 3)


@given(st.data())
@examples(60)
def test_constrained_on_road_grids(data: st.DataObject) -> None:
    """Perturbed road grids (up to 8 x 8, streets missing at random) with correlated values:
    cost = street length (integer 1..4), latency = length x a road class factor (1..3), the
    bound between the fastest and the cheapest path. Oracle: dynamic programming over
    (node, total latency) with (cost, hops) minimised lexicographically -- exact because every
    link costs at least 1, so a walk with a cycle is never the optimum."""
    import pathcore

    rows = data.draw(st.integers(2, 8), label="rows")
    cols = data.draw(st.integers(2, 8), label="cols")
    g = pathcore.Graph()
    names = [f"x{r}_{c}" for r in range(rows) for c in range(cols)]
    g.add_nodes(names)
    arcs: list[tuple[int, int, int, int]] = []  # (u, v, latency, cost), both directions
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            for j, ok in ((i + 1, c + 1 < cols), (i + cols, r + 1 < rows)):
                if not ok or data.draw(st.integers(0, 9)) == 0:
                    continue
                length = data.draw(st.integers(1, 4))
                latency = length * data.draw(st.sampled_from([1, 2, 3]))
                g.add_link(names[i], names[j], float(latency), 1.0, float(length), True)
                arcs += [(i, j, latency, length), (j, i, latency, length)]
    src, dst = 0, rows * cols - 1
    fastest = g.shortest_path(names[src], names[dst], weight="latency")
    if fastest is None:
        return
    cheapest = g.shortest_path(names[src], names[dst], weight="cost")
    assert cheapest is not None
    lo, hi = int(fastest.latency_ms), int(cheapest.latency_ms)
    bound = data.draw(st.integers(lo, max(lo, hi)), label="bound")
    # best[L][v] = least (cost, hops) of a walk src -> v of latency exactly L
    inf = (math.inf, math.inf)
    best = [[inf] * (rows * cols) for _ in range(bound + 1)]
    best[0][src] = (0, 0)
    for lat in range(bound + 1):
        for u, v, a_lat, a_cost in arcs:
            cu, hu = best[lat][u]
            if cu != math.inf and lat + a_lat <= bound:
                cand = (cu + a_cost, hu + 1)
                best[lat + a_lat][v] = min(best[lat + a_lat][v], cand)
    want = min(
        ((c, float(lat), h) for lat in range(bound + 1) for c, h in [best[lat][dst]]),
        default=None,
    )
    path = g.constrained_path(names[src], names[dst], max_latency_ms=float(bound))
    assert path is not None and want is not None and want[0] != math.inf
    assert (path.cost, path.latency_ms, path.hops) == want, (bound, want, path)
