"""Policy ``cats`` over the real API on loopback (national topology): metrics pushed with
``PUT /compute-sites/{id}/metrics``, a placement and a service's client chosen on network plus
compute delay (compared with networkx distances and the pushed numbers), every candidate
explained in the answers, a stale site refused with its reason, and ``cpnctl``."""

from __future__ import annotations

import json

import networkx as nx
import pytest

from .conftest import Api, assert_error
from .test_cpnctl import cpnctl

CITY, CLIENT = "city-lanzhou", "h-city-lanzhou"
BOUND_MS = 20.0


def latencies(api: Api) -> dict[str, float]:
    g = nx.Graph()
    for lk in api.service.topology.links:
        old = g.get_edge_data(lk.a, lk.b)
        if old is None or lk.latency_ms < old["latency"]:
            g.add_edge(lk.a, lk.b, latency=lk.latency_ms)
    return nx.single_source_dijkstra_path_length(g, CITY, weight="latency")


def push_all(api: Api) -> dict[str, tuple[str, float]]:
    """Push metrics to every intelligent site: the nearer a site, the more loaded it says it
    is, so cats and nearest disagree. Returns site -> (node, compute ms)."""
    c = api.client()
    dist = latencies(api)
    sites = [s for s in c.get("/compute-sites", params={"kind": "intelligent"}).json()]
    sites.sort(key=lambda s: (dist.get(s["node"], 1e9), s["id"]))
    out = {}
    for rank, s in enumerate(sites):
        delay = max(0.0, 12.0 - 3.0 * rank)
        r = c.put(f"/compute-sites/{s['id']}/metrics",
                  json={"utilisation": 0.5, "compute_delay_ms": delay, "healthy": True})
        assert r.status_code == 200, r.text
        out[s["id"]] = (s["node"], delay)
    return out


def expected(api: Api, pushed: dict[str, tuple[str, float]]) -> tuple[str, float]:
    dist = latencies(api)
    price = {s["id"]: s["price"] for s in api.client().get("/compute-sites").json()}
    e2e = sorted((dist[node] + delay, 0.5, price[sid], sid) for sid, (node, delay)
                 in pushed.items() if dist[node] + delay <= BOUND_MS)
    return e2e[0][3], e2e[0][0]


def test_placement_and_assignment_by_cats_with_every_candidate_explained(national: Api
                                                                          ) -> None:
    c = national.client()
    pushed = push_all(national)
    want, want_ms = expected(national, pushed)
    nearest = c.post("/placements", json={"source": CLIENT, "demand": 0.1,
                                          "kind": "intelligent", "max_latency_ms": BOUND_MS})
    assert nearest.status_code == 201, nearest.text
    r = c.post("/placements", json={"source": CLIENT, "demand": 0.1, "kind": "intelligent",
                                    "max_latency_ms": BOUND_MS, "policy": "cats"})
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["site_id"] == want != nearest.json()["site_id"]
    rows = {x["site"]: x for x in p["candidates"]}
    assert set(rows) == set(pushed)
    assert p["candidates"][0]["site"] == want and rows[want]["status"] == "chosen"
    assert rows[want]["score"] == pytest.approx(want_ms)
    assert p["latency_ms"] + pushed[want][1] <= BOUND_MS
    dist = latencies(national)
    for sid, (node, delay) in pushed.items():
        row = rows[sid]
        if row["status"] in ("worse", "chosen"):
            assert row["network_ms"] == pytest.approx(dist[node])
            assert row["compute_ms"] == delay
            assert row["score"] == pytest.approx(dist[node] + delay)
        else:
            assert row["status"] == "over_bound", row
            assert dist[node] + delay > BOUND_MS - 1e-9

    svc = {"name": "infer", "anycast_ip": "10.255.0.1", "kind": "intelligent",
           "demand_per_client": 0.01, "max_latency_ms": BOUND_MS, "policy": "cats"}
    assert c.post("/services", json=svc).status_code == 201
    r = c.post("/services/infer/assignments", json={"client": CLIENT})
    assert r.status_code == 200, r.text
    assert r.json()["site_id"] == want and r.json()["candidates"][0]["status"] == "chosen"
    [a] = c.get("/services/infer/assignments").json()
    assert a["site_id"] == want
    assert {x["site"]: x["status"] for x in a["candidates"]}[want] == "chosen"

    r2 = cpnctl(national.url, "--json", "place", CLIENT, "--demand", "0.1", "--kind",
                "intelligent", "--max-latency-ms", str(BOUND_MS), "--policy", "cats",
                token=national.token)
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout)["site_id"] == want


def test_a_stale_site_is_no_cats_candidate_and_the_refusal_says_so(national: Api) -> None:
    c = national.client()
    site = c.get("/compute-sites", params={"kind": "intelligent"}).json()[0]["id"]
    r = c.post("/placements", json={"source": CLIENT, "demand": 0.1, "kind": "intelligent",
                                    "max_latency_ms": BOUND_MS, "policy": "cats"})
    assert r.status_code == 409, r.text                # no site has ever reported
    body = r.json()
    assert body["error"] == "no_capacity"
    assert {x["status"] for x in body["candidates"]} <= {"stale", "beyond_bound"}
    assert "stale metrics" in body["detail"] or "stale metrics" in str(body["reasons"])
    assert c.put(f"/compute-sites/{site}/metrics", json={
        "utilisation": 0.1, "compute_delay_ms": -1, "healthy": True}).status_code == 400
    assert assert_error(c.post("/placements", json={
        "source": CLIENT, "demand": 0.1, "kind": "intelligent", "max_latency_ms": BOUND_MS,
        "policy": "random"}), 422)
