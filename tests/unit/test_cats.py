"""Policy ``cats`` (network + compute delay within an end-to-end bound), its explanations, the
dampening of load moves and the affinity of busy clients; each choice checked against one made
here by hand from networkx distances and the reported metrics."""

from __future__ import annotations

import math
import random

import networkx as nx
import pytest
from compute_oracles import TOL, national, nx_graph, nx_latencies, small

from controller.compute.anycast import AnycastServices, Service
from controller.compute.dampening import NO_DAMPENING, Dampener, Dampening
from controller.compute.metrics import SiteMetrics
from controller.compute.placement import LOSS_REASONS, Scheduler
from controller.compute.sites import ComputeRegistry, to_micro
from controller.errors import ComputeSiteError, NoCapacity
from controller.topology.model import Topology

INTERVAL_S = 5.0


def scheduler(topo: Topology, stale_policy: str = "no_new_clients") -> Scheduler:
    graph, _ = topo.to_graph()
    return Scheduler(ComputeRegistry.from_topology(topo), graph, metrics_interval_s=INTERVAL_S,
                     stale_policy=stale_policy, clock=lambda: 0.0)


def report(sched: Scheduler, site_id: str, compute_ms: float, utilisation: float = 0.5, *,
           at: float = 0.0, healthy: bool = True) -> None:
    sched.registry.set_metrics(site_id, SiteMetrics(
        utilisation=utilisation, compute_delay_ms=compute_ms, free_capacity=None,
        healthy=healthy, received_at=at))


def oracle_cats(topo: Topology, g: nx.Graph, src: str, kind: str, bound: float,
                metrics: dict[str, tuple[float, float, bool, bool]]) -> str | None:
    """The cats choice written out by hand: sites of the kind, up, with fresh healthy metrics,
    network + compute <= bound; least (e2e, utilisation, price, id). ``metrics``: site ->
    (compute ms, utilisation, healthy, fresh)."""
    dist = nx_latencies(g, src)
    best: tuple[float, float, float, str] | None = None
    for s in topo.compute_sites:
        if s.kind != kind or s.id not in metrics or s.node not in dist:
            continue
        comp, util, healthy, fresh = metrics[s.id]
        e2e = dist[s.node] + comp
        if not healthy or not fresh or e2e > bound + TOL:
            continue
        key = (e2e, util, s.price, s.id)
        if best is None or key < best:
            best = key
    return None if best is None else best[3]


def random_metrics(rng: random.Random, topo: Topology
                   ) -> dict[str, tuple[float, float, bool, bool]]:
    out = {}
    for s in topo.compute_sites:
        if rng.random() < 0.15:
            continue  # never reported
        out[s.id] = (rng.choice([0.0, 0.5, 1.0, 2.5, 4.0, rng.uniform(0, 12)]),
                     rng.choice([0.1, 0.5, 0.9]), rng.random() > 0.1, rng.random() > 0.1)
    return out


@pytest.mark.parametrize("topo_name", ["national", "small"])
def test_cats_matches_the_hand_written_choice(topo_name: str) -> None:
    topo = national() if topo_name == "national" else small()
    g = nx_graph(topo)
    rng = random.Random(16)
    cities = [h.node for h in topo.hosts]
    kinds = sorted({s.kind for s in topo.compute_sites})
    compared = refused = 0
    for _ in range(300):
        sched = scheduler(topo)
        metrics = random_metrics(rng, topo)
        for sid, (comp, util, healthy, fresh) in metrics.items():
            report(sched, sid, comp, util, healthy=healthy, at=0.0 if fresh else -16.0)
        src, kind, bound = rng.choice(cities), rng.choice(kinds), rng.choice([1.0, 5.0, 20.0])
        want = oracle_cats(topo, g, src, kind, bound, metrics)
        dist = nx_latencies(g, src)
        if any(abs(dist.get(s.node, -9) + metrics.get(s.id, (0,))[0] - bound) <= 1e-6
               for s in topo.compute_sites):
            continue  # float rounding could decide feasibility
        try:
            choice = sched.select(src, 1, kind, bound, policy="cats")
        except NoCapacity:
            assert want is None, (src, kind, bound)
            refused += 1
            continue
        assert choice.site.id == want, (src, kind, bound)
        # the path installed is a least-latency one and the whole delay is within the bound
        assert choice.latency_ms == pytest.approx(dist[choice.site.node])
        assert choice.latency_ms + metrics[want][0] <= bound + 1e-9
        compared += 1
    assert compared > 100 and refused > 10


