"""The PCE's answers against independent oracles: the least cost within the bound from brute
force over every simple path (tests/unit/oracles.py, the engine's own oracle), and the SID
list replayed on the IGP by networkx, which must give exactly the path computed, no other."""

from __future__ import annotations

import math
import random
from typing import Any

import networkx as nx
import pytest

from controller.pce.engine import LspRecord, PathRequest, PceEngine
from controller.pce.segments import DEFAULT_IGP_METRIC, Segment
from controller.topology.files import topology_file
from controller.topology.loader import load_topology, topology_from_dict
from controller.topology.model import Topology
from tests.unit.oracles import Model, read_links

DIAMOND = topology_file("diamond-sr")


def replay(topo: Topology, head: str, segments: list[Segment],
           down: frozenset[int] = frozenset()) -> list[list[int]]:
    """Every link path (file indexes) the SID list can take from ``head`` on the IGP of
    ``topo`` without the links ``down``: networkx's all shortest paths per node SID, each
    expanded over the parallel links of least metric."""
    g = nx.MultiDiGraph()
    g.add_nodes_from(n.name for n in topo.nodes)
    for i, lk in enumerate(topo.links):
        if i in down:
            continue
        metric = lk.igp_metric if lk.igp_metric is not None else DEFAULT_IGP_METRIC
        g.add_edge(lk.a, lk.b, key=i, w=metric)
        g.add_edge(lk.b, lk.a, key=i, w=metric)
    paths: list[list[int]] = [[]]
    at = head
    for seg in segments:
        if seg.kind == "adjacency":
            hops = [i for i, lk in enumerate(topo.links) if i not in down and (
                (lk.a == at and lk.a_adj_sid == seg.label) or
                (lk.b == at and lk.b_adj_sid == seg.label))]
            assert len(hops) == 1, f"adjacency SID {seg.label} at {at}: {hops}"
            paths = [p + hops for p in paths]
        else:
            expanded: list[list[int]] = []
            for nodes in nx.all_shortest_paths(g, at, seg.node, weight="w"):
                options: list[list[int]] = [[]]
                for u, v in zip(nodes, nodes[1:], strict=False):
                    best = min(d["w"] for d in g[u][v].values())
                    keys = [k for k, d in g[u][v].items() if d["w"] == best]
                    options = [o + [k] for o in options for k in keys]
                expanded += options
            paths = [p + e for p in paths for e in expanded]
        at = seg.node
    return paths


def oracle_best(engine: PceEngine, src: str, dst: str, bound: float, bw: float) -> float | None:
    model = Model(nodes=engine.te_graph.nodes(), links=read_links(engine.te_graph))
    return model.best_constrained(src, dst, bound, "cost", min_bandwidth_mbps=bw)


def random_sr_topology(rng: random.Random) -> Topology:
    n = rng.randint(4, 7)
    nodes = [{"name": f"r{i}", "router_id": f"10.0.0.{i + 1}", "node_sid_index": i + 1}
             for i in range(n)]
    links: list[dict[str, Any]] = []
    for i in range(1, n):  # a spanning tree keeps it connected
        links.append({"a": f"r{rng.randrange(i)}", "b": f"r{i}"})
    for _ in range(rng.randint(1, n + 2)):
        a, b = rng.sample(range(n), 2)
        links.append({"a": f"r{a}", "b": f"r{b}"})  # parallel links allowed
    for k, lk in enumerate(links):
        lk.update(latency_ms=rng.choice([0.5, 1.0, 1.5, 2.0, 3.0]), cost=float(rng.randint(1, 6)),
                  igp_metric=rng.randint(1, 4), bandwidth_mbps=1000.0,
                  a_address=f"10.1.{k}.1", b_address=f"10.1.{k}.2",
                  a_adj_sid=30000 + 2 * k, b_adj_sid=30001 + 2 * k)
    return topology_from_dict({"name": "random-sr", "nodes": nodes, "links": links,
                               "hosts": []})


def check_answer(engine: PceEngine, req: PathRequest) -> list[Segment]:
    topo = engine.topology
    src = engine.sr.by_router_id[req.source]
    dst = engine.sr.by_router_id[req.destination]
    answer = engine.compute(req)
    best = oracle_best(engine, src, dst, req.max_latency_ms, req.min_bandwidth_mbps)
    if best is None:
        assert not answer.found, answer
        return []
    assert answer.found, (answer.reason, best)
    assert math.isclose(answer.te_cost, best, abs_tol=1e-9)
    assert answer.latency_ms <= req.max_latency_ms + 1e-9
    assert answer.nodes[0] == src and answer.nodes[-1] == dst
    # the SIDs steer along exactly the computed path, on every tie the IGP could break
    paths = replay(topo, src, list(answer.segments), frozenset(engine.sr.down))
    assert paths == [list(answer.link_indexes)], (answer.segments, paths)
    assert len(answer.segments) <= len(answer.link_indexes)
    return list(answer.segments)


def delegated(engine: PceEngine, plsp_id: int, req: PathRequest) -> LspRecord:
    """An LSP of PCC 10.0.0.1 delegated on the path computed for ``req``."""
    answer = engine.compute(req)
    rec = engine.lsp("10.0.0.1", plsp_id)
    rec.delegated, rec.request, rec.computed, rec.segments = True, req, answer, answer.segments
    return rec


