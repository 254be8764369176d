"""External link measurements, the delay that counts, SLA monitoring with a fake clock, and
the route an intent takes on measured delays against a networkx brute-force oracle."""

from __future__ import annotations

import math
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import BadRequest, NotFound
from controller.network.core import ControllerCore
from controller.network.measure import (
    DirectionMeasurement,
    effective_delay_ms,
    parse_measurements,
)
from controller.network.sla import SLA_VIOLATIONS, SlaMonitor, SlaSample
from controller.topology.loader import parse_topology
from controller.topology.model import IntentSpec, Topology

# -- measurements ---------------------------------------------------------------------------


def test_a_report_per_direction_is_kept_and_nonsense_is_refused_naming_the_field() -> None:
    got = parse_measurements({"a_to_b": {"delay_ms": 4.5, "loss": 0.01},
                              "b_to_a": {"delay_ms": 3}}, now=7.0)
    assert got == {"a_to_b": DirectionMeasurement(4.5, 0.01, 7.0),
                   "b_to_a": DirectionMeasurement(3.0, None, 7.0)}
    for body, field in [({"a_to_b": {"delay_ms": -1}}, "a_to_b.delay_ms"),
                        ({"a_to_b": {"delay_ms": math.nan}}, "a_to_b.delay_ms"),
                        ({"b_to_a": {"delay_ms": "5"}}, "b_to_a.delay_ms"),
                        ({"a_to_b": {"delay_ms": 1, "loss": 1.5}}, "a_to_b.loss"),
                        ({"a_to_b": {"delay_ms": 1, "jitter": 1}}, "jitter"),
                        ({"sideways": {"delay_ms": 1}}, "sideways"),
                        ({}, "a_to_b"), ([1], "a_to_b"), ({"a_to_b": 3}, "a_to_b")]:
        with pytest.raises(BadRequest, match=field):
            parse_measurements(body, 0.0)


def test_which_delay_counts_by_source_and_age() -> None:
    ext = DirectionMeasurement(8.0, 0.0, at=100.0)
    assert effective_delay_ms("external", 2.0, ext, 110.0, 30.0) == (8.0, "external")
    assert effective_delay_ms("external", 2.0, ext, 131.0, 30.0) == (2.0, "lldp")  # too old
    assert effective_delay_ms("external", None, None, 0.0, 30.0) == (None, None)
    assert effective_delay_ms("lldp", 2.0, ext, 110.0, 30.0) == (2.0, "lldp")
    assert effective_delay_ms("max", 2.0, ext, 110.0, 30.0) == (8.0, "external")
    assert effective_delay_ms("max", 9.0, ext, 110.0, 30.0) == (9.0, "lldp")
    assert effective_delay_ms("max", None, ext, 110.0, 30.0) == (8.0, "external")


def test_the_state_keeps_measurements_per_direction_and_sums_paths(diamond: Topology) -> None:
    core = ControllerCore(diamond, now=0.0)
    st_ = core.state
    with pytest.raises(NotFound):
        st_.set_link_measurement(99, {"a_to_b": {"delay_ms": 1}}, 0.0)
    view = st_.set_link_measurement(2, {"a_to_b": {"delay_ms": 20.0}}, 1.0)  # s1-s3
    assert view["a_to_b"]["delay_ms"] == 20.0 and view["a_to_b"]["origin"] == "external"
    assert view["b_to_a"] == {"external": None, "delay_ms": None, "origin": None}
    with pytest.raises(BadRequest):
        st_.set_link_measurement(2, {"a_to_b": {"delay_ms": -3}}, 2.0)
    assert st_.link_measurements[2]["a_to_b"].delay_ms == 20.0  # the last good one stays
    cheap = core.intent(2)  # h2 -> h1 over s4-s3-s1: the b_to_a directions, not measured
    assert cheap.path == ("s4", "s3", "s1")
    assert st_.path_measured_ms(cheap.links or (), 1.0) == (10.0, 2)
    forward = [st_.link_ids[2], st_.link_ids[3]]
    assert st_.path_measured_ms(forward, 1.0) == (25.0, 1)


# -- the SLA monitor ------------------------------------------------------------------------


def _round(mon: SlaMonitor, now: float, ms: float, links: tuple[int, ...] = (1, 2),
           bound: float = 10.0) -> list[dict[str, Any]]:
    return mon.sample(now, [SlaSample(7, links, bound, ms, 0)])