def test_explanation_names_every_site_with_network_compute_score_and_why() -> None:
    topo = small()
    sched = scheduler(topo)
    # from a: b 0.5 ms, d 1.0 ms, c 2.0 ms (via d)
    report(sched, "cs:b:ai-1", 4.0, 0.9)           # 4.5 ms end to end
    report(sched, "cs:d:ai-1", 1.5, 0.7)           # 2.5 ms
    report(sched, "cs:c:ai-1", 0.5, 0.2)           # 2.5 ms, less utilised: wins the tie
    choice = sched.select("a", 1, "intelligent", 5.0, policy="cats")
    assert choice.site.id == "cs:c:ai-1"
    assert choice.path.nodes == ["a", "d", "c"]    # least latency, not least cost (via b)
    rows = {r["site"]: r for r in choice.explain()}
    assert rows["cs:c:ai-1"] == {"site": "cs:c:ai-1", "network_ms": pytest.approx(2.0),
                                 "compute_ms": 0.5, "score": pytest.approx(2.5),
                                 "status": "chosen"}
    assert rows["cs:d:ai-1"]["status"] == "worse" and rows["cs:d:ai-1"]["score"] == 2.5
    assert rows["cs:b:ai-1"] == {"site": "cs:b:ai-1", "network_ms": 0.5, "compute_ms": 4.0,
                                 "score": 4.5, "status": "worse"}
    assert [r["site"] for r in choice.explain()][:3] == ["cs:c:ai-1", "cs:d:ai-1", "cs:b:ai-1"]
    # over the end-to-end bound, unhealthy, stale, full: each says so
    report(sched, "cs:b:ai-1", 2.0, at=-16.0)      # older than 3 intervals
    report(sched, "cs:d:ai-1", 0.1, healthy=False)
    sched.registry.reserve("cs:c:ai-1", 10.0)
    with pytest.raises(NoCapacity) as exc:
        sched.select("a", 1, "intelligent", 5.0, policy="cats")
    status = {c["site"]: c["status"] for c in exc.value.candidates}
    assert status == {"cs:b:ai-1": "stale", "cs:d:ai-1": "unhealthy", "cs:c:ai-1": "full"}
    assert "stale metrics" in exc.value.reason and "reports unhealthy" in exc.value.reason
    sched.registry.release(sched.registry.reservations()[0].id)
    report(sched, "cs:c:ai-1", 3.5)                # 2.0 + 3.5 > 5
    with pytest.raises(NoCapacity) as exc:
        sched.select("a", 1, "intelligent", 5.0, policy="cats")
    assert {c["site"]: c["status"] for c in exc.value.candidates}["cs:c:ai-1"] == "over_bound"
    assert "network 2.00 ms + compute 3.50 ms over the bound" in exc.value.reason
    assert set(LOSS_REASONS) >= {"worse", "over_bound", "stale", "unhealthy", "no_capacity"}


