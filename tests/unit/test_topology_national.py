"""topologies/national.yaml: China's national computing backbone, checked against sites.csv."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import networkx as nx
import pytest

from controller.topology.files import sites_csv, topologies_dir, topology_file
from controller.topology.loader import load_topology
from controller.topology.model import Topology

REPO = Path(__file__).resolve().parents[2]
NATIONAL = topology_file("national")
SITES_CSV = sites_csv()
DOC = REPO / "docs" / "topology.md"


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load_topology(NATIONAL)


@pytest.fixture(scope="module")
def sites() -> list[dict[str, str]]:
    with SITES_CSV.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_national",
                                                  topologies_dir() / "gen_national.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_national"] = module
    spec.loader.exec_module(module)
    return module


def _graph(topo: Topology, weight: str = "latency_ms") -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(n.name for n in topo.nodes)
    for lk in topo.links:
        assert not g.has_edge(lk.a, lk.b), "national.yaml has no parallel links"
        g.add_edge(lk.a, lk.b, latency_ms=lk.latency_ms, cost=lk.cost)
    return g


def test_counts_match_the_programme_and_the_site_list(topo: Topology,
                                                     sites: list[dict[str, str]]) -> None:
    expected = {"national_hub": 8, "dc_cluster": 10, "direct_connection_point": 13,
                "exchange_center": 3}
    for kind, count in expected.items():
        assert len(topo.nodes_of_kind(kind)) == count
    for kind in {*expected, "city"}:
        assert {n.name for n in topo.nodes_of_kind(kind)} == \
            {s["id"] for s in sites if s["kind"] == kind}
    assert 40 <= len(topo.nodes) <= 60  # the Mininet lab runs it on 2 cores
    for s in sites:
        node = topo.node(s["id"])
        assert (node.lat, node.lon) == (float(s["lat"]), float(s["lon"]))


def test_link_rules(topo: Topology, sites: list[dict[str, str]]) -> None:
    kind = {n.name: n.kind for n in topo.nodes}

    def dcp_neighbours(name: str) -> list[str]:
        return [m for m in topo.neighbors(name) if kind[m] == "direct_connection_point"]

    for c in topo.nodes_of_kind("dc_cluster"):
        assert len(dcp_neighbours(c.name)) >= 2, c.name
    for n in topo.nodes_of_kind("city") + topo.nodes_of_kind("exchange_center"):
        assert len(dcp_neighbours(n.name)) >= 1, n.name
    for d in topo.nodes_of_kind("direct_connection_point"):
        assert len(dcp_neighbours(d.name)) >= 2, d.name
    for s in sites:
        if s["kind"] == "dc_cluster":
            assert s["id"] in topo.neighbors(f"hub-{s['hub']}")
    trunk = {frozenset((lk.a, lk.b)) for lk in topo.links
             if kind[lk.a] == kind[lk.b] == "direct_connection_point"}
    for pair in (("dcp-beijing", "dcp-shanghai"), ("dcp-beijing", "dcp-guangzhou"),
                 ("dcp-shanghai", "dcp-guangzhou")):
        assert frozenset(pair) in trunk


def test_connected_and_survives_any_single_trunk_cut(topo: Topology) -> None:
    g = _graph(topo)
    assert nx.is_connected(g)
    kind = {n.name: n.kind for n in topo.nodes}
    backbone = g.subgraph(n for n in g if kind[n] == "direct_connection_point")
    assert nx.is_connected(backbone) and not list(nx.bridges(backbone))


def test_capacity_tens_of_tbps(topo: Topology) -> None:
    kind = {n.name: n.kind for n in topo.nodes}
    trunk_tbps = sum(lk.bandwidth_mbps for lk in topo.links
                     if kind[lk.a] == kind[lk.b] == "direct_connection_point") / 1e6
    assert 35 <= trunk_tbps <= 45  # reported: 40 Tbps backbone interconnection
    assert 10 <= topo.total_bandwidth_mbps / 1e6 < 100
    assert all(lk.bandwidth_mbps >= 100_000 for lk in topo.links)


def test_latencies_follow_the_coordinates(topo: Topology) -> None:
    for lk in topo.links:
        assert lk.latency_ms > 0
        if lk.latency_computed:
            assert lk.distance_km is not None
            assert lk.latency_ms == pytest.approx(lk.distance_km * 1.5 * 0.0049, rel=1e-12)
        else:  # co-located ends get the stated metro latency
            assert lk.distance_km is not None and lk.distance_km < 15
            assert lk.latency_ms == 0.1


def test_cost_and_latency_disagree_somewhere(topo: Topology) -> None:
    g = _graph(topo)
    fast = nx.shortest_path(g, "dcp-beijing", "dcp-shanghai", weight="latency_ms")
    cheap = nx.shortest_path(g, "dcp-beijing", "dcp-shanghai", weight="cost")
    assert fast == ["dcp-beijing", "dcp-shanghai"]  # the express trunk
    assert cheap != fast


def test_compute_sites(topo: Topology) -> None:
    assert {s.unit for s in topo.compute_sites} == {"EFLOPS"}
    assert sum(s.capacity for s in topo.compute_sites) == pytest.approx(230.0)
    assert sum(s.capacity for s in topo.compute_sites if s.kind == "intelligent") == \
        pytest.approx(70.0)
    clusters = {n.name for n in topo.nodes_of_kind("dc_cluster")}
    assert {s.node for s in topo.compute_sites} == clusters
    for s in topo.compute_sites:
        assert s.host is not None and topo.host(s.host).node == s.node


def test_hosts_and_dpids(topo: Topology) -> None:
    assert len(topo.hosts) == len(topo.nodes)
    assert len({h.ip for h in topo.hosts}) == len(topo.hosts)
    assert sorted(n.dpid for n in topo.nodes) == list(range(1, len(topo.nodes) + 1))


def test_example_intents_are_feasible(topo: Topology) -> None:
    g = _graph(topo)
    assert len(topo.intents) >= 3
    for it in topo.intents:
        src, dst = topo.host(it.src).node, topo.host(it.dst).node
        assert topo.node(src).kind == "city" and topo.node(dst).kind == "dc_cluster"
        best = nx.shortest_path_length(g, src, dst, weight="latency_ms")
        assert best <= it.max_latency_ms, it.name


def test_generator_reproduces_the_committed_file(gen: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "national.yaml"
    assert gen.main([str(SITES_CSV), "-o", str(out)]) == 0
    assert out.read_bytes() == NATIONAL.read_bytes()


def test_circles_match_networkx(gen: ModuleType, topo: Topology) -> None:
    table, _engine = gen.circles(topo)
    g = _graph(topo)
    cities = {n.name for n in topo.nodes_of_kind("city")}
    assert set(table) == {n.name for n in topo.nodes_of_kind("national_hub")}
    for hub, reach in table.items():
        ref = nx.single_source_dijkstra_path_length(g, hub, cutoff=20.0, weight="latency_ms")
        expected = {c: v for c, v in ref.items() if c in cities}
        assert set(reach) == set(expected), hub
        for c, v in reach.items():
            assert math.isclose(v, expected[c], rel_tol=1e-9, abs_tol=1e-9)


def test_doc_table_is_current(gen: ModuleType, topo: Topology) -> None:
    text = DOC.read_text()
    begin, end = "<!-- circles:begin -->\n", "<!-- circles:end -->"
    assert begin in text and end in text
    committed = text.split(begin, 1)[1].split(end, 1)[0]
    assert committed == gen.circles_markdown(topo)
