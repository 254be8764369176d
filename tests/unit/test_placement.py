"""Placement policies, reasons, anycast service assignment and latency circles, each checked
against an independent choice made here with networkx and the policy written out by hand."""

from __future__ import annotations

import random
from collections import Counter

import networkx as nx
import pytest
from compute_oracles import (
    borderline,
    lex_cmp,
    national,
    nx_graph,
    nx_latencies,
    oracle_feasible,
    oracle_key,
    small,
)

from controller.compute.anycast import AnycastServices, Service
from controller.compute.placement import (
    DEFAULT_POLICY,
    STATIC_POLICIES,
    TIERS_MS,
    Scheduler,
    latency_circles,
    resolve_bound,
)
from controller.compute.sites import ComputeRegistry
from controller.errors import (
    ComputeConflict,
    ComputeSiteError,
    InfeasibleRoute,
    NoCapacity,
    NotFound,
)
from controller.topology.model import Topology


def scheduler(topo: Topology) -> Scheduler:
    graph, _ = topo.to_graph()
    return Scheduler(ComputeRegistry.from_topology(topo), graph)


def snapshot(sched: Scheduler) -> list[dict]:
    return [{"id": s.id, "node": s.node, "kind": s.kind, "state": s.state, "price": s.price,
             "capacity": s.capacity, "free_capacity": s.free_capacity}
            for s in sched.registry.sites()]


def check_against_oracle(topo: Topology, sched: Scheduler, g: nx.Graph, src: str, kind: str,
                         demand: float, bound: float, policy: str) -> str:
    """Place and compare with the brute-force choice: "placed", "refused" or "borderline"."""
    sites = snapshot(sched)
    dist = nx_latencies(g, src)
    if borderline(sites, dist, demand, bound):
        return "borderline"
    feasible = oracle_feasible(sites, dist, kind, demand, bound)
    if not feasible:
        with pytest.raises(NoCapacity):
            sched.place(src, demand, kind, max_latency_ms=bound, policy=policy)
        return "refused"
    best = min(oracle_key(policy, s, dist[s["node"]], demand) for s in feasible)
    p = sched.place(src, demand, kind, max_latency_ms=bound, policy=policy)
    chosen = next(s for s in sites if s["id"] == p.site_id)
    assert chosen in feasible
    assert lex_cmp(oracle_key(policy, chosen, dist[chosen["node"]], demand), best) == 0, (
        f"{policy} from {src}: chose {p.site_id}")
    # The reported path: a real path of the topology, within the bound, from src to the site.
    assert p.path[0] == src and p.path[-1] == chosen["node"]
    assert p.latency_ms <= bound + 1e-9
    assert abs(nx.path_weight(g, list(p.path), "latency") - p.latency_ms) < 1e-6
    assert abs(p.price - chosen["price"] * demand) < 1e-9
    return "placed"


@pytest.mark.parametrize("policy", STATIC_POLICIES)
def test_policies_match_brute_force_on_the_national_model(policy: str) -> None:
    topo = national()
    sched = scheduler(topo)
    g = nx_graph(topo)
    rng = random.Random(f"national-{policy}")
    cities = [n.name for n in topo.nodes_of_kind("city")]
    ids = [s.id for s in sched.registry.sites()]
    outcomes: Counter[str] = Counter()
    for i in range(400):
        if i % 25 == 0:  # shake the site states now and then
            site_id = rng.choice(ids)
            state = rng.choice(["up", "up", "draining", "down"])
            sched.registry.update_site(site_id, {"state": state})
        src = rng.choice(cities)
        kind = rng.choice(["general", "intelligent", "intelligent", "hpc"])
        bound = rng.choice([1.0, 5.0, 20.0, rng.uniform(1.0, 25.0)])
        demand = rng.choice([0.1, 0.5, 1.0, 2.5])
        outcomes[check_against_oracle(topo, sched, g, src, kind, demand, bound, policy)] += 1
        if sched.placements() and rng.random() < 0.3:
            sched.release(rng.choice(sched.placements()).id)
    assert outcomes["placed"] >= 150 and outcomes["refused"] >= 50, outcomes