def test_a_site_that_never_reported_is_no_cats_candidate_but_serves_the_other_policies() -> None:
    sched = scheduler(small())
    with pytest.raises(NoCapacity):
        sched.select("a", 1, "intelligent", 5.0, policy="cats")
    assert sched.select("a", 1, "intelligent", 5.0, policy="nearest").site.id == "cs:b:ai-1"
    report(sched, "cs:b:ai-1", 0.0, at=-15.0)     # exactly three intervals old: still fresh
    assert sched.select("a", 1, "intelligent", 5.0, policy="cats").site.id == "cs:b:ai-1"
    report(sched, "cs:b:ai-1", 0.0, at=-15.1)
    choice = sched.select("a", 1, "intelligent", 5.0, policy="nearest")
    assert choice.site.id == "cs:d:ai-1"           # stale takes no new clients by default
    assert {r["site"]: r["status"] for r in choice.explain()}["cs:b:ai-1"] == "stale"
    lenient = scheduler(small(), stale_policy="use_last")
    report(lenient, "cs:b:ai-1", 0.0, at=-100.0)
    assert lenient.select("a", 1, "intelligent", 5.0, policy="nearest").site.id == "cs:b:ai-1"
    with pytest.raises(ComputeSiteError):
        scheduler(small(), stale_policy="maybe")


def test_least_loaded_counts_a_sites_reported_utilisation() -> None:
    sched = scheduler(small())
    one = to_micro(1.0)  # one GPU, in micro-units
    # by reservations alone: c has 90 % free after the demand, d 75 %, b 50 %
    assert sched.select("a", one, "intelligent", 100.0, policy="least-loaded").site.id \
        == "cs:c:ai-1"
    report(sched, "cs:c:ai-1", 1.0, utilisation=0.95)    # c says it is nearly busy
    choice = sched.select("a", one, "intelligent", 100.0, policy="least-loaded")
    assert choice.site.id == "cs:d:ai-1"
    rows = {r["site"]: r for r in choice.explain()}
    assert rows["cs:c:ai-1"]["status"] == "worse"
    assert rows["cs:c:ai-1"]["score"] == pytest.approx(-0.05)
    report(sched, "cs:c:ai-1", 1.0, utilisation=0.05)    # less busy than promised: reservations
    assert sched.select("a", one, "intelligent", 100.0, policy="least-loaded").site.id \
        == "cs:c:ai-1"


def test_placement_answers_carry_the_explanation() -> None:
    sched = scheduler(small())
    report(sched, "cs:b:ai-1", 0.2)
    report(sched, "cs:d:ai-1", 0.0)
    p = sched.place("h-a", 1.0, "intelligent", max_latency_ms=5.0, policy="cats")
    assert p.site_id == "cs:b:ai-1" and p.policy == "cats"
    assert [r["status"] for r in sched.explained[p.id]][:2] == ["chosen", "worse"]
    sched.release(p.id)
    assert p.id not in sched.explained


# --- dampening -----------------------------------------------------------------------------------

def test_gain_must_meet_both_thresholds() -> None:
    d = Dampener(Dampening(gain_ms=2.0, gain_pct=20.0, hold_s=0.0))
    assert d.gain_ok(10.0, 7.9)                    # 2.1 ms, 21 %
    assert not d.gain_ok(10.0, 8.5)                # 1.5 ms
    assert not d.gain_ok(100.0, 95.0)              # 5 ms but 5 %
    assert not d.gain_ok(5.0, 5.0) and not d.gain_ok(5.0, 6.0)
    assert d.gain_ok(0.0, -3.0)
    for bad in (dict(gain_ms=-1.0), dict(hold_s=math.nan), dict(max_moves=-1),
                dict(max_moves=1.5), dict(interval_s=math.inf)):
        with pytest.raises(ComputeSiteError):
            Dampening(**bad)  # type: ignore[arg-type]


def test_hold_time_budget_and_readiness() -> None:
    d = Dampener(Dampening(gain_ms=1.0, gain_pct=10.0, hold_s=10.0, max_moves=2,
                           interval_s=60.0))
    assert not d.offer("s", "c1", 10.0, 5.0, now=100.0)
    assert not d.offer("s", "c1", 10.0, 5.0, now=109.9)
    assert not d.offer("s", "c1", 10.0, 9.5, now=110.0)   # the gain fell: hold restarts
    assert not d.offer("s", "c1", 10.0, 5.0, now=111.0)
    assert not d.offer("s", "c1", 10.0, 5.0, now=121.0, ready=False)  # busy: waits
    assert d.offer("s", "c1", 10.0, 5.0, now=121.0)
    for c in ("c2", "c3"):
        d.offer("s", c, 10.0, 5.0, now=121.0)
    assert d.offer("s", "c2", 10.0, 5.0, now=131.0)
    assert not d.offer("s", "c3", 10.0, 5.0, now=131.0)   # 2 moves in 60 s: budget spent
    assert d.offer("other", "c3", 10.0, 5.0, now=131.0) is False  # per service: own hold
    assert d.moves_in_window("s", 131.0) == 2
    assert d.offer("s", "c3", 10.0, 5.0, now=181.0)        # the first move left the window
    assert d.holding() == 1                                # only ("other", "c3") waits


