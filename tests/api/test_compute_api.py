"""Compute steering over the REST API and cpnctl, against the real server on loopback (national
topology): sites CRUD with every error status, placements checked against an independent
networkx choice, 409 reasons, exact release, services and assignments, persistence across a
restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import networkx as nx
import pytest

from controller.store import StoreError
from controller.topology.model import Topology

from .conftest import Api, MakeApi, assert_error
from .test_cpnctl import cpnctl

MICRO = 1_000_000
TIERS = {"local": 1.0, "regional": 5.0, "national": 20.0}
NEW_SITE = {"id": "cs:gansu-lanzhou:gpu-01", "node": "city-lanzhou", "capacity": 8.0,
            "kind": "intelligent", "unit": "EFLOPS", "price": 0.5, "host": "h-city-lanzhou"}


# --- the independent oracle ------------------------------------------------------------------

def nx_latencies(topo: Topology, src: str) -> dict[str, float]:
    g = nx.Graph()
    for lk in topo.links:
        if not g.has_edge(lk.a, lk.b) or g[lk.a][lk.b]["w"] > lk.latency_ms:
            g.add_edge(lk.a, lk.b, w=lk.latency_ms)
    return nx.single_source_dijkstra_path_length(g, src, weight="w")


def oracle(topo: Topology, sites: list[dict[str, Any]], src_node: str, kind: str,
           demand: float, bound_ms: float, policy: str) -> str | None:
    """The policy written out by hand over networkx distances and the API's site list."""
    dist = nx_latencies(topo, src_node)
    want = round(demand * MICRO)
    best: tuple[Any, ...] | None = None
    for s in sites:
        lat = dist.get(s["node"])
        if (s["kind"] != kind or s["state"] != "up" or lat is None or lat > bound_ms + 1e-9
                or round(s["free_capacity"] * MICRO) < want):
            continue
        if policy == "nearest":
            key: tuple[Any, ...] = (lat, s["price"], s["id"])
        elif policy == "cheapest":
            key = (s["price"] * demand, lat, s["id"])
        else:
            key = (-(s["free_capacity"] - demand) / s["capacity"], lat, s["id"])
        if best is None or key < best:
            best = key
    return None if best is None else best[-1]


def check_path(topo: Topology, body: dict[str, Any], src_node: str, site_node: str,
               bound_ms: float) -> None:
    path = body["path"]
    assert path[0] == src_node and path[-1] == site_node
    lat = {frozenset((lk.a, lk.b)): lk.latency_ms for lk in topo.links}
    total = sum(lat[frozenset(p)] for p in zip(path, path[1:], strict=False))
    assert body["latency_ms"] == pytest.approx(total)
    assert body["latency_ms"] <= bound_ms + 1e-9
    assert body["latency_ms"] >= nx_latencies(topo, src_node)[site_node] - 1e-9


def sites_by_id(c: Any) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in c.get("/compute-sites").json()}


# --- sites -------------------------------------------------------------------------------------