@pytest.mark.parametrize("policy", STATIC_POLICIES)
def test_policies_match_brute_force_on_a_small_topology(policy: str) -> None:
    topo = small()
    g = nx_graph(topo)
    rng = random.Random(f"small-{policy}")
    outcomes: Counter[str] = Counter()
    for _ in range(200):
        sched = scheduler(topo)
        for s in sched.registry.sites():  # random prior load and states
            used = rng.choice([0.0, 0.25, 0.5, 1.0]) * min(s.capacity, 2.0)
            if used:
                sched.registry.reserve(s.id, used)
            state = rng.choice(["up", "up", "up", "draining", "down"])
            sched.registry.update_site(s.id, {"state": state})
        outcomes[check_against_oracle(
            topo, sched, g, rng.choice("abcde"), "intelligent", rng.choice([0.5, 1.0, 2.0]),
            rng.choice([0.6, 1.1, 2.2, 3.0, 20.0]), policy)] += 1
    assert outcomes["placed"] >= 80 and outcomes["refused"] >= 20, outcomes


def test_each_policy_chooses_differently_where_it_should() -> None:
    topo = small()
    sched = scheduler(topo)
    # From a: b at 0.5 ms (price 3, cap 2), d at 1 ms (price 2, cap 4), c at 2 ms (price 1, 10).
    assert sched.place("a", 1, "intelligent", max_latency_ms=5).site_id == "cs:b:ai-1"
    assert sched.place("a", 1, "intelligent", max_latency_ms=5,
                       policy="cheapest").site_id == "cs:c:ai-1"
    sched2 = scheduler(topo)
    sched2.registry.reserve("cs:c:ai-1", 9)  # c: 1 of 10 free; d: 4 of 4; b: 2 of 2
    assert sched2.place("a", 1, "intelligent", max_latency_ms=5,
                        policy="least-loaded").site_id == "cs:d:ai-1"
    assert DEFAULT_POLICY == "nearest"


def test_path_is_least_cost_within_the_bound_like_intents() -> None:
    topo = small()
    g = nx_graph(topo)
    sched = scheduler(topo)
    sched.registry.update_site("cs:b:ai-1", {"state": "down"})
    sched.registry.update_site("cs:d:ai-1", {"state": "down"})
    for bound in (2.0, 2.2, 2.5, 3.0):
        p = sched.place("a", 1, "intelligent", max_latency_ms=bound)
        # brute force over every simple path a -> c
        ok = [q for q in nx.all_simple_paths(g, "a", "c")
              if nx.path_weight(g, q, "latency") <= bound + 1e-9]
        best = min(ok, key=lambda q: nx.path_weight(g, q, "cost"))
        assert list(p.path) == best
        sched.release(p.id)
    # 200 Mbps rules out a-b (100 Mbps): the path must go via d even with a loose bound.
    p = sched.place("a", 1, "intelligent", max_latency_ms=3.0, min_bandwidth_mbps=200)
    assert p.path == ("a", "d", "c") and p.min_bandwidth_mbps == 200


def test_bandwidth_tries_the_next_site_in_policy_order() -> None:
    sched = scheduler(small())
    # b is nearest, over the 100 Mbps a-b link; the wide way a-d-c-b is 4 ms: d is next.
    p = sched.place("a", 1, "intelligent", max_latency_ms=3.5, min_bandwidth_mbps=500)
    assert p.site_id == "cs:d:ai-1"