# --- anycast: failure moves at once, load moves dampened, busy clients stay ----------------------

CATS = Service("infer", "10.255.0.9", "intelligent", 0.1, 5.0, policy="cats")


def cats_services(config: Dampening) -> tuple[AnycastServices, Scheduler]:
    sched = scheduler(small())
    svc = AnycastServices(sched, Dampener(config))
    svc.add_service(CATS)
    return svc, sched


def test_load_moves_wait_for_gain_hold_and_idleness_failures_do_not() -> None:
    svc, sched = cats_services(Dampening(gain_ms=1.0, gain_pct=20.0, hold_s=10.0))
    for sid in ("cs:b:ai-1", "cs:d:ai-1", "cs:c:ai-1"):
        report(sched, sid, 0.2)
    assert svc.assign("infer", "h-a", now=0.0).site_id == "cs:b:ai-1"  # 0.5 + 0.2
    assert svc.explained[("infer", "h-a")][0]["status"] == "chosen"
    busy = {"h-a"}
    # b gets loaded: 0.5 + 3.0 = 3.5 ms against d 1.0 + 0.2 = 1.2 ms
    for t in (1.0, 5.0, 10.9):
        report(sched, "cs:b:ai-1", 3.0, 0.95, at=t)
        report(sched, "cs:d:ai-1", 0.2, at=t)
        report(sched, "cs:c:ai-1", 0.2, at=t)
        assert svc.rebalance(now=t, ready=lambda s, c: c not in busy) == []
    assert svc.assign("infer", "h-a", now=10.9).site_id == "cs:b:ai-1"  # sticky meanwhile
    assert svc.rebalance(now=11.0, ready=lambda s, c: c not in busy) == []  # busy: stays
    busy.clear()
    [move] = svc.rebalance(now=11.5, ready=lambda s, c: c not in busy)
    assert (move.from_site, move.to_site) == ("cs:b:ai-1", "cs:d:ai-1")
    assert move.reason == "load: 3.50 ms -> 1.20 ms"
    # d's metrics stop: a cats client leaves a stale site at once, no hold
    report(sched, "cs:c:ai-1", 0.2, at=26.0)
    report(sched, "cs:b:ai-1", 3.0, at=26.0)
    [move] = svc.rebalance(now=26.0)            # d's last report is 15.1 s old
    assert (move.from_site, move.to_site) == ("cs:d:ai-1", "cs:c:ai-1")
    assert move.reason == "site cs:d:ai-1 has no fresh metrics"
    # c reports unhealthy: at once as well
    report(sched, "cs:c:ai-1", 0.2, at=27.0, healthy=False)
    [move] = svc.rebalance(now=27.0)
    assert (move.from_site, move.to_site, move.reason) == (
        "cs:c:ai-1", "cs:b:ai-1", "site cs:c:ai-1 reports unhealthy")


