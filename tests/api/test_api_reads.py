"""Read endpoints against the real server: answers checked against the topology file and an
independent networkx oracle."""

from __future__ import annotations

import networkx as nx
import pytest

from controller.topology.loader import load_topology

from .conftest import TOPOLOGIES, Api, assert_error


def _nx_graph(name: str) -> nx.Graph:
    topo = load_topology(TOPOLOGIES / f"{name}.yaml")
    g = nx.Graph()
    for lk in topo.links:
        if g.has_edge(lk.a, lk.b):
            g[lk.a][lk.b]["latency_ms"] = min(g[lk.a][lk.b]["latency_ms"], lk.latency_ms)
        else:
            g.add_edge(lk.a, lk.b, latency_ms=lk.latency_ms)
    return g


def test_health_topology_switches_hosts_links_match_the_file(diamond: Api) -> None:
    topo = diamond.service.topology
    with diamond.client(token=None) as c:
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["store_ok"] is True
        assert h["switches_total"] == len(topo.nodes) and h["switches_connected"] == 0
        assert h["intents"] == len(topo.intents)
        t = c.get("/topology").json()
        assert [n["name"] for n in t["nodes"]] == [n.name for n in topo.nodes]
        assert [(lk["a"], lk["b"], lk["latency_ms"]) for lk in t["links"]] == \
            [(lk.a, lk.b, lk.latency_ms) for lk in topo.links]
        assert all(lk["up"] for lk in t["links"])  # startup grace: absent switches count
        sws = c.get("/switches").json()
        assert sorted(s["dpid"] for s in sws) == sorted(n.dpid for n in topo.nodes)
        assert not any(s["connected"] for s in sws)
        hosts = c.get("/hosts").json()
        assert {h["name"]: h["node"] for h in hosts} == {h.name: h.node for h in topo.hosts}
        links = c.get("/links").json()
        assert len(links["links"]) == len(topo.links)
        assert isinstance(links["report"], dict)


def test_switch_ports_follow_the_wiring_and_flows_come_from_the_plan(diamond: Api) -> None:
    with diamond.client(token=None) as c:
        for ref in ("1", "0x1", "00:00:00:00:00:00:00:01", "s1"):
            r = c.get(f"/switches/{ref}/ports")
            assert r.status_code == 200, ref
            ports = {p["port_no"]: p["expected"] for p in r.json()["ports"]}
            assert ports[1] == {"kind": "link", "link": 0, "peer_switch": "s2",
                                "peer_port_no": 1}
            assert ports[3] == {"kind": "host", "host": "h1"}
        body = c.get("/switches/s1/flows").json()
        assert body["source"] == "controller" and body["plan"] == "wanted"
        owners = {f["owner"] for f in body["flows"]}
        # s1 is the ingress of intent 1 (h1 -> h2 over s1-s2-s4) and the egress of intent 2's
        # tunnel (h2 -> h1 over s4-s3-s1)
        label = c.get("/intents/2").json()["mpls_labels"][-1]  # the segment that pops
        assert "intent:1" in owners and f"tunnel:{label}" in owners and "intent:2" not in owners
        assert any(o.startswith("pipeline:") for o in owners)
        # any text may name a switch: what names none (bad form, dpid out of range) is 404
        assert_error(c.get("/switches/zz-not-a-switch!/flows"), 404, "not_found")
        assert_error(c.get("/switches/0x12345678901234567/flows"), 404, "not_found")
        assert_error(c.get("/switches/0/ports"), 404, "not_found")
        assert_error(c.get("/switches/99/flows"), 404, "not_found")
        assert_error(c.get("/switches/0x63/ports"), 404, "not_found")


def test_paths_least_latency_matches_networkx(national: Api) -> None:
    g = _nx_graph("national")
    hubs = [n.name for n in national.service.topology.nodes_of_kind("national_hub")]
    with national.client(token=None) as c:
        for a in hubs[:4]:
            for b in hubs[4:]:
                body = c.get("/paths", params={"src": a, "dst": b, "k": 3}).json()
                want = nx.shortest_path_length(g, a, b, weight="latency_ms")
                best = body["paths"][0]
                assert best["chosen"] and best["latency_ms"] == pytest.approx(want)
                lats = [p["latency_ms"] for p in body["paths"]]
                assert lats == sorted(lats) and len(body["paths"]) == 3
                assert len({tuple(p["nodes"]) for p in body["paths"]}) == 3
                for p in body["paths"]:
                    length = sum(g[u][v]["latency_ms"] for u, v in zip(p["nodes"],
                                                                       p["nodes"][1:],
                                                                       strict=False))
                    assert length == pytest.approx(p["latency_ms"])


def test_paths_with_bounds_take_the_cheapest_feasible_path(diamond: Api) -> None:
    with diamond.client(token=None) as c:
        fast = c.get("/paths", params={"src": "h1", "dst": "h2", "max_latency_ms": 3}).json()
        assert fast["paths"][0]["nodes"] == ["s1", "s2", "s4"]
        cheap = c.get("/paths", params={"src": "h1", "dst": "h2", "max_latency_ms": 15,
                                        "k": 2}).json()
        assert [p["nodes"] for p in cheap["paths"]] == [["s1", "s3", "s4"], ["s1", "s2", "s4"]]
        assert cheap["paths"][0]["cost"] == 2.0
        pair = c.get("/paths", params={"src": "s1", "dst": "s4", "disjoint": "true"}).json()
        assert {tuple(p["nodes"]) for p in pair["paths"]} == {("s1", "s2", "s4"),
                                                              ("s1", "s3", "s4")}


