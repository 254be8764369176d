"""The soak's pure parts: the seeded schedule, the networkx oracle, the diffs and the slopes
(no switches)."""

from __future__ import annotations

from collections import Counter

import pytest

from controller.lab.soak import (
    EVENT_KINDS,
    FLAP_CHANGES,
    Oracle,
    ResourceSample,
    Schedule,
    diff_flows,
    groups_referenced,
    least_squares_slope,
    parse_groups,
    parse_meters,
    resource_slopes,
    resource_violations,
)
from controller.topology.files import topology_file
from controller.topology.loader import load_topology

NATIONAL = load_topology(topology_file("national"))
DIAMOND = load_topology(topology_file("diamond"))


def test_same_seed_same_events() -> None:
    a = Schedule(NATIONAL, seed=42).take(300)
    b = Schedule(NATIONAL, seed=42).take(300)
    assert a == b
    assert [e.describe(NATIONAL) for e in a] == [e.describe(NATIONAL) for e in b]


def test_cluster_kills_pick_members() -> None:
    """With members, a controller kill names one (drawn from the same generator); the other
    events do not change kind with the member count."""
    events = Schedule(NATIONAL, seed=9, members=3).take(400)
    kills = [e for e in events if e.kind == "controller_kill"]
    assert {e.member for e in kills} == {0, 1, 2}
    assert all(e.member is None for e in Schedule(NATIONAL, seed=9).take(400))
    assert "controller_kill m" in kills[0].describe()


def test_another_seed_other_events() -> None:
    assert Schedule(NATIONAL, seed=1).take(50) != Schedule(NATIONAL, seed=2).take(50)


def test_every_kind_appears_and_weights_steer() -> None:
    events = Schedule(NATIONAL, seed=7).take(2000)
    kinds = Counter(e.kind for e in events)
    assert set(kinds) == set(EVENT_KINDS)
    only = Schedule(NATIONAL, seed=7, weights={"controller_kill": 1.0}).take(50)
    assert {e.kind for e in only} == {"controller_kill"}
    with pytest.raises(ValueError, match="unknown event kinds"):
        Schedule(NATIONAL, seed=1, weights={"meteor": 1.0})
    with pytest.raises(ValueError, match="positive weight"):
        Schedule(NATIONAL, seed=1, weights={k: 0.0 for k in EVENT_KINDS})


def test_links_are_cut_and_restored_consistently() -> None:
    """A link goes down only while up, comes up only while down, at most max_links_down are
    down at once; a flap burst hits an up link and leaves it up."""
    sched = Schedule(NATIONAL, seed=3, max_links_down=3)
    down: set[int] = set()
    for _ in range(1500):
        ev = sched.next_event()
        if ev.kind == "link_down":
            assert ev.link not in down
            down.add(ev.link)  # type: ignore[arg-type]
        elif ev.kind == "link_up":
            assert ev.link in down
            down.discard(ev.link)
        elif ev.kind == "link_flap":
            assert ev.link not in down
            assert ev.changes == FLAP_CHANGES and ev.changes % 2 == 0
        assert len(down) <= 3
        assert set(sched.links_down) == down


def test_writes_are_well_formed() -> None:
    hosts = {h.name for h in NATIONAL.hosts}
    sites = {s.id for s in NATIONAL.compute_sites}
    ops = [op for ev in Schedule(NATIONAL, seed=5).take(500) for op in ev.writes]
    kinds = Counter(op.kind for op in ops)
    assert set(kinds) == {"add", "batch", "delete", "place", "unplace", "site_state"}
    for op in ops:
        bodies = (op.body["intents"] if op.kind == "batch"
                  else [op.body] if op.kind == "add" else [])
        for b in bodies:
            assert b["src"] in hosts and b["dst"] in hosts and b["src"] != b["dst"]
            assert b["max_latency_ms"] > 0
        if op.kind == "site_state":
            assert op.site in sites and op.body["state"] in ("up", "draining", "down")
        if op.kind in ("delete", "unplace"):
            assert 0 <= op.pick < 1
    # some intents reserve bandwidth, some are policed
    adds = [op.body for op in ops if op.kind == "add"]
    assert any(b.get("min_bandwidth_mbps") for b in adds)
    assert any(b.get("police") for b in adds)
    # placements keep their share however many intents the soak holds
    late = Counter(op.kind for ev in Schedule(NATIONAL, seed=5).take(3000)[2000:]
                   for op in ev.writes)
    assert late["place"] + late["unplace"] > 0.15 * sum(late.values())
    assert late["delete"] > 0.2 * sum(late.values())
    # one state write per site and burst, so the burst's end state is defined
    for ev in Schedule(NATIONAL, seed=5).take(500):
        touched = [op.site for op in ev.writes if op.kind == "site_state"]
        assert len(touched) == len(set(touched))


def _found(oracle: Oracle, src: str, dst: str, bound: float) -> tuple[float, float, list[str]]:
    best = oracle.best(src, dst, bound)
    assert isinstance(best, tuple), best
    return best


def test_oracle_least_cost_within_the_bound() -> None:
    up = [True] * len(DIAMOND.links)
    oracle = Oracle(DIAMOND, up)
    cost, latency, path = _found(oracle, "s1", "s4", 15.0)
    assert (path, cost, latency) == (["s1", "s3", "s4"], 2.0, 10.0)
    cost, latency, path = _found(oracle, "s1", "s4", 3.0)
    assert (path, cost, latency) == (["s1", "s2", "s4"], 20.0, 2.0)
    assert oracle.best("s1", "s4", 1.0) is None
    # the fast path's s2-s4 link down: the tight bound has no path left
    down = Oracle(DIAMOND, [True, False, True, True])
    assert down.best("s1", "s4", 3.0) is None
    assert down.path_cost_latency(["s1", "s2", "s4"]) is None