def test_sites_crud_and_every_error(national: Api) -> None:
    with national.client() as c, national.client(token=None) as anon, \
            national.client(token="wrong") as bad:
        listed = c.get("/compute-sites").json()
        file_ids = [s.id for s in national.service.topology.compute_sites]
        assert [s["id"] for s in listed] == file_ids  # registration order = file order
        assert sum(s["capacity"] for s in listed) == pytest.approx(230.0)
        assert sum(s["capacity"] for s in listed if s["kind"] == "intelligent") == \
            pytest.approx(70.0)
        assert {s["id"] for s in c.get("/compute-sites", params={"kind": "intelligent"}).json()
                } == {s for s in file_ids if ":ai-" in s}
        before = c.get("/compute-sites").json()

        assert_error(anon.post("/compute-sites", json=NEW_SITE), 401, "unauthorized")
        assert_error(bad.post("/compute-sites", json=NEW_SITE), 401, "unauthorized")
        # the document states what a schema can (422); unknown names are 404; fields that
        # disagree with each other are 409
        for body, status in (({**NEW_SITE, "id": "gpu-01"}, 422),
                             ({**NEW_SITE, "node": "city-nowhere"}, 404),
                             ({**NEW_SITE, "host": "h-city-xining"}, 409),  # other node
                             ({**NEW_SITE, "host": "h-ghost"}, 404),
                             ({**NEW_SITE, "capacity": -1}, 422),
                             ({**NEW_SITE, "kind": "quantum"}, 422),
                             ({**NEW_SITE, "colour": "red"}, 422),
                             ({**NEW_SITE, "free_capacity": 9.0}, 409)):  # free > capacity
            assert_error(c.post("/compute-sites", json=body), status)
        assert_error(c.post("/compute-sites", json={**NEW_SITE, "id": file_ids[0],
                                                    "node": "dc-zhangjiakou",
                                                    "host": "h-dc-zhangjiakou"}),
                     409, "conflict")
        assert c.get("/compute-sites").json() == before  # nothing changed by the failures

        r = c.post("/compute-sites", json=NEW_SITE)
        assert r.status_code == 201, r.text
        assert r.json()["free_capacity"] == 8.0 and r.json()["state"] == "up"
        assert_error(c.post("/compute-sites", json=NEW_SITE), 409, "conflict")
        shown = c.get(f"/compute-sites/{NEW_SITE['id']}").json()
        assert shown["reservation_list"] == [] and shown["node"] == "city-lanzhou"

        for method in ("get", "patch", "delete"):
            kw = {"json": {"price": 1.0}} if method == "patch" else {}
            assert_error(getattr(c, method)("/compute-sites/cs:no:such", **kw), 404,
                         "not_found")
        assert_error(anon.patch(f"/compute-sites/{NEW_SITE['id']}", json={"price": 1}), 401)
        assert_error(c.patch(f"/compute-sites/{NEW_SITE['id']}", json={"colour": 1}), 422)
        assert_error(c.patch(f"/compute-sites/{NEW_SITE['id']}", json={"state": "gone"}), 422)
        assert_error(c.patch(f"/compute-sites/{NEW_SITE['id']}", json={"node": "x"}), 404)
        assert_error(c.patch(f"/compute-sites/{NEW_SITE['id']}", json={"kind": None}), 422)

        # with a reservation: capacity below use, kind change and delete are conflicts
        p = c.post("/placements", json={"source": "city-lanzhou", "demand": 3.0,
                                        "kind": "intelligent", "tier": "local"})
        assert p.status_code == 201 and p.json()["site_id"] == NEW_SITE["id"]
        for patch in ({"capacity": 2.5}, {"kind": "general"}, {"unit": "GPU"}):
            assert_error(c.patch(f"/compute-sites/{NEW_SITE['id']}", json=patch), 409)
        assert_error(c.delete(f"/compute-sites/{NEW_SITE['id']}"), 409, "conflict")
        assert_error(anon.delete(f"/compute-sites/{NEW_SITE['id']}"), 401)
        r = c.patch(f"/compute-sites/{NEW_SITE['id']}", json={"capacity": 3.0, "price": 0.7})
        assert r.status_code == 200 and r.json()["free_capacity"] == 0.0
        assert r.json()["price"] == 0.7 and r.json()["moves"] == []
        assert c.delete(f"/placements/{p.json()['id']}").status_code == 200
        r = c.delete(f"/compute-sites/{NEW_SITE['id']}")
        assert r.status_code == 200 and r.json() == {"id": NEW_SITE["id"], "deleted": True}
        assert_error(c.get(f"/compute-sites/{NEW_SITE['id']}"), 404)
        assert c.get("/compute-sites").json() == before


# --- placements --------------------------------------------------------------------------------

CITIES = ("h-city-lanzhou", "h-city-shenzhen", "h-city-harbin", "h-city-lhasa",
          "h-city-hefei", "h-city-kunming")