def test_violation_after_n_samples_in_a_row_and_restoration_after_n_within() -> None:
    mon = SlaMonitor(samples=3, alpha=1.0, interval_s=1.0)
    before = SLA_VIOLATIONS._value.get()
    assert mon.due(0.0)
    assert _round(mon, 0.0, 12.0) == [] and not mon.due(0.5) and mon.due(1.0)
    assert _round(mon, 1.0, 12.0) == []
    assert _round(mon, 2.0, 9.0) == []  # the streak is broken
    assert _round(mon, 3.0, 12.0) == [] and _round(mon, 4.0, 12.0) == []
    assert _round(mon, 5.0, 12.0) == [{"kind": "sla_violation", "key": 7,
                                       "measured_ms": 12.0, "bound_ms": 10.0}]
    assert mon.violated() == {7} and mon.records[7].as_dict()["state"] == "violated"
    assert SLA_VIOLATIONS._value.get() == before + 1
    assert _round(mon, 6.0, 12.0) == []  # no second event while violated
    assert [_round(mon, t, 8.0) for t in (7.0, 8.0)] == [[], []]
    assert _round(mon, 9.0, 8.0)[0]["kind"] == "sla_restored"
    assert mon.violated() == set()
    mon.sample(10.0, [])
    assert mon.records == {}  # a removed intent is forgotten


def test_the_ewma_smooths_one_spike_away() -> None:
    smoothed = SlaMonitor(samples=1, alpha=0.3, interval_s=1.0)
    assert [_round(smoothed, float(t), ms) for t, ms in enumerate([5, 20, 5])] == [[]] * 3
    assert smoothed.records[7].smoothed_ms == pytest.approx(0.3 * 5 + 0.7 * (0.3 * 20
                                                                           + 0.7 * 5))
    raw = SlaMonitor(samples=1, alpha=1.0, interval_s=1.0)
    kinds = [[e["kind"] for e in _round(raw, float(t), ms)] for t, ms in enumerate([5, 20, 5])]
    assert kinds == [[], ["sla_violation"], ["sla_restored"]]


def test_a_new_path_restarts_the_smoothing() -> None:
    mon = SlaMonitor(samples=1, alpha=0.1, interval_s=1.0)
    assert _round(mon, 0.0, 50.0)[0]["kind"] == "sla_violation"
    assert _round(mon, 1.0, 2.0, links=(3, 4))[0]["kind"] == "sla_restored"


def test_sla_interval_zero_never_samples() -> None:
    assert not SlaMonitor(interval_s=0).due(0.0)
    with pytest.raises(ValueError):
        SlaMonitor(samples=0)


def test_the_core_raises_the_event_and_reroutes_onto_measured_delays(diamond: Topology
                                                                     ) -> None:
    core = ControllerCore(diamond, now=0.0, load_intents=False)
    core.sla = SlaMonitor(samples=2, alpha=1.0, interval_s=1.0)
    core.add_intent(IntentSpec("h1", "h2", 12.0, name="watched", sla_reroute=True), 0.0)
    core.add_intent(IntentSpec("h1", "h2", 12.0, name="plain", priority=50), 0.0)
    watched, plain = core.intent(1), core.intent(2)
    assert watched.path == plain.path == ("s1", "s3", "s4")  # cheap, 10 ms configured
    core.state.set_link_measurement(2, {"a_to_b": {"delay_ms": 20.0}}, 0.5)
    assert core.tick(1.0).cause == "tick"
    assert core.intent(1).sla is not None and core.intent(1).sla["state"] == "ok"
    change = core.tick(2.0)
    assert change.cause == "sla reroute"
    kinds = [e["kind"] for e in core.state.events if e["kind"].startswith("sla_")]
    assert kinds == ["sla_violation", "sla_violation"]
    assert core.intent(1).path == ("s1", "s2", "s4")  # 2 ms measured (configured, unmeasured)
    assert core.intent(2).path == ("s1", "s3", "s4")  # no sla_reroute: stays, violated
    assert core.intent(2).sla is not None and core.intent(2).sla["state"] == "violated"
    core.tick(3.0)
    core.tick(4.0)
    assert [e["intent"] for e in core.state.events if e["kind"] == "sla_restored"] == [1]
    assert core.intent(1).as_dict()["sla"]["state"] == "ok"


# -- the route on measured delays against an oracle -----------------------------------------

MESH = [("s1", "s2"), ("s1", "s3"), ("s2", "s3"), ("s2", "s4"), ("s3", "s4"), ("s3", "s5"),
        ("s4", "s5"), ("s1", "s5")]