def test_source_may_be_a_node_a_host_or_a_host_ip() -> None:
    topo = small()
    sched = scheduler(topo)
    ip = topo.host("h-a").ip
    for source in ("a", "h-a", ip):
        p = sched.place(source, 0.5, "intelligent", tier="regional")
        assert p.source_node == "a" and p.source == source and p.max_latency_ms == 5.0
    with pytest.raises(NotFound):
        sched.place("h-zz", 1, "intelligent", tier="local")


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"tier": "galactic"}, "unknown tier"),
    ({"tier": "local", "max_latency_ms": 3}, "exactly one"),
    ({}, "exactly one"),
    ({"max_latency_ms": -1}, "> 0"),
    ({"max_latency_ms": float("inf")}, "finite"),
    ({"tier": "local", "policy": "random"}, "unknown policy"),
    ({"tier": "local", "kind": "quantum"}, "unknown compute kind"),
    ({"tier": "local", "demand": 0}, "demand must be positive"),
    ({"tier": "local", "demand": -2}, "must not be negative"),
    ({"tier": "local", "min_bandwidth_mbps": -5}, "min_bandwidth_mbps"),
])
def test_bad_requests_are_refused_and_reserve_nothing(kwargs: dict, words: str) -> None:
    sched = scheduler(small())
    args = {"demand": 1.0, "kind": "intelligent", **kwargs}
    with pytest.raises(ComputeSiteError, match=words):
        sched.place("a", args.pop("demand"), args.pop("kind"), **args)
    assert not sched.registry.reservations() and not sched.placements()


def test_placement_id_conflict_and_release_unknown() -> None:
    sched = scheduler(small())
    sched.place("a", 1, "intelligent", tier="regional", placement_id="p1")
    with pytest.raises(ComputeConflict):
        sched.place("a", 1, "intelligent", tier="regional", placement_id="p1")
    sched.release("p1")
    with pytest.raises(NotFound):
        sched.release("p1")
    assert not sched.registry.reservations()


def test_tiers() -> None:
    assert TIERS_MS == {"local": 1.0, "regional": 5.0, "national": 20.0}
    assert resolve_bound(tier="national") == 20.0 and resolve_bound(7.5) == 7.5


# --- reasons when nothing fits ------------------------------------------------------------------

def test_reason_no_site_of_the_kind() -> None:
    with pytest.raises(NoCapacity) as exc:
        scheduler(small()).place("a", 1, "hpc", tier="national")
    assert exc.value.reasons == ["no hpc compute site is registered"]
    assert isinstance(exc.value, InfeasibleRoute) and exc.value.http_status == 409


def test_reason_none_within_the_bound_names_the_nearest() -> None:
    topo = national()
    sched = scheduler(topo)
    dist = nx_latencies(nx_graph(topo), "city-lanzhou")
    ai = [s for s in topo.compute_sites if s.kind == "intelligent"]
    nearest = min(ai, key=lambda s: (dist[s.node], s.id))
    with pytest.raises(NoCapacity) as exc:
        sched.place("city-lanzhou", 1, "intelligent", tier="local")
    assert exc.value.reasons == [
        f"no intelligent site within 1 ms of city-lanzhou (nearest: {nearest.id} at "
        f"{dist[nearest.node]:.2f} ms)"]
    assert abs(exc.value.best_latency_ms - dist[nearest.node]) < 1e-9
    assert {c["status"] for c in exc.value.candidates} == {"beyond_bound"}


def test_reason_none_reachable() -> None:
    with pytest.raises(NoCapacity, match=r"no intelligent site within 20 ms of f \(none is "
                                         r"reachable\)"):
        scheduler(small()).place("f", 1, "intelligent", tier="national")


def test_reason_full_draining_down_with_free_figures() -> None:
    sched = scheduler(small())
    reg = sched.registry
    reg.reserve("cs:c:ai-1", 9.8)
    reg.update_site("cs:b:ai-1", {"state": "down"})
    reg.update_site("cs:d:ai-1", {"state": "draining"})
    with pytest.raises(NoCapacity) as exc:
        sched.place("a", 1, "intelligent", max_latency_ms=5)
    assert exc.value.reasons == [
        "intelligent sites within 5 ms of a but full or not up: cs:b:ai-1 (down), "
        "cs:c:ai-1 (free 0.2 of 10 GPU), cs:d:ai-1 (draining)"]
    status = {c["site"]: c["status"] for c in exc.value.candidates}
    assert status == {"cs:b:ai-1": "down", "cs:c:ai-1": "full", "cs:d:ai-1": "draining"}
    assert not sched.placements() and len(reg.reservations()) == 1