def test_placements_follow_the_policy_like_networkx(national: Api) -> None:
    topo = national.service.topology
    placed = refused = 0
    chosen: dict[tuple[str, str, str], set[str]] = {}
    with national.client() as c:
        for city in CITIES:
            src_node = topo.host(city).node
            for kind in ("intelligent", "general"):
                for policy in ("nearest", "cheapest", "least-loaded"):
                    for tier in ("regional", "national"):
                        demand = 0.75 if kind == "intelligent" else 1.5
                        sites = c.get("/compute-sites").json()
                        want = oracle(topo, sites, src_node, kind, demand, TIERS[tier],
                                      policy)
                        r = c.post("/placements", json={"source": city, "demand": demand,
                                                        "kind": kind, "tier": tier,
                                                        "policy": policy})
                        if want is None:
                            assert r.status_code == 409 and r.json()["error"] == \
                                "no_capacity", r.text
                            refused += 1
                            continue
                        assert r.status_code == 201, r.text
                        body = r.json()
                        assert body["site_id"] == want, (city, kind, policy, tier)
                        chosen.setdefault((city, kind, tier), set()).add(want)
                        site = {s["id"]: s for s in sites}[want]
                        check_path(topo, body, src_node, site["node"], TIERS[tier])
                        assert body["price"] == pytest.approx(site["price"] * demand)
                        assert body["max_latency_ms"] == TIERS[tier]
                        after = sites_by_id(c)[want]
                        assert round(after["free_capacity"] * MICRO) == \
                            round((site["free_capacity"] - demand) * MICRO)
                        placed += 1
        listed = c.get("/placements").json()
        assert len(listed) == placed
        one = listed[0]
        assert c.get(f"/placements/{one['id']}").json() == one
    assert placed > 30 and refused > 0  # both outcomes exercised
    # the policies really differ: somewhere they pick different sites for the same request
    assert any(len(picks) > 1 for picks in chosen.values())


def test_placement_409_reasons_and_candidates(national: Api) -> None:
    with national.client() as c:
        def place(**kw: Any) -> Any:
            body = {"source": "h-city-lanzhou", "demand": 1.0, "kind": "intelligent",
                    "tier": "regional", **kw}
            return c.post("/placements", json=body)

        # nothing within 1 ms: the reason names the nearest site and its latency
        r = place(tier="local")
        body = r.json()
        assert r.status_code == 409 and body["error"] == "no_capacity"
        assert "no intelligent site within 1 ms" in body["reasons"][0]
        assert "cs:gansu-qingyang:ai-01 at 2.64 ms" in body["reasons"][0]
        assert {cand["status"] for cand in body["candidates"]} == {"beyond_bound"}
        assert body["best_latency_ms"] == pytest.approx(
            min(cand["latency_ms"] for cand in body["candidates"]))
        # within the bound but full: every site says how much is free
        r = place(demand=9.9, tier="national")
        body = r.json()
        assert r.status_code == 409 and "full or not up" in body["reasons"][0]
        assert {cand["status"] for cand in body["candidates"]} == {"full"}
        assert len(body["candidates"]) == 10
        # the two sites within 5 ms down / draining: named with their state
        sites_5ms = ("cs:gansu-qingyang:ai-01", "cs:sichuan-tianfu:ai-01")
        c.patch(f"/compute-sites/{sites_5ms[0]}", json={"state": "down"})
        c.patch(f"/compute-sites/{sites_5ms[1]}", json={"state": "draining"})
        r = place()
        body = r.json()
        assert r.status_code == 409
        assert f"{sites_5ms[0]} (down)" in body["detail"]
        assert f"{sites_5ms[1]} (draining)" in body["detail"]
        status = {cand["site"]: cand["status"] for cand in body["candidates"]}
        assert status[sites_5ms[0]] == "down" and status[sites_5ms[1]] == "draining"
        assert c.get("/placements").json() == []
        # bad requests: 400 / 404 / 422, nothing reserved
        assert_error(place(max_latency_ms=5.0), 400, "bad_compute_request")  # tier and bound
        assert_error(place(tier=None), 422)  # the document: not nullable
        assert_error(place(source="h-nowhere"), 404, "not_found")
        assert_error(place(demand=0), 422)
        assert_error(place(policy="random"), 422)
        assert_error(place(kind="quantum"), 422)
        with national.client(token=None) as anon:
            assert_error(anon.post("/placements", json={"source": "h-city-lanzhou",
                                                        "demand": 1.0, "kind": "general",
                                                        "tier": "national"}), 401)
        assert c.get("/placements").json() == []
        assert all(s["reserved"] == 0 for s in c.get("/compute-sites").json())


