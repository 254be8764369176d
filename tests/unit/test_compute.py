"""The compute site registry: CRUD, validation, exact capacity accounting, persistence."""

from __future__ import annotations

import math
import random

import pytest
from compute_oracles import national, nx_graph, nx_latencies, oracle_feasible, small
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.compute.placement import TIERS_MS, Scheduler
from controller.compute.sites import MICRO, ComputeRegistry
from controller.errors import ComputeConflict, ComputeSiteError, CpnError, NoCapacity, NotFound


def reg_small() -> ComputeRegistry:
    return ComputeRegistry.from_topology(small())


def test_from_topology_loads_every_site_of_the_national_model() -> None:
    topo = national()
    reg = ComputeRegistry.from_topology(topo)
    assert len(reg) == len(topo.compute_sites) == 20
    for entry in topo.compute_sites:
        site = reg.site(entry.id)
        assert (site.node, site.kind, site.unit, site.price, site.host) == (
            entry.node, entry.kind, entry.unit, entry.price, entry.host)
        assert site.capacity == entry.capacity
        assert site.free_capacity == entry.capacity
        assert site.state == "up"
    total = sum(s.capacity for s in reg.sites())
    intelligent = sum(s.capacity for s in reg.sites(kind="intelligent"))
    assert math.isclose(total, 230.0) and math.isclose(intelligent, 70.0)


def test_free_capacity_in_the_file_becomes_a_baseline() -> None:
    topo = small()
    reg = ComputeRegistry(topo)
    site = reg.add_site({"id": "cs:a:x", "node": "a", "capacity": 9.8, "free_capacity": 0.2})
    assert site.free_capacity == 0.2 and math.isclose(site.baseline_used, 9.6)
    with pytest.raises(ComputeConflict):
        reg.reserve("cs:a:x", 0.3)
    reg.reserve("cs:a:x", 0.2)
    assert site.free_micro == 0


@pytest.mark.parametrize(("change", "error", "words"), [
    ({"id": "cs:c:ai-1"}, ComputeConflict, "already exists"),
    ({"id": "c:ai-1"}, ComputeSiteError, "cs:<place>:<name>"),
    ({"id": "cs:only"}, ComputeSiteError, "cs:<place>:<name>"),
    ({"id": "cs:a:b c"}, ComputeSiteError, "cs:<place>:<name>"),
    ({"node": "nowhere"}, NotFound, "unknown node 'nowhere'"),
    ({"capacity": -1.0}, ComputeSiteError, "must not be negative"),
    ({"capacity": float("nan")}, ComputeSiteError, "finite"),
    ({"capacity": "ten"}, ComputeSiteError, "must be a number"),
    ({"capacity": None}, ComputeSiteError, "'capacity' is required"),
    ({"kind": "quantum"}, ComputeSiteError, "unknown compute kind"),
    ({"state": "sleeping"}, ComputeSiteError, "unknown site state"),
    ({"price": -0.5}, ComputeSiteError, "price"),
    ({"host": "h-nobody"}, NotFound, "unknown host"),
    ({"host": "h-b"}, ComputeConflict, "attached to 'b'"),
    ({"free_capacity": 11.0}, ComputeConflict, "between 0 and its capacity"),
    ({"colour": "red"}, ComputeSiteError, "unknown compute site field"),
])
def test_add_site_refuses_bad_input_and_changes_nothing(change: dict, error: type,
                                                        words: str) -> None:
    reg = reg_small()
    before = reg.to_dict()
    data = {"id": "cs:a:new", "node": "a", "kind": "hpc", "capacity": 10.0, "host": "h-a",
            **change}
    with pytest.raises(error) as exc:
        reg.add_site(data)
    assert words in str(exc.value)
    assert isinstance(exc.value, CpnError) and exc.value.http_status in (400, 404, 409)
    assert reg.to_dict() == before


def test_update_site_and_its_refusals() -> None:
    reg = reg_small()
    reg.reserve("cs:c:ai-1", 6.0, reservation_id="r1")
    before = reg.to_dict()
    with pytest.raises(ComputeConflict, match=r"below what is in use \(6 GPU: 6 reserved"):
        reg.update_site("cs:c:ai-1", {"capacity": 5.0})
    with pytest.raises(ComputeConflict, match="cannot change kind"):
        reg.update_site("cs:c:ai-1", {"kind": "general"})
    with pytest.raises(ComputeConflict, match="cannot change node"):
        reg.update_site("cs:c:ai-1", {"node": "a", "host": None})
    with pytest.raises(ComputeSiteError, match="cannot update id"):
        reg.update_site("cs:c:ai-1", {"id": "cs:c:other"})
    with pytest.raises(ComputeSiteError, match="must not be negative"):
        reg.update_site("cs:c:ai-1", {"capacity": -3})
    with pytest.raises(ComputeConflict, match="still holds 1 reservation"):
        reg.remove_site("cs:c:ai-1")
    with pytest.raises(NotFound):
        reg.update_site("cs:zz:none", {"price": 1.0})
    assert reg.to_dict() == before
    site = reg.update_site("cs:c:ai-1", {"capacity": 6.0, "price": 0.5})
    assert site.free_capacity == 0.0 and site.price == 0.5
    assert reg.update_site("cs:c:ai-1", {"state": "draining"}).state == "draining"
    reg.release("r1")
    reg.update_site("cs:c:ai-1", {"kind": "general", "node": "a", "host": "h-a"})
    assert reg.remove_site("cs:c:ai-1").id == "cs:c:ai-1"
    assert "cs:c:ai-1" not in reg