def test_a_site_that_comes_back_wins_its_clients_back_under_dampening() -> None:
    topo = small()
    graph, _ = topo.to_graph()
    sched = Scheduler(ComputeRegistry.from_topology(topo), graph, clock=lambda: 0.0)
    svc = AnycastServices(sched, Dampener(Dampening(gain_ms=0.3, gain_pct=10.0, hold_s=5.0)))
    svc.add_service(Service("web", "10.255.0.1", "intelligent", 0.1, 5.0))  # nearest
    svc.add_service(Service("cheap", "10.255.0.2", "intelligent", 0.1, 5.0, policy="cheapest"))
    sched.registry.update_site("cs:b:ai-1", {"state": "down"})
    assert svc.assign("web", "h-a", now=0.0).site_id == "cs:d:ai-1"
    assert svc.assign("cheap", "h-a", now=0.0).site_id == "cs:c:ai-1"
    sched.registry.update_site("cs:b:ai-1", {"state": "up"})
    assert svc.rebalance(now=1.0) == []
    [move] = svc.rebalance(now=6.0)
    assert (move.service, move.from_site, move.to_site) == ("web", "cs:d:ai-1", "cs:b:ai-1")
    assert svc.rebalance(now=20.0) == []   # cheapest: moves only for failure


def oscillate(config: Dampening, minutes: int = 10) -> tuple[int, float]:
    """Site b's compute delay swings around d's every 20 s; moves and mean e2e delay."""
    svc, sched = cats_services(config)
    for sid in ("cs:b:ai-1", "cs:d:ai-1", "cs:c:ai-1"):
        report(sched, sid, 1.0)
    svc.assign("infer", "h-a", now=0.0)
    moves, delays = 0, []
    for step in range(1, minutes * 60 + 1):
        t = float(step)
        report(sched, "cs:b:ai-1", 0.2 if (step // 20) % 2 else 1.6, at=t)
        report(sched, "cs:d:ai-1", 1.0, at=t)
        report(sched, "cs:c:ai-1", 1.0, at=t)
        moves += len(svc.rebalance(now=t))
        a = svc.assignments("infer")[0]
        m = sched.registry.metrics(a.site_id)
        assert m is not None
        delays.append(a.latency_ms + m.compute_delay_ms)
    return moves, sum(delays) / len(delays)


def test_dampening_stops_flapping_around_the_threshold() -> None:
    undamped, mean_undamped = oscillate(NO_DAMPENING)
    damped, mean_damped = oscillate(Dampening(gain_ms=1.0, gain_pct=30.0, hold_s=30.0))
    # undamped: the first look (b 2.1 vs d 2.0 ms) and every one of the 30 swings move it;
    # damped: b -> d gains 0.1 ms (under 1 ms) and d -> b is never held 30 s
    assert (undamped, damped) == (31, 0)
    assert mean_damped <= mean_undamped * 1.1


def test_the_live_explanation_counts_the_clients_own_demand_and_shows_a_held_move() -> None:
    svc, sched = cats_services(Dampening(gain_ms=0.5, gain_pct=10.0, hold_s=60.0))
    sched.registry.update_site("cs:b:ai-1", {"capacity": 0.1})   # room for one client only
    for sid in ("cs:b:ai-1", "cs:d:ai-1", "cs:c:ai-1"):
        report(sched, sid, 0.2)
    assert svc.assign("infer", "h-a", now=0.0).site_id == "cs:b:ai-1"
    rows = {r["site"]: r for r in svc.explain("infer", "h-a", now=0.0)}
    assert rows["cs:b:ai-1"]["status"] == "chosen"   # full, but by this client's own demand
    report(sched, "cs:b:ai-1", 4.0)                   # 4.5 ms: d (1.2 ms) is better now
    assert svc.rebalance(now=1.0) == []               # held for 60 s
    rows = {r["site"]: r for r in svc.explain("infer", "h-a", now=1.0)}
    assert rows["cs:d:ai-1"]["status"] == "chosen" and rows["cs:b:ai-1"]["status"] == "worse"
    assert svc.assignment("infer", "h-a").site_id == "cs:b:ai-1"  # type: ignore[union-attr]
    report(sched, "cs:b:ai-1", 9.9, at=16.0)          # 10.4 ms > 5 ms; d and c go stale
    rows = {r["site"]: r["status"] for r in svc.explain("infer", "h-a", now=16.0)}
    assert rows == {"cs:b:ai-1": "over_bound", "cs:d:ai-1": "stale", "cs:c:ai-1": "stale"}