def test_release_restores_capacity_exactly(national: Api) -> None:
    with national.client() as c:
        start = sites_by_id(c)
        ids = []
        for demand in (1.25, 0.000001, 2.5, 0.333333):
            r = c.post("/placements", json={"source": "h-city-lanzhou", "demand": demand,
                                            "kind": "intelligent", "tier": "regional"})
            assert r.status_code == 201
            ids.append(r.json()["id"])
        site = "cs:gansu-qingyang:ai-01"
        mid = sites_by_id(c)[site]
        assert round(mid["free_capacity"] * MICRO) == round(
            start[site]["free_capacity"] * MICRO) - 4_083_334
        assert len(c.get(f"/compute-sites/{site}").json()["reservation_list"]) == 4
        for pid in (ids[2], ids[0], ids[3], ids[1]):
            r = c.delete(f"/placements/{pid}")
            assert r.status_code == 200 and r.json()["id"] == pid
        assert sites_by_id(c) == start  # exactly back, every site
        assert_error(c.delete(f"/placements/{ids[0]}"), 404, "not_found")
        assert_error(c.get(f"/placements/{ids[0]}"), 404)


def test_store_failure_changes_nothing(national: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    store = national.handle.store
    with national.client() as c:
        start = sites_by_id(c)

        def broken(**_kw: Any) -> None:
            raise StoreError("disk full (test)")

        monkeypatch.setattr(store, "write_compute", broken)
        r = c.post("/placements", json={"source": "h-city-lanzhou", "demand": 1.0,
                                        "kind": "intelligent", "tier": "regional"})
        assert_error(r, 500, "store")
        assert_error(c.delete("/compute-sites/cs:chongqing:gen-01"), 500, "store")
        assert_error(c.patch("/compute-sites/cs:chongqing:gen-01", json={"state": "down"}),
                     500)
        assert sites_by_id(c) == start and c.get("/placements").json() == []
        monkeypatch.undo()
        assert c.post("/placements", json={"source": "h-city-lanzhou", "demand": 1.0,
                                           "kind": "intelligent",
                                           "tier": "regional"}).status_code == 201


# --- services and assignments ------------------------------------------------------------------

def test_services_assignments_and_site_down(national: Api) -> None:
    topo = national.service.topology
    svc = {"name": "infer", "anycast_ip": "10.255.0.1", "kind": "intelligent",
           "demand_per_client": 0.01, "max_latency_ms": 5.0}
    with national.client() as c:
        r = c.post("/services", json=svc)
        assert r.status_code == 201 and r.json()["clients"] == 0
        assert r.json()["policy"] == "nearest"
        assert_error(c.post("/services", json=svc), 409, "conflict")
        assert_error(c.post("/services", json={**svc, "name": "other"}), 409)  # same address
        assert_error(c.post("/services", json={**svc, "name": "h", "anycast_ip": "10.0.0.51"}),
                     409)  # a host's address
        assert_error(c.post("/services", json={**svc, "name": "x", "anycast_ip": "10.0.0.999"}),
                     422)  # the document's pattern: unicast dotted-quad IPv4
        assert_error(c.post("/services", json={**svc, "name": "y", "anycast_ip": "224.0.0.9"}),
                     422)
        assert_error(c.post("/services", json={**svc, "name": "z", "tier": "local"}), 400)
        assert_error(c.post("/services", json={**svc, "name": "bad name"}), 422)
        assert [s["name"] for s in c.get("/services").json()] == ["infer"]
        with national.client(token=None) as anon:
            assert_error(anon.post("/services/infer/assignments",
                                   json={"client": "h-city-lanzhou"}), 401)
            assert_error(anon.delete("/services/infer"), 401)

        sites = c.get("/compute-sites").json()
        want = oracle(topo, sites, "city-lanzhou", "intelligent", 0.01, 5.0, "nearest")
        a = c.post("/services/infer/assignments", json={"client": "h-city-lanzhou"})
        assert a.status_code == 200, a.text
        first = a.json()
        assert first["site_id"] == want == "cs:gansu-qingyang:ai-01"
        check_path(topo, first, "city-lanzhou", first["site_node"], 5.0)
        # sticky: asking again (by IP) keeps the site and the reservation
        again = c.post("/services/infer/assignments", json={"client": "10.0.0.51"}).json()
        assert again["reservation_id"] == first["reservation_id"]
        assert_error(c.post("/services/infer/assignments", json={"client": "h-ghost"}), 404)
        assert_error(c.post("/services/infer/assignments", json={"client": "city-lanzhou"}),
                     400)  # a switch is not a client
        assert_error(c.post("/services/nope/assignments", json={"client": "h-city-lanzhou"}),
                     404)
        assert c.get("/services/infer").json()["clients"] == 1

        # the site goes down: the client moves to the next best site (oracle again)
        sites = c.get("/compute-sites").json()
        for s in sites:
            if s["id"] == first["site_id"]:
                s["state"] = "down"
        nxt = oracle(topo, sites, "city-lanzhou", "intelligent", 0.01, 5.0, "nearest")
        r = c.patch(f"/compute-sites/{first['site_id']}", json={"state": "down"})
        assert r.status_code == 200
        moves = r.json()["moves"]
        assert moves == [{"service": "infer", "client_host": "h-city-lanzhou",
                          "from_site": first["site_id"], "to_site": nxt,
                          "reason": f"site {first['site_id']} is down",
                          "latency_ms": pytest.approx(nx_latencies(topo, "city-lanzhou")[
                              topo.host("h-dc-tianfu").node])}]
        now = c.get("/services/infer/assignments").json()
        assert [x["site_id"] for x in now] == [nxt]
        after = sites_by_id(c)
        assert after[first["site_id"]]["reserved"] == 0
        assert round(after[nxt]["reserved"] * MICRO) == 10_000
        # nothing left within the bound: 409 with reasons
        c.patch(f"/compute-sites/{nxt}", json={"state": "draining"})
        r = c.post("/services/infer/assignments", json={"client": "h-city-xining"})
        assert r.status_code == 409 and r.json()["error"] == "no_capacity"
        assert any("draining" in line for line in r.json()["reasons"])

        # unassign and delete release the capacity
        un = c.delete("/services/infer/assignments/h-city-lanzhou")
        assert un.status_code == 200 and un.json()["site_id"] == nxt
        assert sites_by_id(c)[nxt]["reserved"] == 0
        assert_error(c.delete("/services/infer/assignments/h-city-lanzhou"), 404)
        c.patch(f"/compute-sites/{nxt}", json={"state": "up"})
        c.post("/services/infer/assignments", json={"client": "h-city-lanzhou"})
        gone = c.delete("/services/infer")
        assert gone.status_code == 200 and len(gone.json()["released"]) == 1
        assert all(s["reserved"] == 0 for s in c.get("/compute-sites").json())
        assert_error(c.get("/services/infer"), 404)
        assert_error(c.get("/services/infer/assignments"), 404)
        assert_error(c.delete("/services/infer"), 404)


def test_latency_circles_with_sites(national: Api) -> None:
    topo = national.service.topology
    with national.client() as c:
        c.patch("/compute-sites/cs:sichuan-tianfu:ai-01", json={"state": "down"})
        r = c.get("/latency-circles/sites")
        assert r.status_code == 200
        data = r.json()
        assert data["tiers_ms"] == [1.0, 5.0, 20.0]
        assert len(data["hubs"]) == len(topo.nodes_of_kind("national_hub"))
        cities = {x["city"]: x for x in data["cities"]}
        assert set(cities) == {n.name for n in topo.nodes_of_kind("city")}
        dist = nx_latencies(topo, "city-lanzhou")
        for tier in cities["city-lanzhou"]["tiers"]:
            got = [(s["id"], s["state"]) for s in tier["sites"]]
            want = sorted(((s.id, "down" if s.id == "cs:sichuan-tianfu:ai-01" else "up")
                           for s in topo.compute_sites
                           if dist[s.node] <= tier["max_latency_ms"] + 1e-9),
                          key=lambda t: (dist[topo.compute_site(t[0]).node], t[0]))
            assert got == want
        one = c.get("/latency-circles/sites", params={"city": "city-lanzhou",
                                                      "max_latency_ms": 5}).json()
        assert [x["city"] for x in one["cities"]] == ["city-lanzhou"]
        assert one["tiers_ms"] == [5.0]
        assert_error(c.get("/latency-circles/sites", params={"city": "city-nowhere"}), 404)
        assert_error(c.get("/latency-circles/sites", params={"max_latency_ms": -1}), 422)


# --- persistence -------------------------------------------------------------------------------

def test_sites_placements_services_survive_a_restart(make_api: MakeApi, tmp_path: Path) -> None:
    state = tmp_path / "shared-state"
    api = make_api("national", state_dir=state)
    with api.client() as c:
        assert c.post("/compute-sites", json=NEW_SITE).status_code == 201
        assert c.delete("/compute-sites/cs:chongqing:gen-01").status_code == 200
        c.patch("/compute-sites/cs:anhui-wuhu:ai-01", json={"state": "draining",
                                                            "price": 2.5})
        placed = [c.post("/placements", json={"source": src, "demand": 0.5,
                                              "kind": kind, "tier": "national",
                                              "policy": policy}).json()
                  for src, kind, policy in (("h-city-lanzhou", "intelligent", "nearest"),
                                            ("h-city-hefei", "general", "cheapest"),
                                            ("h-city-harbin", "intelligent", "least-loaded"))]
        assert all("id" in p for p in placed)
        c.post("/services", json={"name": "infer", "anycast_ip": "10.255.0.1",
                                  "kind": "intelligent", "demand_per_client": 0.02,
                                  "tier": "regional", "policy": "cheapest"})
        c.post("/services/infer/assignments", json={"client": "h-city-shenzhen"})
        before = {path: c.get(path).json() for path in
                  ("/compute-sites", "/placements", "/services", "/services/infer/assignments")}
    assert before["/services/infer/assignments"][0]["site_id"]
    api.stop()

    again = make_api("national", state_dir=state)
    with again.client() as c:
        after = {path: c.get(path).json() for path in before}
        assert after == before
        ids = [s["id"] for s in after["/compute-sites"]]
        assert NEW_SITE["id"] in ids and "cs:chongqing:gen-01" not in ids  # stays deleted
        # the reservations came back: releasing restores the capacity
        for p in placed:
            assert c.delete(f"/placements/{p['id']}").status_code == 200
        assert c.delete("/services/infer").status_code == 200
        assert all(s["reserved"] == 0 for s in c.get("/compute-sites").json())


# --- cpnctl ------------------------------------------------------------------------------------

def test_cpnctl_sites_place_services_circles(national: Api) -> None:
    url, tok = national.url, national.token
    r = cpnctl(url, "sites", "list", "--kind", "intelligent")
    assert r.returncode == 0 and "cs:gansu-qingyang:ai-01" in r.stdout
    assert "cs:gansu-qingyang:gen-01" not in r.stdout
    r = cpnctl(url, "sites", "add", NEW_SITE["id"], "--node", "city-lanzhou", "--capacity",
               "8", "--kind", "intelligent", "--unit", "EFLOPS", "--host", "h-city-lanzhou")
    assert r.returncode == 1 and "401" in r.stderr
    r = cpnctl(url, "--json", "sites", "add", NEW_SITE["id"], "--node", "city-lanzhou",
               "--capacity", "8", "--kind", "intelligent", "--unit", "EFLOPS", "--host",
               "h-city-lanzhou", "--price", "0.5", token=tok)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["free_capacity"] == 8.0
    r = cpnctl(url, "sites", "add", "bad", "--node", "city-lanzhou", "--capacity", "1",
               token=tok)
    assert r.returncode == 1 and "422 invalid_request" in r.stderr
    r = cpnctl(url, "--json", "place", "h-city-lanzhou", "--demand", "2", "--kind",
               "intelligent", "--tier", "local", token=tok)
    assert r.returncode == 0, r.stderr
    placed = json.loads(r.stdout)
    assert placed["site_id"] == NEW_SITE["id"]
    r = cpnctl(url, "place", "h-city-lanzhou", "--demand", "99", "--kind", "intelligent",
               "--max-latency-ms", "5", token=tok)
    assert r.returncode == 1 and "409 no_capacity" in r.stderr and "full" in r.stderr
    assert cpnctl(url, "place", "h-city-lanzhou", "--demand", "1", "--kind",
                  "general").returncode == 2  # a bound is required
    r = cpnctl(url, "placements")
    assert r.returncode == 0 and placed["id"] in r.stdout and NEW_SITE["id"] in r.stdout
    r = cpnctl(url, "sites", "show", NEW_SITE["id"])
    assert r.returncode == 0 and placed["id"] in r.stdout
    r = cpnctl(url, "sites", "delete", NEW_SITE["id"], token=tok)
    assert r.returncode == 1 and "409" in r.stderr
    r = cpnctl(url, "placements", "delete", placed["id"], token=tok)
    assert r.returncode == 0 and "released" in r.stdout
    r = cpnctl(url, "sites", "delete", NEW_SITE["id"], token=tok)
    assert r.returncode == 0 and "deleted" in r.stdout
    r = cpnctl(url, "sites", "show", NEW_SITE["id"])
    assert r.returncode == 1 and "404" in r.stderr

    r = cpnctl(url, "services", "add", "infer", "--anycast-ip", "10.255.0.1", "--kind",
               "intelligent", "--demand-per-client", "0.01", "--tier", "regional", token=tok)
    assert r.returncode == 0 and "10.255.0.1" in r.stdout, r.stderr
    r = cpnctl(url, "services", "assign", "infer", "h-city-lanzhou", token=tok)
    assert r.returncode == 0 and "cs:gansu-qingyang:ai-01" in r.stdout
    r = cpnctl(url, "sites", "set", "cs:gansu-qingyang:ai-01", "--state", "down", token=tok)
    assert r.returncode == 0 and "moved infer client h-city-lanzhou" in r.stdout
    r = cpnctl(url, "--json", "services", "assignments", "infer")
    assert [a["site_id"] for a in json.loads(r.stdout)] == ["cs:sichuan-tianfu:ai-01"]
    r = cpnctl(url, "services", "list")
    assert r.returncode == 0 and "infer" in r.stdout
    r = cpnctl(url, "services", "delete", "infer", token=tok)
    assert r.returncode == 0 and "1 clients released" in r.stdout

    r = cpnctl(url, "circles")
    assert r.returncode == 0, r.stderr
    assert "compute sites each city can use" in r.stdout
    assert "cs:sichuan-tianfu:ai-01" in r.stdout
    j = json.loads(cpnctl(url, "--json", "circles").stdout)
    lanzhou = next(x for x in j["city_sites"] if x["city"] == "city-lanzhou")
    five = next(t for t in lanzhou["tiers"] if t["max_latency_ms"] == 5.0)
    assert {s["id"] for s in five["sites"]} == {
        "cs:gansu-qingyang:ai-01", "cs:gansu-qingyang:gen-01", "cs:sichuan-tianfu:ai-01",
        "cs:sichuan-tianfu:gen-01"}


def test_openapi_lists_the_compute_endpoints(diamond: Api) -> None:
    doc = httpx.get(f"{diamond.url}/openapi.json").json()
    paths = doc["paths"]
    writes = {("/api/v1/compute-sites", "post"), ("/api/v1/compute-sites/{site_id}", "patch"),
              ("/api/v1/compute-sites/{site_id}", "delete"), ("/api/v1/placements", "post"),
              ("/api/v1/placements/{placement_id}", "delete"), ("/api/v1/services", "post"),
              ("/api/v1/services/{name}", "delete"),
              ("/api/v1/services/{name}/assignments", "post"),
              ("/api/v1/services/{name}/assignments/{client}", "delete")}
    reads = {("/api/v1/compute-sites", "get"), ("/api/v1/compute-sites/{site_id}", "get"),
             ("/api/v1/placements", "get"), ("/api/v1/placements/{placement_id}", "get"),
             ("/api/v1/services", "get"), ("/api/v1/services/{name}", "get"),
             ("/api/v1/services/{name}/assignments", "get"),
             ("/api/v1/latency-circles/sites", "get")}
    for path, method in writes | reads:
        op = paths[path][method]
        assert (op.get("security") == [{"HTTPBearer": []}]) == ((path, method) in writes)
    place_409 = paths["/api/v1/placements"]["post"]["responses"]["409"]
    assert place_409["content"]["application/json"]["schema"]["$ref"].endswith(
        "NoCapacityBody")
    # a topology without sites: the registry starts empty, placements say so
    with diamond.client() as c:
        assert c.get("/compute-sites").json() == []
        r = c.post("/placements", json={"source": "h1", "demand": 1, "kind": "general",
                                        "tier": "national"})
        assert r.status_code == 409 and r.json()["reasons"] == [
            "no general compute site is registered"]