def test_reserve_refusals() -> None:
    reg = reg_small()
    with pytest.raises(ComputeSiteError, match="demand must be at least"):
        reg.reserve("cs:c:ai-1", 0.0)
    with pytest.raises(ComputeSiteError, match="demand must be at least"):
        reg.reserve("cs:c:ai-1", 1e-9)
    with pytest.raises(ComputeConflict, match="10 of 10 GPU free, 11 asked"):
        reg.reserve("cs:c:ai-1", 11)
    reg.update_site("cs:d:ai-1", {"state": "down"})
    with pytest.raises(ComputeConflict, match="is down"):
        reg.reserve("cs:d:ai-1", 1)
    reg.reserve("cs:c:ai-1", 1, reservation_id="x")
    with pytest.raises(ComputeConflict, match="already in use"):
        reg.reserve("cs:c:ai-1", 1, reservation_id="x")
    with pytest.raises(NotFound):
        reg.release("nope")


def test_exhaustion_and_release_are_exact() -> None:
    reg = reg_small()
    ids = [reg.reserve("cs:c:ai-1", 0.1).id for _ in range(100)]
    site = reg.site("cs:c:ai-1")
    assert site.free_micro == 0 and site.free_capacity == 0.0
    with pytest.raises(ComputeConflict):
        reg.reserve("cs:c:ai-1", 1e-6)
    random.Random(1).shuffle(ids)
    for rid in ids:
        reg.release(rid)
    assert site.free_capacity == 10.0 and site.reserved_micro == 0 and not site.reservations


def test_round_trip_through_plain_dicts() -> None:
    reg = reg_small()
    reg.reserve("cs:c:ai-1", 2.5, reservation_id="r1")
    reg.reserve("cs:b:ai-1", 1, reservation_id="r2", owner="service:web")
    reg.update_site("cs:b:ai-1", {"state": "draining"})
    data = reg.to_dict()
    again = ComputeRegistry.from_dict(data, small())
    assert again.to_dict() == data
    assert again.site("cs:c:ai-1").free_capacity == 7.5
    assert again.reservation("r2").owner == "service:web"
    bad = {**data, "reservations": data["reservations"] + [
        {"id": "r3", "site_id": "cs:c:ai-1", "amount": 8.0}]}
    with pytest.raises(ComputeConflict, match="over-commit"):
        ComputeRegistry.from_dict(bad, small())


# ---------------------------------------------------------------------------------------------
# Random sequences of place/release on the national model never over-commit, and return free
# capacity exactly to the start. Failures are checked against a networkx oracle: a NoCapacity
# must mean that no site of the kind is up, has the free capacity and lies within the bound.
# ---------------------------------------------------------------------------------------------

_TOPO = national()
_CITIES = [n.name for n in _TOPO.nodes_of_kind("city")]
_NX = nx_graph(_TOPO)
_DIST = {c: nx_latencies(_NX, c) for c in _CITIES}

op = st.one_of(
    st.tuples(st.just("place"), st.sampled_from(_CITIES),
              st.sampled_from(["general", "intelligent", "hpc"]),
              st.integers(1, 8000).map(lambda k: k / 1000),
              st.sampled_from(list(TIERS_MS)),
              st.sampled_from(["nearest", "cheapest", "least-loaded"])),
    st.tuples(st.just("release"), st.integers(0, 10_000)),
    st.tuples(st.just("state"), st.integers(0, 19), st.sampled_from(["up", "draining", "down"])),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, min_size=1, max_size=60))
def test_random_place_release_never_overcommits(ops: list[tuple]) -> None:
    reg = ComputeRegistry.from_topology(_TOPO)
    graph, _ = _TOPO.to_graph()
    sched = Scheduler(reg, graph)
    start = {s.id: (s.free_micro, s.free_capacity) for s in reg.sites()}
    site_ids = list(start)
    live: list[str] = []
    for o in ops:
        if o[0] == "place":
            _, src, kind, demand, tier, policy = o
            snapshot = [{"kind": s.kind, "state": s.state, "free_capacity": s.free_capacity,
                         "node": s.node, "id": s.id} for s in reg.sites()]
            try:
                p = sched.place(src, demand, kind, tier=tier, policy=policy)
            except NoCapacity:
                assert not oracle_feasible(snapshot, _DIST[src], kind, demand, TIERS_MS[tier])
                continue
            live.append(p.id)
            assert p.latency_ms <= TIERS_MS[tier] + 1e-9
        elif o[0] == "release" and live:
            sched.release(live.pop(o[1] % len(live)))
        elif o[0] == "state":
            reg.update_site(site_ids[o[1]], {"state": o[2]})
        for s in reg.sites():
            mine = [p for p in sched.placements() if p.site_id == s.id]
            assert s.reserved_micro == sum(round(p.demand * MICRO) for p in mine)
            assert 0 <= s.free_micro <= s.capacity_micro
    for pid in list(live):
        sched.release(pid)
    assert not sched.placements() and not reg.reservations()
    assert {s.id: (s.free_micro, s.free_capacity) for s in reg.sites()} == start
