"""Unconstrained shortest paths, latency circles and the latency matrix.

Oracle: networkx Dijkstra (``single_source_dijkstra_path_length``, with ``cutoff`` for
``within_latency``) on a DiGraph that keeps the least-weight parallel link of each node pair
and only links that are up (and, for ``shortest_path``'s exclusions, not excluded and without
an excluded end). Paths returned by pathcore are checked link by link against the graph
(``oracles.check_path``).
"""

from __future__ import annotations

import math
from typing import Any

import networkx as nx
from hypothesis import given
from hypothesis import strategies as st
from oracles import TOL, WEIGHTS, GraphSpec, build, check_path, examples, graph_specs, path_value


def _assert_shortest_matches_networkx(spec: GraphSpec) -> None:
    built = build(spec)
    g, model = built.graph, built.model
    for weight in WEIGHTS:
        dg = model.nx_digraph(weight)
        for src in model.nodes:
            dist = nx.single_source_dijkstra_path_length(dg, src, weight="w")
            for dst in model.nodes:
                path = g.shortest_path(src, dst, weight=weight)
                if dst not in dist:
                    assert path is None, f"{src}->{dst}: networkx finds no path, pathcore {path}"
                    continue
                assert path is not None, f"{src}->{dst} ({weight}): networkx finds {dist[dst]}"
                check_path(model, path, src, dst)
                assert math.isclose(path_value(path, weight), dist[dst], abs_tol=TOL), (
                    f"{src}->{dst} ({weight}): pathcore {path_value(path, weight)}, "
                    f"networkx {dist[dst]}"
                )


@given(graph_specs())
@examples(300)
def test_shortest_path_matches_networkx(spec: GraphSpec) -> None:
    _assert_shortest_matches_networkx(spec)


@given(graph_specs(max_nodes=12, max_links=30, values="float"))
@examples(150)
def test_shortest_path_matches_networkx_float_values(spec: GraphSpec) -> None:
    _assert_shortest_matches_networkx(spec)


@given(graph_specs(), st.data())
@examples(300)
def test_shortest_path_exclusions_match_networkx(spec: GraphSpec, data: st.DataObject) -> None:
    """exclude_nodes / exclude_links: networkx on the graph without the excluded nodes and
    links; an excluded src or dst gives None (as constrained_path)."""
    built = build(spec)
    g, model = built.graph, built.model
    for _ in range(4):
        src = data.draw(st.sampled_from(model.nodes), label="src")
        dst = data.draw(st.sampled_from(model.nodes), label="dst")
        ex_nodes = data.draw(st.lists(st.sampled_from(model.nodes), unique=True, max_size=3))
        ex_links = (
            data.draw(st.lists(st.sampled_from(sorted(model.links)), unique=True, max_size=4))
            if model.links
            else []
        )
        weight = data.draw(st.sampled_from(WEIGHTS), label="weight")
        path = g.shortest_path(
            src, dst, weight=weight, exclude_nodes=ex_nodes, exclude_links=ex_links
        )
        if src in ex_nodes or dst in ex_nodes:
            assert path is None, f"{src}->{dst} excluding {ex_nodes}: got {path}"
            continue
        usable = model.usable(0.0, ex_nodes, ex_links)
        dist = nx.single_source_dijkstra_path_length(
            model.nx_digraph(weight, usable), src, weight="w"
        )
        if dst not in dist:
            assert path is None, f"{src}->{dst} ({ex_nodes}, {ex_links}): networkx finds none"
            continue
        assert path is not None, f"{src}->{dst} ({ex_nodes}, {ex_links}): networkx {dist[dst]}"
        check_path(model, path, src, dst, usable)
        assert math.isclose(path_value(path, weight), dist[dst], abs_tol=TOL), (
            f"{src}->{dst} ({weight}, {ex_nodes}, {ex_links}): pathcore "
            f"{path_value(path, weight)}, networkx {dist[dst]}"
        )


def test_shortest_path_exclusions_leave_the_graph_as_it_was() -> None:
    """Excluding links is per query: the next query without exclusions sees them again."""
    import pathcore

    g = pathcore.Graph()
    g.add_nodes(["a", "b", "c"])
    ab = g.add_link("a", "b", latency_ms=1.0, bandwidth_mbps=10.0)
    bc = g.add_link("b", "c", latency_ms=1.0, bandwidth_mbps=10.0)
    ac = g.add_link("a", "c", latency_ms=5.0, bandwidth_mbps=10.0)
    assert list(g.shortest_path("a", "c", exclude_links=[bc]).links) == [ac]
    assert list(g.shortest_path("a", "c", exclude_nodes=["b"]).links) == [ac]
    assert list(g.shortest_path("a", "c").links) == [ab, bc]
    # one direction excluded: the other direction is still usable
    assert list(g.shortest_path("c", "a", exclude_links=[ac]).links) == [bc + 1, ab + 1]
    assert g.shortest_path("c", "a", exclude_links=[ac + 1, bc + 1]) is None
    assert g.shortest_path("a", "a", exclude_nodes=["a"]) is None
    assert list(g.shortest_path("a", "a").nodes) == ["a"]


