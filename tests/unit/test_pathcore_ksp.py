"""k shortest simple paths and disjoint path pairs.

Oracles:
* brute force (``oracles.Model``): all simple paths of the small multigraph, sorted by weight,
  give the k smallest weights (compared as weight sequences, so ties may be broken either
  way); all pairs of physically link-disjoint (or node-disjoint) simple paths give the least
  total weight of a pair;
* networkx ``shortest_simple_paths`` (Yen) on graphs without parallel links and no bound.
"""

from __future__ import annotations

import itertools
import math

import networkx as nx
from hypothesis import given
from hypothesis import strategies as st
from oracles import (
    TOL,
    WEIGHTS,
    GraphSpec,
    build,
    check_path,
    examples,
    graph_specs,
    path_value,
)


def _close_lists(got: list[float], expected: list[float]) -> bool:
    return len(got) == len(expected) and all(
        math.isclose(a, b, abs_tol=TOL) for a, b in zip(got, expected, strict=True)
    )


@given(graph_specs(), st.data())
@examples(300)
def test_k_shortest_matches_brute_force(spec: GraphSpec, data: st.DataObject) -> None:
    built = build(spec)
    g, model = built.graph, built.model
    src = data.draw(st.sampled_from(model.nodes), label="src")
    dst = data.draw(st.sampled_from(model.nodes), label="dst")
    k = data.draw(st.integers(1, 8), label="k")
    weight = data.draw(st.sampled_from(WEIGHTS), label="weight")
    bound = None
    if data.draw(st.booleans(), label="bounded"):
        latencies = sorted({model.latency(p) for p in model.simple_paths(src, dst)}) or [0.0]
        bound = data.draw(
            st.one_of(st.sampled_from(latencies), st.integers(0, 40).map(lambda x: x / 4)),
            label="max_latency_ms",
        )
    paths = g.k_shortest_paths(src, dst, k, weight=weight, max_latency_ms=bound)
    expected = model.k_smallest(src, dst, k, weight, bound)
    got = [path_value(p, weight) for p in paths]
    assert _close_lists(got, expected), (
        f"{src}->{dst} k={k} {weight} bound={bound}: pathcore {got}, brute force {expected}"
    )
    seen = set()
    for p in paths:
        links = check_path(model, p, src, dst)
        if bound is not None:
            assert model.latency(links) <= bound + TOL
        assert links not in seen, f"path {links} returned twice"
        seen.add(links)


@given(graph_specs(max_nodes=7, max_links=14, parallel=False, down=False), st.data())
@examples(200)
def test_k_shortest_matches_networkx_yen(spec: GraphSpec, data: st.DataObject) -> None:
    built = build(spec)
    g, model = built.graph, built.model
    src, dst = data.draw(
        st.lists(st.sampled_from(model.nodes), min_size=2, max_size=2, unique=True)
    )
    k = data.draw(st.integers(1, 10), label="k")
    weight = data.draw(st.sampled_from(WEIGHTS), label="weight")
    dg = model.nx_digraph(weight)
    try:
        yen = list(itertools.islice(nx.shortest_simple_paths(dg, src, dst, weight="w"), k))
    except nx.NetworkXNoPath:
        yen = []
    expected = [nx.path_weight(dg, p, weight="w") for p in yen]
    got = [path_value(p, weight) for p in g.k_shortest_paths(src, dst, k, weight=weight)]
    assert _close_lists(got, [float(x) for x in expected]), (
        f"{src}->{dst} k={k} {weight}: pathcore {got}, networkx {expected}"
    )


def _check_pair(built, pair, src: str, dst: str, node_disjoint: bool) -> tuple:  # noqa: ANN001
    model = built.model
    first, second = pair
    a = check_path(model, first, src, dst)
    b = check_path(model, second, src, dst)
    phys_a = {model.physical(i) for i in a}
    phys_b = {model.physical(i) for i in b}
    assert not phys_a & phys_b, f"paths {a} and {b} share a physical link"
    if node_disjoint:
        inner_a = set(first.nodes[1:-1])
        inner_b = set(second.nodes[1:-1])
        assert not inner_a & inner_b, f"paths {first.nodes} and {second.nodes} share a node"
    return a, b


@given(graph_specs(max_nodes=7, max_links=12), st.data())
@examples(300)
def test_disjoint_pair_matches_brute_force(spec: GraphSpec, data: st.DataObject) -> None:
    built = build(spec)
    g, model = built.graph, built.model
    src, dst = data.draw(
        st.lists(st.sampled_from(model.nodes), min_size=2, max_size=2, unique=True)
    )
    weight = data.draw(st.sampled_from(WEIGHTS), label="weight")
    node_disjoint = data.draw(st.booleans(), label="node_disjoint")
    pair = g.disjoint_paths(src, dst, weight=weight, node_disjoint=node_disjoint)
    best = model.best_disjoint_pair(src, dst, weight, node_disjoint)
    if best is None:
        assert pair is None, f"{src}->{dst}: brute force finds no disjoint pair, got {pair}"
        return
    assert pair is not None, f"{src}->{dst} ({weight}): brute force finds pair of weight {best}"
    _check_pair(built, pair, src, dst, node_disjoint)
    total = path_value(pair[0], weight) + path_value(pair[1], weight)
    assert math.isclose(total, best, abs_tol=TOL), (
        f"{src}->{dst} ({weight}, node_disjoint={node_disjoint}): pathcore pair weight "
        f"{total}, optimum {best}"
    )


def test_disjoint_pair_beats_greedy_trap() -> None:
    """The textbook trap: taking the shortest path first leaves no disjoint second path, yet a
    disjoint pair exists (Suurballe's example)."""
    import pathcore

    g = pathcore.Graph()
    for n in "sabt":
        g.add_node(n)
    for u, v, w in [("s", "a", 1), ("a", "b", 1), ("b", "t", 1), ("s", "b", 2), ("a", "t", 2)]:
        g.add_link(u, v, latency_ms=float(w), bandwidth_mbps=1.0, cost=1.0, bidirectional=True)
    pair = g.disjoint_paths("s", "t")
    assert pair is not None
    assert sorted([list(p.nodes) for p in pair]) == [["s", "a", "t"], ["s", "b", "t"]]
    assert pair[0].latency_ms + pair[1].latency_ms == 6.0