def test_paths_errors(diamond: Api) -> None:
    with diamond.client(token=None) as c:
        body = assert_error(c.get("/paths", params={"src": "h1", "dst": "h2",
                                                    "max_latency_ms": 1}), 409, "infeasible")
        assert "max_latency_ms 1" in body["detail"] and "2.00 ms" in body["detail"]
        assert body["best_latency_ms"] == 2.0
        body = assert_error(c.get("/paths", params={"src": "h1", "dst": "h2",
                                                    "min_bandwidth_mbps": 5000}), 409)
        assert "min_bandwidth_mbps 5000" in body["detail"] and body["best_latency_ms"] == 2.0
        body = assert_error(c.get("/paths", params={"src": "s1", "dst": "s4", "disjoint": "1",
                                                    "max_latency_ms": 5}), 409, "infeasible")
        assert "second" in body["detail"] and "10.00 ms exceeds" in body["detail"]
        assert_error(c.get("/paths", params={"src": "h1", "dst": "nope"}), 404, "not_found")
        assert_error(c.get("/paths", params={"src": "h1", "dst": "h1"}), 409, "conflict")
        for bad in ({"src": "h1"}, {"src": "h1", "dst": "h2", "k": 0},
                    {"src": "h1", "dst": "h2", "k": "many"},
                    {"src": "h1", "dst": "h2", "max_latency_ms": -1},
                    {"src": "h1", "dst": "h2", "max_latency_ms": "nan"},
                    {"src": "h1", "dst": "h2", "min_bandwidth_mbps": -5},
                    {"src": "h1", "dst": "h2", "disjoint": "perhaps"}):
            body = assert_error(c.get("/paths", params=bad), 422, "invalid_request")
            assert body["errors"] and all("loc" in e for e in body["errors"])


def test_latency_circles_default_tiers_around_hubs(national: Api) -> None:
    g = _nx_graph("national")
    hubs = [n.name for n in national.service.topology.nodes_of_kind("national_hub")]
    with national.client(token=None) as c:
        body = c.get("/latency-circles").json()
        assert body["tiers_ms"] == [1.0, 5.0, 20.0]
        assert [circle["center"] for circle in body["circles"]] == hubs
        for circle in body["circles"]:
            dist = nx.single_source_dijkstra_path_length(g, circle["center"],
                                                         weight="latency_ms")
            for tier in circle["tiers"]:
                want = {n for n, d in dist.items() if d <= tier["max_latency_ms"] + 1e-9}
                assert {n["name"] for n in tier["nodes"]} == want
        one = c.get("/latency-circles", params={"center": hubs[0],
                                                "max_latency_ms": 7.5}).json()
        assert one["tiers_ms"] == [7.5] and len(one["circles"]) == 1
        assert_error(c.get("/latency-circles", params={"center": "atlantis"}), 404)
        assert_error(c.get("/latency-circles", params={"max_latency_ms": 0}), 422)


def test_routes_events_and_unknown_routes(diamond: Api) -> None:
    with diamond.client(token=None) as c:
        routes = c.get("/routes").json()["switches"]
        # no switch connected: nothing is installed, and the API says so
        assert len(routes) == 4 and all(not s["synced"] and s["flows"] == [] for s in routes)
        r = c.post("/intents", json={"src": "h1", "dst": "h2", "max_latency_ms": 50},
                   headers={"Authorization": f"Bearer {diamond.token}"})
        assert r.status_code == 201
        evs = c.get("/events", params={"limit": 5}).json()
        added = [e for e in evs if e["kind"] == "intent_added"]
        assert added and added[-1]["intent"] == r.json()["id"] and "T" in added[-1]["timestamp"]
        assert_error(c.get("/events", params={"limit": 0}), 422)
        assert_error(c.get("/no-such-thing"), 404, "not_found")
        assert_error(c.put("/intents"), 405, "method_not_allowed")


def test_metrics_expose_intents_flows_and_query_times(diamond: Api) -> None:
    with diamond.client(token=None) as c:
        c.get("/paths", params={"src": "h1", "dst": "h2"})
        for path in (f"{diamond.url}/metrics", f"{diamond.url}/api/v1/metrics"):
            text = c.get(path).text
            assert 'cpn_intents{state="pending"} 2.0' in text
            assert 'cpn_flows{dpid="0x1",switch="s1"} 0.0' in text
            assert 'cpn_link_utilisation_ratio{ends="s1-s2",link="0"} 0.0' in text
            assert 'cpn_path_computation_ms_count{source="query"} 1.0' in text
            assert "cpn_restoration_ms_count 0.0" in text
            assert 'cpn_hosts_refused_total{reason="port_full"} 0.0' in text
            assert "# TYPE cpn_openflow_messages_total counter" in text
