"""Shortest-path trees: ``Graph.shortest_path_tree(target, weight)`` -> {node: first link id}.

Oracle: networkx Dijkstra from the target on the reversed ``Model.nx_digraph`` (least-weight
parallel link per node pair, up links only), i.e. every node's least distance *to* the target.
Checked for every node: it is a key iff networkx says it reaches the target; its link exists,
starts at it and is up; walking next hops reaches the target in fewer than n steps (so the next
hops form a tree) and the walked links sum (math.fsum of the model's link values) to the
networkx distance.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import (
    TOL,
    WEIGHTS,
    GraphSpec,
    Model,
    build,
    examples,
    graph_specs,
    link_value,
    read_links,
)
from test_pathcore_zoo import FILES, _file, zoo

import pathcore


def walk_to_target(model: Model, tree: dict[str, int], node: str, target: str) -> list[int]:
    """The links met following next hops from ``node``; fails on a loop, a dead end, or a link
    that does not start where the walk is or is down."""
    usable = {link.id for link in model.usable()}
    links: list[int] = []
    cur = node
    while cur != target:
        assert len(links) < len(model.nodes), f"next hops from {node} loop: links {links}"
        assert cur in tree, f"walk from {node} reaches {cur}, which has no next hop"
        link_id = tree[cur]
        assert link_id in model.links, f"{cur}: unknown link id {link_id}"
        link = model.links[link_id]
        assert link.u == cur, f"{cur}: next hop {link_id} starts at {link.u}"
        assert link_id in usable, f"{cur}: next hop {link_id} is down"
        links.append(link_id)
        cur = link.v
    return links


def check_tree(
    model: Model, tree: dict[str, int], target: str, weight: str, dist: dict[Any, float]
) -> None:
    """``dist``: networkx distances to ``target`` (nodes that reach it, target included)."""
    assert all(isinstance(v, int) for v in tree.values()), tree
    expected = {str(n) for n in dist} - {target}
    assert set(tree) == expected, (
        f"tree to {target} ({weight}): extra {set(tree) - expected}, missing {expected - set(tree)}"
    )
    for node in tree:
        links = walk_to_target(model, tree, node, target)
        total = math.fsum(link_value(model.links[i], weight) for i in links)
        assert math.isclose(total, dist[node], rel_tol=1e-9, abs_tol=TOL), (
            f"{node}->{target} ({weight}): next hops sum to {total}, networkx {dist[node]}"
        )


def _assert_tree_matches_networkx(spec: GraphSpec) -> None:
    built = build(spec)
    g, model = built.graph, built.model
    for weight in WEIGHTS:
        reverse = model.nx_digraph(weight).reverse(copy=False)
        for target in model.nodes:
            dist = nx.single_source_dijkstra_path_length(reverse, target, weight="w")
            check_tree(model, g.shortest_path_tree(target, weight=weight), target, weight, dist)


@given(graph_specs())
@examples(300)
def test_tree_matches_networkx(spec: GraphSpec) -> None:
    _assert_tree_matches_networkx(spec)


@given(graph_specs(max_nodes=12, max_links=30, values="float"))
@examples(150)
def test_tree_matches_networkx_float_values(spec: GraphSpec) -> None:
    _assert_tree_matches_networkx(spec)


@given(graph_specs(min_nodes=6, max_nodes=20, max_links=50))
@examples(100)
def test_tree_matches_networkx_denser(spec: GraphSpec) -> None:
    _assert_tree_matches_networkx(spec)


def test_zero_weight_cycles_and_ties_give_a_tree() -> None:
    """Every link weighs 0 (and each pair has a parallel twin): any next hop is least-weight,
    so only the tree property keeps the walk from looping."""
    g = pathcore.Graph()
    names = [f"n{i}" for i in range(6)]
    g.add_nodes(names)
    for i in range(6):
        for j in range(i + 1, 6):
            for _ in range(2):
                g.add_link(names[i], names[j], latency_ms=0.0, bandwidth_mbps=1.0, cost=0.0)
    model = Model(names, read_links(g))
    for weight in ("latency", "cost"):
        for target in names:
            tree = g.shortest_path_tree(target, weight)
            check_tree(model, tree, target, weight, {n: 0.0 for n in names})


def test_default_weight_and_down_links() -> None:
    g = pathcore.Graph()
    g.add_nodes(["a", "b", "c", "d", "lonely"])
    ac = g.add_link("a", "c", latency_ms=10.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=False)
    ab = g.add_link("a", "b", latency_ms=1.0, bandwidth_mbps=1.0, cost=5.0, bidirectional=False)
    bc = g.add_link("b", "c", latency_ms=1.0, bandwidth_mbps=1.0, cost=5.0, bidirectional=False)
    dc = g.add_link("d", "c", latency_ms=1.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=False)
    g.add_link("c", "lonely", latency_ms=1.0, bandwidth_mbps=1.0, bidirectional=False)
    assert g.shortest_path_tree("c") == {"a": ab, "b": bc, "d": dc}
    assert g.shortest_path_tree("c", weight="cost") == {"a": ac, "b": bc, "d": dc}
    assert g.shortest_path_tree("c", weight="hops") == {"a": ac, "b": bc, "d": dc}
    g.set_link_up(dc, False)
    g.set_link_up(ab, False)
    assert g.shortest_path_tree("c") == {"a": ac, "b": bc}
    assert g.shortest_path_tree("lonely") == {"a": ac, "b": bc, "c": dc + 1}
    assert g.shortest_path_tree("a") == {}


def test_errors_match_shortest_path() -> None:
    g = pathcore.Graph()
    g.add_nodes(["a", "b"])
    g.add_link("a", "b", latency_ms=1.0, bandwidth_mbps=1.0)
    for call in (lambda: g.shortest_path_tree("nope"), lambda: g.shortest_path("a", "nope")):
        with pytest.raises(KeyError) as err:
            call()
        assert str(err.value) == "'unknown node \"nope\"'"
    with pytest.raises(ValueError, match="weight must be"):
        g.shortest_path_tree("a", weight="bandwidth")


@pytest.mark.parametrize("path", FILES)
def test_zoo_trees_match_networkx(path: Path | None) -> None:
    z = zoo(_file(path))
    for weight in ("latency", "cost"):
        g_w = z.collapsed(weight)  # undirected: distances to a node = distances from it
        targets = z.model.nodes[:: max(1, len(z.model.nodes) // 5)]
        for target in targets:
            dist = nx.single_source_dijkstra_path_length(g_w, target, weight=weight)
            tree = z.graph.shortest_path_tree(target, weight)
            check_tree(z.model, tree, target, weight, dist)


@given(graph_specs())
@examples(150)
def test_arrays_match_networkx_and_the_tree(spec: GraphSpec) -> None:
    """``shortest_path_arrays(root, weight, reverse=)``: dist per node id equals networkx's
    distance from (to) root, inf where networkx does not reach; pred is -1 exactly for root
    and unreached nodes, else a usable link ending (reverse: starting) at the node whose other
    end's distance plus the link's value is the node's distance; with reverse=True, pred is
    the next hop of ``shortest_path_tree``."""
    built = build(spec)
    g, model = built.graph, built.model
    names = g.nodes()
    usable = {link.id for link in model.usable()}
    for weight in WEIGHTS:
        fwd = model.nx_digraph(weight)
        for reverse in (False, True):
            nxg = fwd.reverse(copy=False) if reverse else fwd
            for root in model.nodes:
                dist, pred = g.shortest_path_arrays(root, weight, reverse=reverse)
                want = nx.single_source_dijkstra_path_length(nxg, root, weight="w")
                assert len(dist) == len(pred) == len(names)
                for i, node in enumerate(names):
                    if node not in want:
                        assert dist[i] == math.inf and pred[i] == -1, (node, dist[i], pred[i])
                        continue
                    assert math.isclose(dist[i], want[node], rel_tol=1e-9, abs_tol=TOL)
                    if node == root:
                        assert pred[i] == -1
                        continue
                    link = model.links[pred[i]]
                    assert pred[i] in usable
                    near, far = (link.u, link.v) if reverse else (link.v, link.u)
                    assert near == node, (node, link)
                    via = dist[names.index(far)] + link_value(link, weight)
                    assert math.isclose(via, dist[i], rel_tol=1e-9, abs_tol=TOL)
                if reverse:
                    tree = g.shortest_path_tree(root, weight)
                    assert tree == {names[i]: p for i, p in enumerate(pred) if p >= 0}


def test_arrays_errors_and_excluded_nothing() -> None:
    g = pathcore.Graph()
    g.add_nodes(["a", "b", "c"])
    ab = g.add_link("a", "b", latency_ms=2.0, bandwidth_mbps=1.0, cost=3.0, bidirectional=False)
    assert g.shortest_path_arrays("a") == ([0.0, 2.0, math.inf], [-1, ab, -1])
    assert g.shortest_path_arrays("a", "cost", reverse=True) == (
        [0.0, math.inf, math.inf],
        [-1, -1, -1],
    )
    assert g.shortest_path_arrays("b", "hops", reverse=True) == ([1.0, 0.0, math.inf], [ab, -1, -1])
    g.set_link_up(ab, False)
    assert g.shortest_path_arrays("a") == ([0.0, math.inf, math.inf], [-1, -1, -1])
    with pytest.raises(KeyError):
        g.shortest_path_arrays("nope")
    with pytest.raises(ValueError, match="weight must be"):
        g.shortest_path_arrays("a", weight="bandwidth")


@given(graph_specs(min_nodes=3, max_nodes=12, max_links=30), st.lists(
    st.tuples(st.integers(0, 29), st.integers(0, 11)), min_size=1, max_size=12))
@examples(150)
def test_reverse_trees_follow_link_flips_as_networkx(spec: GraphSpec,
                                                     steps: list[tuple[int, int]]) -> None:
    """``ReverseTrees.update(roots)`` after each flip of a link (and a change of the roots):
    applying the reported next-hop changes to the previous next hops gives, for every root,
    next hops that are a least-latency tree by networkx (``check_tree``) and equal
    ``shortest_path_arrays``' (the same tie-break); a root with no change is not reported and
    a tree is reported only when it changed."""
    built = build(spec)
    g = built.graph
    names = g.nodes()
    trees = pathcore.ReverseTrees(g, "latency")
    held: dict[str, list[int]] = {}
    roots = names[::2]
    for k, (link_pick, root_pick) in enumerate(steps):
        if k:
            if built.forward_ids:  # a graph without links has only its roots to change
                lid = built.forward_ids[link_pick % len(built.forward_ids)]
                g.set_link_up(lid, not g.link(lid).up, both_directions=True)
            if k % 3 == 0:
                roots = sorted(set(roots[1:]) | {names[root_pick % len(names)]})
        changes = trees.update(roots)
        assert [r for r, _ in changes] == sorted({r for r, _ in changes}, key=names.index)
        reported = dict(changes)
        model = Model(nodes=names, links=read_links(g), phys={})
        reverse = model.nx_digraph("latency").reverse(copy=False)
        for root in roots:
            _, fresh = g.shortest_path_arrays(root, "latency", reverse=True)
            before = held.get(root, [-1] * len(names))
            after = list(before)
            for node_id, link_id in reported.get(root, []):
                assert after[node_id] != link_id, (root, node_id, "reported without a move")
                after[node_id] = link_id
            assert after == fresh, (k, root)
            assert (root in reported) == (root not in held or before != fresh), (k, root)
            assert trees.next_hops(root) == fresh
            dist = nx.single_source_dijkstra_path_length(reverse, root, weight="w")
            check_tree(model, {names[i]: p for i, p in enumerate(after) if p >= 0}, root,
                       "latency", dist)
        held = {r: trees.next_hops(r) for r in roots}
        assert trees.roots() == sorted(set(roots), key=names.index)


def test_reverse_trees_errors() -> None:
    g = pathcore.Graph()
    g.add_nodes(["a", "b"])
    with pytest.raises(ValueError, match="weight must be"):
        pathcore.ReverseTrees(g, "bandwidth")
    trees = pathcore.ReverseTrees(g)
    with pytest.raises(KeyError):
        trees.update(["a", "nope"])
    assert trees.roots() == []  # the bad call changed nothing
    with pytest.raises(ValueError, match="got a str"):
        trees.update("a")
    assert trees.update(["a"]) == [("a", [])]
    with pytest.raises(KeyError, match='no tree toward "b"'):
        trees.next_hops("b")