def test_reason_full_in_bound_and_nearest_beyond() -> None:
    sched = scheduler(small())
    sched.registry.reserve("cs:b:ai-1", 2)
    with pytest.raises(NoCapacity) as exc:
        sched.place("a", 1, "intelligent", max_latency_ms=0.8)
    assert exc.value.reasons == [
        "intelligent sites within 0.8 ms of a but full or not up: cs:b:ai-1 (free 0 of 2 GPU)",
        "nearest intelligent site beyond the bound: cs:d:ai-1 at 1.00 ms"]


def test_reason_no_bandwidth() -> None:
    sched = scheduler(small())
    with pytest.raises(NoCapacity) as exc:
        sched.place("a", 1, "intelligent", max_latency_ms=0.8, min_bandwidth_mbps=500)
    assert exc.value.reasons[0] == (
        "intelligent sites within 0.8 ms of a without a path of 500 Mbps residual bandwidth "
        "within the bound: cs:b:ai-1 (0.50 ms)")


def test_switch_down_hides_its_sites() -> None:
    topo = small()
    graph, _ = topo.to_graph()
    sched = Scheduler(ComputeRegistry.from_topology(topo), graph, node_up=lambda n: n != "b")
    assert sched.place("a", 1, "intelligent", max_latency_ms=5).site_id == "cs:d:ai-1"


def test_placements_round_trip_through_plain_dicts() -> None:
    topo = small()
    sched = scheduler(topo)
    for _ in range(3):
        sched.place("a", 0.7, "intelligent", tier="regional", policy="cheapest")
    data = sched.to_dict()
    graph, _ = topo.to_graph()
    again = Scheduler.from_dict(data, topo, graph)
    assert again.to_dict() == data
    for p in again.placements():
        again.release(p.id)
    assert again.registry.site("cs:c:ai-1").free_capacity == 10.0


# --- anycast services ---------------------------------------------------------------------------

def services(topo: Topology | None = None) -> tuple[AnycastServices, Scheduler]:
    sched = scheduler(topo or small())
    return AnycastServices(sched), sched


WEB = Service("web", "10.255.0.1", "intelligent", 1.0, 5.0)


def test_service_validation() -> None:
    for bad in (dict(anycast_ip="10.0.0.300"), dict(anycast_ip="224.0.0.1"),
                dict(name="no spaces"), dict(kind="quantum"), dict(demand_per_client=0),
                dict(max_latency_ms=0), dict(policy="random")):
        with pytest.raises(ComputeSiteError):
            Service(**{**WEB.to_dict(), **bad})
    svc, _ = services()
    svc.add_service(WEB)
    with pytest.raises(ComputeConflict, match="already exists"):
        svc.add_service(WEB)
    with pytest.raises(ComputeConflict, match="already used"):
        svc.add_service(Service("web2", "10.255.0.1", "general", 1, 5))
    with pytest.raises(ComputeConflict, match="host 'h-a'"):
        svc.add_service(Service("web3", small().host("h-a").ip, "general", 1, 5))


def test_assignment_is_sticky_and_new_clients_follow_the_policy() -> None:
    svc, sched = services()
    svc.add_service(WEB)
    sched.registry.update_site("cs:b:ai-1", {"state": "draining"})
    first = svc.assign("web", "h-a")
    assert first.site_id == "cs:d:ai-1"  # b (0.5 ms) is draining; d (1 ms) is next
    sched.registry.update_site("cs:b:ai-1", {"state": "up"})
    assert svc.assign("web", "h-a").site_id == "cs:d:ai-1"  # sticky although b is nearer now
    assert svc.assign("web", "h-a").reservation_id == first.reservation_id
    assert len(sched.registry.reservations()) == 1
    assert svc.assign("web", "h-b").site_id == "cs:b:ai-1"  # a new client goes to the nearest