def test_diamond_answers_are_the_documented_ones() -> None:
    engine = PceEngine(load_topology(DIAMOND))
    labels = {}
    for bound in (12.0, 5.0, 3.0):
        ans = engine.compute(PathRequest("10.0.0.1", "10.0.0.4", max_latency_ms=bound))
        labels[bound] = [s.label for s in ans.segments]
    assert labels == {12.0: [16004], 5.0: [16005, 16004], 3.0: [16002, 16004]}
    none = engine.compute(PathRequest("10.0.0.1", "10.0.0.4", max_latency_ms=1.5))
    assert not none.found and "2.000 ms" in (none.reason or "")


def test_cut_moves_to_the_next_best_path_and_replay_sees_the_break() -> None:
    engine = PceEngine(load_topology(DIAMOND))
    req = PathRequest("10.0.0.1", "10.0.0.4", max_latency_ms=5.0)
    rec = delegated(engine, 7, req)
    assert engine.reoptimize() == []  # nothing changed
    engine.set_link(engine.link_index("s1", "s5"), up=False)
    # s5's node SID now reaches s5 through s2 (1 + 3 ms): 6 ms breaks the 5 ms bound
    assert engine.sr.delay_ms("s1", rec.segments) == pytest.approx(6.0)
    [(moved, answer)] = engine.reoptimize()
    assert moved is rec and [s.label for s in answer.segments] == [16002, 16004]
    check_answer(engine, req)


def test_measured_delay_on_the_path_triggers_a_move() -> None:
    engine = PceEngine(load_topology(DIAMOND))
    req = PathRequest("10.0.0.1", "10.0.0.4", max_latency_ms=12.0)
    delegated(engine, 1, req)
    engine.set_link(engine.link_index("s3", "s4"), latency_ms=9.0)  # 14 ms now
    [(_, answer)] = engine.reoptimize()
    assert answer.nodes == ("s1", "s5", "s4")


def test_igp_objective_and_a_detour_through_s2() -> None:
    engine = PceEngine(load_topology(DIAMOND))
    engine.set_link(engine.link_index("s1", "s3"), up=False)
    engine.set_link(engine.link_index("s1", "s5"), up=False)
    ans = engine.compute(PathRequest("10.0.0.1", "10.0.0.4", max_latency_ms=math.inf,
                                     objective="igp"))
    assert ans.nodes == ("s1", "s2", "s4") and ans.igp_cost == 40
    # least cost within 7 ms: s1-s2-s5-s4 (cost 19, 6 ms); the IGP reaches s5 through s2
    ans = engine.compute(PathRequest("10.0.0.1", "10.0.0.4", max_latency_ms=7.0))
    assert ans.nodes == ("s1", "s2", "s5", "s4")
    assert [s.label for s in ans.segments] == [16005, 16004]
    check_answer(engine, PathRequest("10.0.0.1", "10.0.0.4", max_latency_ms=7.0))


def test_bandwidth_held_by_delegated_lsps_counts() -> None:
    engine = PceEngine(load_topology(DIAMOND))
    req = PathRequest("10.0.0.1", "10.0.0.4", max_latency_ms=12.0, min_bandwidth_mbps=600.0)
    first = delegated(engine, 1, req).computed
    assert first is not None and first.nodes == ("s1", "s3", "s4")
    second = engine.compute(req)  # 400 Mbps left on the cheap route: the next cheapest
    assert second.nodes == ("s1", "s5", "s4")
    check_answer(engine, req)


def test_unknown_router_and_sid_depth() -> None:
    engine = PceEngine(load_topology(DIAMOND))
    ans = engine.compute(PathRequest("10.9.9.9", "10.0.0.4"))
    assert not ans.found and ans.unknown_endpoint == "source"
    ans = engine.compute(PathRequest("10.0.0.1", "10.0.0.4", max_latency_ms=3.0,
                                     max_sid_depth=1))
    assert not ans.found and "maximum SID depth 1" in (ans.reason or "")


def test_random_sr_topologies_against_the_oracles() -> None:
    rng = random.Random(19)
    checked = 0
    kinds: set[str] = set()
    for _ in range(150):
        topo = random_sr_topology(rng)
        engine = PceEngine(topo)
        for i in rng.sample(range(len(topo.links)), k=rng.randint(0, 2)):
            engine.set_link(i, up=False)
        a, b = rng.sample(topo.nodes, 2)
        bound = rng.choice([1.0, 2.5, 4.0, 6.0, math.inf])
        assert a.router_id is not None and b.router_id is not None
        segs = check_answer(engine, PathRequest(a.router_id, b.router_id, max_latency_ms=bound))
        kinds.update(s.kind for s in segs)
        checked += 1
    assert checked == 150
    assert kinds == {"node", "adjacency"}  # both kinds of SID were needed and checked


def test_national_sr_answers_against_the_oracles() -> None:
    topo = load_topology(topology_file("national-sr"))
    engine = PceEngine(topo)
    rng = random.Random(7)
    found = 0
    for _ in range(25):
        a, b = rng.sample(topo.nodes, 2)
        assert a.router_id is not None and b.router_id is not None
        req = PathRequest(a.router_id, b.router_id, max_latency_ms=rng.choice([8.0, 15.0]))
        ans = engine.compute(req)
        if ans.found:
            found += 1
            paths = replay(topo, a.name, list(ans.segments))
            assert paths == [list(ans.link_indexes)]
    assert found >= 10