def test_oracle_residual_capacity_per_direction() -> None:
    up = [True] * len(DIAMOND.links)
    # the cheap path's s1-s3 nearly full from s1 to s3, free the other way
    residual = [(1000.0, 1000.0), (1000.0, 1000.0), (100.0, 1000.0), (1000.0, 1000.0)]
    oracle = Oracle(DIAMOND, up, residual, min_bandwidth_mbps=500.0)
    assert _found(oracle, "s1", "s4", 15.0)[2] == ["s1", "s2", "s4"]
    assert _found(oracle, "s4", "s1", 15.0)[2] == ["s4", "s3", "s1"]
    full = [(400.0, 400.0)] * 4
    assert Oracle(DIAMOND, up, full, min_bandwidth_mbps=500.0).best("s1", "s4", 15.0) is None


def test_diff_flows_names_missing_and_stray() -> None:
    a = {"table_id": 0, "priority": 10, "cookie": "0x1", "match": {"in_port": 1},
         "instructions": [], "packets": 5}
    b = {**a, "cookie": "0xdead", "packets": 0}
    assert diff_flows([a], [{**a, "packets": 0}]) == ""  # counters do not count
    d = diff_flows([a, b], [a])
    assert d.startswith("+ stray") and "0xdead" in d
    d = diff_flows([], [a])
    assert d.startswith("- missing") and "0x1" in d


def test_parse_meters_and_groups() -> None:
    meters = ("OFPST_METER_CONFIG reply (OF1.3) (xid=0x2):\nmeter=5 kbps bands=\n"
              "type=drop rate=150000\nmeter=9 kbps bands=\ntype=drop rate=1000\n")
    assert parse_meters(meters) == {5: 150000, 9: 1000}
    groups = ("OFPST_GROUP_DESC reply (OF1.3) (xid=0x2):\n group_id=5,type=ff,"
              "bucket=watch_port:2,actions=output:2\n")
    assert parse_groups(groups) == {5}
    flows = [{"instructions": [{"type": "apply_actions",
                                "actions": [{"type": "group", "group_id": 7}]}]}]
    assert groups_referenced(flows) == {7}
    # the API's form: instructions of [action, argument] pairs
    api = [{"instructions": [{"type": "apply", "value": [["set_field", ["eth_dst", "x"]],
                                                        ["group", 5]]}]}]
    assert groups_referenced(api) == {5}
    assert groups_referenced([{"instructions": [{"type": "group", "value": 9}]}]) == {9}


def test_slopes_and_growth_threshold() -> None:
    assert least_squares_slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    assert least_squares_slope([(0, 1)]) == 0.0
    # 1 MB per minute after warm-up: 60 MB/h, under the 64 MB/h threshold
    flat = [ResourceSample(t, 1, 100 + t / 60, 20, 30) for t in range(0, 1800, 60)]
    slopes = resource_slopes(flat, warmup_s=120)
    assert slopes["rss_mb_per_h"] == pytest.approx(60.0)
    assert resource_violations(slopes) == []
    # 2 MB and 3 threads per minute: both grow without bound
    leak = [ResourceSample(t, 1, 100 + 2 * t / 60, 20 + 3 * t // 60, 30) for t in
            range(0, 1800, 60)]
    found = resource_violations(resource_slopes(leak, warmup_s=120))
    assert {v.message.split()[0] for v in found} == {"rss_mb_per_h", "threads_per_h"}
    # the API's worker pool filling up (17 -> 40 threads) and fluctuating is not growth,
    # whatever its slope
    pool = [ResourceSample(t, 1, 100, min(40, 17 + t // 40) - (t // 60) % 3, 30)
            for t in range(0, 1800, 20)]
    slopes = resource_slopes(pool, warmup_s=120)
    assert slopes["threads_per_h"] > 20
    assert resource_violations(slopes) == []
    # too short a span is never judged
    assert resource_violations(resource_slopes(leak[:5], warmup_s=0)) == []
    # a restarted controller: the longest-lived process is judged (the latest of equals),
    # the peaks cover every process
    both = leak + [ResourceSample(1800 + t, 2, 80, 20, 30) for t in range(0, 900, 60)]
    judged = resource_slopes(both, warmup_s=0)
    assert judged["pid"] == 1 and judged["rss_mb_per_h"] == pytest.approx(120.0)
    assert judged["processes"] == 2 and judged["rss_mb_max"] == pytest.approx(100 + 2 * 29)
    assert judged["threads_max"] == 20 + 3 * 29 and judged["fds_max"] == 30
    longer = leak[:10] + [ResourceSample(1800 + t, 2, 80, 20, 30) for t in range(0, 900, 60)]
    assert resource_slopes(longer, warmup_s=0)["pid"] == 2
    assert resource_slopes(longer, warmup_s=0)["rss_mb_per_h"] == 0.0
    twins = leak[:10] + [ResourceSample(1800 + t, 2, 80, 20, 30) for t in range(0, 600, 60)]
    assert resource_slopes(twins, warmup_s=0)["pid"] == 2