def test_site_down_moves_existing_clients() -> None:
    svc, sched = services()
    svc.add_service(WEB)
    for client in ("h-a", "h-b"):
        assert svc.assign("web", client).site_id == "cs:b:ai-1"
    assert sched.registry.site("cs:b:ai-1").free_capacity == 0.0
    sched.registry.update_site("cs:b:ai-1", {"state": "down"})
    moves = svc.reassign_after("cs:b:ai-1")
    # Independently: from a, d is at 1 ms and c at 2 ms; from b, d is at 1.5 ms (via a), c 2 ms.
    g = nx_graph(small())
    assert nx_latencies(g, "b")["d"] == 1.5 < nx_latencies(g, "b")["c"]
    assert [(m.client_host, m.from_site, m.to_site) for m in moves] == [
        ("h-a", "cs:b:ai-1", "cs:d:ai-1"), ("h-b", "cs:b:ai-1", "cs:d:ai-1")]
    assert [m.latency_ms for m in moves] == [1.0, 1.5]
    assert sched.registry.site("cs:b:ai-1").free_capacity == 2.0
    assert sched.registry.site("cs:d:ai-1").free_capacity == 2.0
    assert {a.site_id for a in svc.assignments("web")} == {"cs:d:ai-1"}
    # a third client cannot use the down site either
    assert svc.assign("web", "h-c").site_id == "cs:c:ai-1"


def test_draining_and_full_move_nobody() -> None:
    svc, sched = services()
    svc.add_service(WEB)
    a = svc.assign("web", "h-a")
    assert a.site_id == "cs:b:ai-1"
    sched.registry.update_site("cs:b:ai-1", {"state": "draining"})
    assert svc.reassign_after("cs:b:ai-1") == []
    assert svc.assign("web", "h-a").site_id == "cs:b:ai-1"  # kept while draining
    assert svc.assign("web", "h-c").site_id == "cs:c:ai-1"
    sched.registry.update_site("cs:b:ai-1", {"state": "up"})
    assert svc.assign("web", "h-b").site_id == "cs:b:ai-1"  # b is now full (2 of 2)
    assert svc.reassign_after("cs:b:ai-1") == []
    assert svc.assign("web", "h-d").site_id == "cs:d:ai-1"  # full b is skipped for new clients
    res = {r.site_id for r in sched.registry.reservations()}
    assert res == {"cs:b:ai-1", "cs:c:ai-1", "cs:d:ai-1"}


def test_down_with_nowhere_to_go_unassigns_and_releases() -> None:
    svc, sched = services()
    svc.add_service(Service("tight", "10.255.0.2", "intelligent", 1.0, 0.6))
    assert svc.assign("tight", "h-a").site_id == "cs:b:ai-1"
    sched.registry.update_site("cs:b:ai-1", {"state": "down"})
    [move] = svc.reassign_after()
    assert move.to_site is None and "site cs:b:ai-1 is down" in move.reason
    assert move.reason == (
        "site cs:b:ai-1 is down; intelligent sites within 0.6 ms of h-a (at a) but full or not "
        "up: cs:b:ai-1 (down); nearest intelligent site beyond the bound: cs:d:ai-1 at 1.00 ms")
    assert svc.assignments("tight") == [] and not sched.registry.reservations()


def test_path_loss_moves_clients_beyond_the_bound() -> None:
    topo = small()
    svc, sched = services(topo)
    svc.add_service(Service("wide", "10.255.0.3", "intelligent", 1.0, 2.2))
    sched.registry.update_site("cs:b:ai-1", {"state": "down"})
    sched.registry.update_site("cs:d:ai-1", {"state": "down"})
    assert svc.assign("wide", "h-a").site_id == "cs:c:ai-1"  # a-d-c at 2.0 ms
    sched.registry.update_site("cs:d:ai-1", {"state": "up"})
    for lid in sched.graph.links_between("a", "d"):
        sched.graph.set_link_up(lid, False, both_directions=True)
    # c now 2.5 ms away (via b) > 2.2; d is 1 ms + ... no: d is unreachable except via c.
    g = nx_graph(topo, down={("a", "d")})
    dist = nx_latencies(g, "a")
    assert dist["c"] > 2.2 and dist["d"] > 2.2
    [move] = svc.reassign_after()
    assert move.from_site == "cs:c:ai-1" and move.to_site is None


