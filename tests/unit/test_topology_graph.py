"""Topology.to_graph(): the pathcore graph agrees with networkx on the same data."""

from __future__ import annotations

import math
import random

import networkx as nx
import pytest

from controller.topology.files import topology_file, zoo_file
from controller.topology.loader import load_topology
from controller.topology.model import Topology
from controller.topology.zoo import import_gml


def _reference(topo: Topology, weight: str) -> nx.Graph:
    """networkx graph keeping the least-weight link of each pair (parallels cannot beat it)."""
    g = nx.Graph()
    g.add_nodes_from(n.name for n in topo.nodes)
    for lk in topo.links:
        w = lk.latency_ms if weight == "latency" else lk.cost
        if not g.has_edge(lk.a, lk.b) or g[lk.a][lk.b]["w"] > w:
            g.add_edge(lk.a, lk.b, w=w)
    return g


def _load(name: str) -> Topology:
    if name[0].isupper():
        return import_gml(zoo_file(name))
    return load_topology(topology_file(name))


@pytest.mark.parametrize("name", ["national", "diamond", "ring", "Cogentco", "Colt", "Internet2"])
def test_to_graph_matches_networkx(name: str) -> None:
    topo = _load(name)
    graph, link_ids = topo.to_graph()
    assert graph.node_count == len(topo.nodes)
    assert graph.link_count == 2 * len(topo.links)  # each link in both directions
    assert sorted(link_ids) == list(range(len(topo.links)))
    for i, lk in enumerate(topo.links):
        data = graph.link(link_ids[i])
        assert (data.u, data.v) == (lk.a, lk.b)
        assert data.latency_ms == lk.latency_ms and data.cost == lk.cost
        assert data.bandwidth_mbps == lk.bandwidth_mbps
        back = graph.link(graph.reverse_link(link_ids[i]))
        assert (back.u, back.v) == (lk.b, lk.a)

    rng = random.Random(f"to_graph/{name}")
    sources = rng.sample([n.name for n in topo.nodes], min(5, len(topo.nodes)))
    for weight in ("latency", "cost"):
        ref = _reference(topo, weight)
        for src in sources:
            expected = nx.single_source_dijkstra_path_length(ref, src, weight="w")
            if weight == "latency":
                got = graph.within_latency(src, math.inf)
                assert set(got) == set(expected)
                for node, value in got.items():
                    assert value == pytest.approx(expected[node], rel=1e-9, abs=1e-9)
            for dst in rng.sample(sorted(expected), min(5, len(expected))):
                path = graph.shortest_path(src, dst, weight=weight)
                assert path is not None
                total = path.latency_ms if weight == "latency" else path.cost
                assert total == pytest.approx(expected[dst], rel=1e-9, abs=1e-9)


def test_diamond_intents_through_pathcore() -> None:
    topo = load_topology(topology_file("diamond"))
    graph, _ = topo.to_graph()
    chosen = []
    for intent in topo.intents:
        src, dst = topo.host(intent.src).node, topo.host(intent.dst).node
        path = graph.constrained_path(src, dst, max_latency_ms=intent.max_latency_ms,
                                      weight="cost")
        assert path is not None and path.latency_ms <= intent.max_latency_ms
        chosen.append(path.nodes)
    assert chosen == [["s1", "s2", "s4"], ["s4", "s3", "s1"]]
