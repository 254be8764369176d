"""Shared test data and independent oracles for the compute layer (networkx, brute force)."""

from __future__ import annotations

from typing import Any

import networkx as nx

from controller.topology.files import topology_file
from controller.topology.loader import load_topology, parse_topology
from controller.topology.model import Topology

NATIONAL = topology_file("national")
TOL = 1e-9

# a -0.5- b -2- c -10- e ; a -1- d -1- c (cost 5 each) ; f isolated.
# a->c: via b 2.5 ms cost 2 (bottleneck 100 Mbps), via d 2.0 ms cost 10.
SMALL_YAML = """
name: small
nodes:
- {name: a}
- {name: b}
- {name: c}
- {name: d}
- {name: e}
- {name: f}
links:
- {a: a, b: b, latency_ms: 0.5, cost: 1, bandwidth_mbps: 100}
- {a: b, b: c, latency_ms: 2.0, cost: 1, bandwidth_mbps: 1000}
- {a: a, b: d, latency_ms: 1.0, cost: 5, bandwidth_mbps: 1000}
- {a: d, b: c, latency_ms: 1.0, cost: 5, bandwidth_mbps: 1000}
- {a: c, b: e, latency_ms: 10.0, cost: 1, bandwidth_mbps: 1000}
compute_sites:
- {id: 'cs:b:ai-1', node: b, kind: intelligent, capacity: 2, unit: GPU, price: 3.0, host: h-b}
- {id: 'cs:c:ai-1', node: c, kind: intelligent, capacity: 10, unit: GPU, price: 1.0, host: h-c}
- {id: 'cs:d:ai-1', node: d, kind: intelligent, capacity: 4, unit: GPU, price: 2.0, host: h-d}
- {id: 'cs:e:gen-1', node: e, kind: general, capacity: 5, unit: GPU, price: 1.0, host: h-e}
- {id: 'cs:f:gen-1', node: f, kind: general, capacity: 5, unit: GPU, price: 1.0}
"""

_national: Topology | None = None


def national() -> Topology:
    global _national
    if _national is None:
        _national = load_topology(NATIONAL)
    return _national


def small() -> Topology:
    return parse_topology(SMALL_YAML, source="small")


def nx_graph(topo: Topology, down: set[tuple[str, str]] = frozenset()) -> nx.Graph:  # type: ignore[assignment]
    """Undirected networkx graph, least latency per node pair; ``down`` pairs left out."""
    g = nx.Graph()
    g.add_nodes_from(n.name for n in topo.nodes)
    for lk in topo.links:
        if (lk.a, lk.b) in down or (lk.b, lk.a) in down:
            continue
        old = g.get_edge_data(lk.a, lk.b)
        if old is None or lk.latency_ms < old["latency"]:
            g.add_edge(lk.a, lk.b, latency=lk.latency_ms, cost=lk.cost, bw=lk.bandwidth_mbps)
    return g


def nx_latencies(g: nx.Graph, src: str) -> dict[str, float]:
    return nx.single_source_dijkstra_path_length(g, src, weight="latency")


def oracle_key(policy: str, site: dict[str, Any], latency_ms: float,
               demand: float) -> tuple[float, ...]:
    """The policy written out by hand (floats only: the id tie-break is left to the caller)."""
    if policy == "nearest":
        return (latency_ms, site["price"])
    if policy == "cheapest":
        return (site["price"] * demand, latency_ms)
    if policy == "least-loaded":
        frac = (site["free_capacity"] - demand) / site["capacity"]
        return (-frac, latency_ms)
    raise AssertionError(policy)


def lex_cmp(a: tuple[float, ...], b: tuple[float, ...]) -> int:
    for x, y in zip(a, b, strict=True):
        if abs(x - y) > TOL:
            return -1 if x < y else 1
    return 0


def oracle_feasible(sites: list[dict[str, Any]], dist: dict[str, float], kind: str,
                    demand: float, bound: float) -> list[dict[str, Any]]:
    """Sites that can take the demand: kind, up, free >= demand, within the bound."""
    return [s for s in sites if s["kind"] == kind and s["state"] == "up"
            and s["free_capacity"] >= demand - TOL and s["node"] in dist
            and dist[s["node"]] <= bound + TOL]


def borderline(sites: list[dict[str, Any]], dist: dict[str, float], demand: float,
               bound: float) -> bool:
    """True when float rounding of a latency sum could decide feasibility (the test then skips
    the comparison of that one case, never a whole test). Capacity is never borderline: both
    sides count in exact micro-units."""
    return any(s["node"] in dist and abs(dist[s["node"]] - bound) <= TOL for s in sites)