def test_flow_tuple_and_persistence() -> None:
    topo = small()
    svc, sched = services(topo)
    svc.add_service(WEB)
    a = svc.assign("web", "h-c")
    t = svc.flow_tuple(a)
    site_host = topo.host("h-c")
    assert (t.client_ip, t.anycast_ip, t.site_ip, t.site_mac, t.site_node, t.path) == (
        topo.host("h-c").ip, "10.255.0.1", site_host.ip, site_host.mac, "c", ("c",))
    data = {"scheduler": sched.to_dict(), "services": svc.to_dict()}
    graph, _ = topo.to_graph()
    again = AnycastServices(Scheduler.from_dict(data["scheduler"], topo, graph))
    again.restore(data["services"])
    assert again.to_dict() == svc.to_dict()
    # the restored address index refuses the address again
    with pytest.raises(ComputeConflict, match="already used by service 'web'"):
        again.add_service(Service("web2", "10.255.0.1", "general", 1.0, 20.0))
    gone = again.remove_service("web")
    assert [g.client_host for g in gone] == ["h-c"]
    assert not again.scheduler.registry.reservations()


def test_sites_without_a_host_never_serve_anycast() -> None:
    svc, sched = services()
    svc.add_service(Service("gen", "10.255.0.4", "general", 1.0, 20.0))
    # f's site has no host (and f is isolated); e's has one.
    assert svc.assign("gen", "h-e").site_id == "cs:e:gen-1"
    with pytest.raises(NoCapacity):
        svc.assign("gen", "h-f")


# --- latency circles ----------------------------------------------------------------------------

def test_circles_match_networkx_on_the_national_model() -> None:
    topo = national()
    graph, _ = topo.to_graph()
    reg = ComputeRegistry.from_topology(topo)
    view = latency_circles(topo, graph, reg.sites())
    g = nx_graph(topo)
    cities = {n.name for n in topo.nodes_of_kind("city")}
    assert view["tiers_ms"] == [1.0, 5.0, 20.0]
    assert [h["hub"] for h in view["hubs"]] == [n.name for n in topo.nodes_of_kind(
        "national_hub")]
    seen_nonempty = 0
    for hub in view["hubs"]:
        dist = nx_latencies(g, hub["hub"])
        for tier in hub["tiers"]:
            t = tier["max_latency_ms"]
            want = {c for c in cities if c in dist and dist[c] <= t}
            assert {c["name"] for c in tier["cities"]} == want
            seen_nonempty += bool(want)
    assert seen_nonempty > 0
    assert len(view["cities"]) == len(cities)
    for city in view["cities"]:
        dist = nx_latencies(g, city["city"])
        for tier in city["tiers"]:
            t = tier["max_latency_ms"]
            want = {s.id for s in topo.compute_sites if dist.get(s.node, 1e99) <= t}
            got = tier["sites"]
            assert {s["id"] for s in got} == want
            assert [s["latency_ms"] for s in got] == sorted(s["latency_ms"] for s in got)
            for s in got:
                assert abs(s["latency_ms"] - dist[s["node"]]) < 1e-9


def test_circles_on_the_small_topology() -> None:
    topo = small()
    graph, _ = topo.to_graph()
    view = latency_circles(topo, graph, hubs=["a"], cities=["a", "f"], tiers_ms=[2.0, 0.6])
    assert view["tiers_ms"] == [0.6, 2.0]
    assert [c["name"] for c in view["hubs"][0]["tiers"][1]["cities"]] == ["a"]
    a, f = view["cities"]
    assert [s["id"] for s in a["tiers"][0]["sites"]] == ["cs:b:ai-1"]
    assert [s["id"] for s in a["tiers"][1]["sites"]] == ["cs:b:ai-1", "cs:d:ai-1", "cs:c:ai-1"]
    assert [s["id"] for s in f["tiers"][1]["sites"]] == ["cs:f:gen-1"]
    with pytest.raises(ComputeSiteError):
        latency_circles(topo, graph, tiers_ms=[0])
    with pytest.raises(NotFound):
        latency_circles(topo, graph, hubs=["zz"])