def test_shortest_path_default_weight_is_latency() -> None:
    import pathcore

    g = pathcore.Graph()
    for n in "abc":
        g.add_node(n)
    g.add_link("a", "c", latency_ms=10.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=False)
    g.add_link("a", "b", latency_ms=1.0, bandwidth_mbps=1.0, cost=5.0, bidirectional=False)
    g.add_link("b", "c", latency_ms=1.0, bandwidth_mbps=1.0, cost=5.0, bidirectional=False)
    assert list(g.shortest_path("a", "c").nodes) == ["a", "b", "c"]
    assert list(g.shortest_path("a", "c", weight="cost").nodes) == ["a", "c"]
    assert list(g.shortest_path("a", "c", weight="hops").nodes) == ["a", "c"]


@given(graph_specs(), st.data())
@examples(300)
def test_within_latency_matches_networkx_cutoff(spec: GraphSpec, data: st.DataObject) -> None:
    built = build(spec)
    g, model = built.graph, built.model
    dg = model.nx_digraph("latency")
    src = data.draw(st.sampled_from(model.nodes))
    full = nx.single_source_dijkstra_path_length(dg, src, weight="w")
    # Bounds equal to an exact distance (dyadic: exact), zero, and in between.
    bound = data.draw(
        st.one_of(
            st.sampled_from(sorted(set(full.values()))), st.integers(0, 40).map(lambda x: x / 8)
        )
    )
    expected = nx.single_source_dijkstra_path_length(dg, src, cutoff=bound, weight="w")
    got = g.within_latency(src, bound)
    assert set(got) == set(expected), (
        f"within_latency({src}, {bound}): extra {set(got) - set(expected)}, "
        f"missing {set(expected) - set(got)}"
    )
    for node, latency_ms in expected.items():
        assert math.isclose(got[node], latency_ms, abs_tol=TOL), (node, got[node], latency_ms)
    values = list(got.values())
    assert values == sorted(values), f"within_latency is documented nearest first: {got}"


def matrix_entries(result: Any, names: list[str]) -> dict[tuple[str, str], float]:
    """Read latency_matrix's answer -- (names, rows), a dict of dicts, or rows in ``names``
    order -- into {(a, b): latency}, with unreachable pairs as inf."""
    if isinstance(result, tuple):
        order, rows = result
        assert list(order) == list(names), f"matrix order {order} is not the requested {names}"
        result = rows
    out: dict[tuple[str, str], float] = {}
    for i, a in enumerate(names):
        row = result[a] if isinstance(result, dict) else result[i]
        for j, b in enumerate(names):
            if isinstance(row, dict):
                value = row.get(b)
            else:
                value = row[j]
            out[a, b] = math.inf if value is None else float(value)
    return out


@given(graph_specs(), st.data())
@examples(200)
def test_latency_matrix_matches_networkx(spec: GraphSpec, data: st.DataObject) -> None:
    built = build(spec)
    g, model = built.graph, built.model
    dg = model.nx_digraph("latency")
    apsp = dict(nx.all_pairs_dijkstra_path_length(dg, weight="w"))
    if data.draw(st.booleans(), label="all nodes"):
        names = list(g.nodes())
        result = g.latency_matrix()
    else:
        names = data.draw(st.lists(st.sampled_from(model.nodes), min_size=1, unique=True))
        result = g.latency_matrix(names)
    got = matrix_entries(result, names)
    for (a, b), value in got.items():
        expected = apsp[a].get(b, math.inf)
        if expected == math.inf:
            assert value == math.inf, f"{a}->{b}: unreachable in networkx, pathcore {value}"
        else:
            assert math.isclose(value, expected, abs_tol=TOL), (a, b, value, expected)


def test_reachability_is_consistent_when_latency_sums_overflow() -> None:
    """Two links of 1e308 ms: their sum overflows to inf. Whatever pathcore decides (reject
    such values up front, or call the far node reachable or unreachable), every call must
    agree on whether c can be reached from a, and on its latency."""
    import pathcore

    g = pathcore.Graph()
    g.add_nodes(["a", "b", "c"])
    try:
        g.add_link("a", "b", 1e308, 1.0)
        g.add_link("b", "c", 1e308, 1.0)
    except ValueError:
        return  # huge values refused: nothing can disagree
    answers = {
        "shortest_path": g.shortest_path("a", "c") is not None,
        "constrained_path(inf)": g.constrained_path("a", "c", max_latency_ms=math.inf) is not None,
        "k_shortest_paths": len(g.k_shortest_paths("a", "c", 1)) == 1,
        "within_latency(inf)": "c" in g.within_latency("a", math.inf),
    }
    assert len(set(answers.values())) == 1, f"calls disagree on reaching c: {answers}"
    # latency_matrix writes inf both for "unreachable" and for an overflowed total
    latency_ms = g.latency_matrix(["a", "c"])[1][0][1]
    if answers["shortest_path"]:
        assert latency_ms == g.shortest_path("a", "c").latency_ms
    else:
        assert latency_ms == math.inf