def _mesh(costs: list[int]) -> Topology:
    links = "\n".join(f"  - {{a: {a}, b: {b}, latency_ms: 1.0, bandwidth_mbps: 1000, "
                      f"cost: {c}}}" for (a, b), c in zip(MESH, costs, strict=True))
    nodes = "\n".join(f"  - {{name: s{i}}}" for i in range(1, 6))
    return parse_topology(f"name: mesh\nnodes:\n{nodes}\nlinks:\n{links}\nhosts:\n"
                          "  - {name: h1, node: s1}\n  - {name: h5, node: s5}\n")


@settings(max_examples=60, deadline=None)
@given(costs=st.lists(st.integers(1, 9), min_size=len(MESH), max_size=len(MESH)),
       delays=st.lists(st.one_of(st.none(), st.integers(0, 40).map(lambda x: x / 4)),
                       min_size=2 * len(MESH), max_size=2 * len(MESH)),
       bound=st.integers(1, 24).map(lambda x: x / 2))
def test_the_measured_route_is_the_cheapest_path_within_the_bound_on_measured_delays(
        costs: list[int], delays: list[float | None], bound: float) -> None:
    topo = _mesh(costs)
    core = ControllerCore(topo, now=0.0, load_intents=False)
    for i in range(len(MESH)):
        body = {d: {"delay_ms": v} for d, v in (("a_to_b", delays[2 * i]),
                                                 ("b_to_a", delays[2 * i + 1])) if v is not None}
        if body:
            core.state.set_link_measurement(i, body, 0.0)
    core.add_intent(IntentSpec("h1", "h5", bound, sla_reroute=True), 0.0)
    core.router.table.measured_routing.add(1)
    core.router.route_all(0.0, "test")
    # oracle: every simple path s1 -> s5, measured delay per direction (configured 1 ms
    # where none), cheapest within the bound
    g = nx.Graph()
    for i, (a, b) in enumerate(MESH):
        g.add_edge(a, b, i=i)
    best: float | None = None
    for p in nx.all_simple_paths(g, "s1", "s5"):
        ms = cost = 0.0
        for u, v in zip(p, p[1:], strict=False):
            i = g[u][v]["i"]
            d = delays[2 * i + (0 if MESH[i] == (u, v) else 1)]
            ms += 1.0 if d is None else d
            cost += costs[i]
        if ms <= bound + 1e-9 and (best is None or cost < best):
            best = cost
    got = core.intent(1)
    if best is not None:
        assert got.cost == best
        measured, _ = core.state.path_measured_ms(got.links or (), 0.0)
        assert measured <= bound + 1e-9
    else:  # nothing meets the bound on measured delays: routed as any other intent
        plain = core.state.graph.constrained_path("s1", "s5", max_latency_ms=bound)
        assert got.path == (tuple(plain.nodes) if plain is not None else None)


def test_without_sla_reroute_allowed_the_core_reports_and_moves_nothing(diamond: Topology
                                                                      ) -> None:
    core = ControllerCore(diamond, now=0.0, load_intents=False)
    core.sla = SlaMonitor(samples=1, alpha=1.0, interval_s=1.0)
    core.sla_reroute = False  # a cluster member
    core.add_intent(IntentSpec("h1", "h2", 12.0, sla_reroute=True), 0.0)
    core.state.set_link_measurement(2, {"a_to_b": {"delay_ms": 20.0}}, 0.5)
    assert core.tick(1.0).cause == "tick"
    assert core.intent(1).sla is not None and core.intent(1).sla["state"] == "violated"
    assert core.intent(1).path == ("s1", "s3", "s4")


def test_the_web_maps_live_state_carries_each_intents_sla(diamond: Topology) -> None:
    import time

    from controller.api.webmap import live_state
    from controller.network.service import ControllerService

    service = ControllerService(diamond, startup_grace_s=60.0)
    service.configure_measurements(sla_samples=1, sla_ewma_alpha=1.0)
    assert {i["sla"] for i in live_state(service)["intents"]} == {None}  # not sampled yet
    service.set_link_measurement(2, {"a_to_b": {"delay_ms": 20.0}})
    with service.lock:
        service.core.sla_sample(time.monotonic())
    shown = {i["name"]: i for i in live_state(service)["intents"]}
    assert (shown["fast"]["sla"], shown["cheap"]["sla"]) == ("ok", "ok")
    service.set_link_measurement(2, {"b_to_a": {"delay_ms": 20.0}})  # cheap runs s4-s3-s1
    with service.lock:
        service.core.sla_sample(time.monotonic() + 5)
    shown = {i["name"]: i for i in live_state(service)["intents"]}
    assert shown["cheap"]["sla"] == "violated" and shown["cheap"]["measured_ms"] > 15
