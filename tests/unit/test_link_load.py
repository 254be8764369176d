"""Measured link load from port statistics (NetworkState.port_counters)."""

from __future__ import annotations

from typing import Any

import networkx as nx
import pytest

from controller.network.state import LOAD_HISTORY, NetworkState
from controller.topology.files import topology_file
from controller.topology.loader import load_topology


def rows(port_no: int, tx_bytes: int, t_s: float, drops: int = 0) -> list[dict]:
    return [{"port_no": port_no, "tx_bytes": tx_bytes, "tx_dropped": drops,
             "rx_dropped": 0, "duration_s": t_s}]


def test_rate_per_direction_from_tx_bytes_over_the_switch_clock() -> None:
    t = load_topology(topology_file("diamond"))
    st = NetworkState(t)
    w = st.wiring
    s1, s2 = w.node_dpid["s1"], w.node_dpid["s2"]
    p1, p2 = w.link_ports[0]  # link 0: s1-s2
    assert st.port_counters(s1, rows(p1, 1_000_000, 10.0), now=1.0) == 0  # first poll
    assert st.link_load(0) is None
    # 25 MB in 2 s of the switch's clock = 100 Mbit/s from s1 to s2
    assert st.port_counters(s1, rows(p1, 26_000_000, 12.0, drops=3), now=3.0) == 1
    load = st.link_load(0)
    assert load is not None
    assert load["a_to_b_mbps"] == pytest.approx(100.0) and load["b_to_a_mbps"] == 0.0
    assert load["drops"] == 3 and load["utilisation"] == pytest.approx(0.1)
    # the other end measures the other direction
    st.port_counters(s2, rows(p2, 0, 5.0), now=3.5)
    st.port_counters(s2, rows(p2, 1_250_000, 6.0), now=4.5)
    load = st.link_load(0)
    assert load["b_to_a_mbps"] == pytest.approx(10.0)
    assert load["a_to_b_mbps"] == pytest.approx(100.0)
    # other links untouched; host ports and unknown ports ignored
    assert st.link_load(1) is None
    hp = w.host_port["h1"][1]
    assert st.port_counters(s1, rows(hp, 5, 1.0) + rows(99, 5, 1.0), now=5.0) == 0


def test_counter_reset_starts_over_and_history_is_bounded() -> None:
    st = NetworkState(load_topology(topology_file("diamond")))
    s1 = st.wiring.node_dpid["s1"]
    p1 = st.wiring.link_ports[0][0]
    st.port_counters(s1, rows(p1, 10_000, 100.0), now=1.0)
    assert st.port_counters(s1, rows(p1, 500, 1.0), now=2.0) == 0  # switch restarted
    assert st.port_counters(s1, rows(p1, 1_000_500, 2.0), now=3.0) == 1
    assert st.link_load(0)["a_to_b_mbps"] == pytest.approx(8.0)
    for k in range(LOAD_HISTORY + 5):
        st.port_counters(s1, rows(p1, 1_000_500 + k, 3.0 + k), now=4.0 + k)
    assert len(st.link_load_history[0]) == LOAD_HISTORY


def _diamond_link0(echo_rtts: tuple[float, float]
                   ) -> tuple[NetworkState, tuple[int, int], tuple[int, int]]:
    """The diamond's state (link 0 s1-s2: configured 1 ms) with these control round trips of
    s1 and s2; and link 0's ends as (dpid, port)."""
    st = NetworkState(load_topology(topology_file("diamond")), startup_grace_s=0.0)
    w = st.wiring
    s1, s2 = w.node_dpid["s1"], w.node_dpid["s2"]
    p1, p2 = w.link_ports[0]
    st.echo_rtt(s1, echo_rtts[0])
    st.echo_rtt(s2, echo_rtts[1])
    return st, (s1, p1), (s2, p2)


def test_link_delay_from_lldp_transit_minus_control_rtts_and_the_high_delay_event() -> None:
    from controller.network import openflow

    st, (s1, p1), (s2, p2) = _diamond_link0(echo_rtts=(0.002, 0.004))
    w = st.wiring
    # s1 -> s2: 1 ms + 1.2 ms link + 2 ms; s2 -> s1: 2 ms + 1.2 ms + 1 ms (transit 4.2 ms)
    st.lldp_sent[(s1, p1)] = 10.0
    st.lldp_observed(s1, p1, s2, p2, now=10.0042)
    assert 0 not in st.link_delay_ms  # one direction alone says nothing
    st.lldp_sent[(s2, p2)] = 12.0
    st.lldp_observed(s2, p2, s1, p1, now=12.0042)
    assert st.link_delay_ms[0] == pytest.approx(1.2, abs=1e-6)
    assert not [e for e in st.events if e["kind"] == "link_delay_high"]
    # 3.6 ms on a 1 ms link: beyond 1 x 1.5 + 0.5 ms -> one event, until it is normal again
    for k in range(2):
        st.lldp_sent[(s1, p1)] = 20.0 + k
        st.lldp_observed(s1, p1, s2, p2, now=20.0 + k + 0.0090)
    assert st.link_delay_ms[0] == pytest.approx((9.0 + 4.2 - 6.0) / 2, abs=1e-6)
    high = [e for e in st.events if e["kind"] == "link_delay_high"]
    assert len(high) == 1 and high[0]["link"] == 0
    st.lldp_sent[(s1, p1)] = 30.0
    st.lldp_observed(s1, p1, s2, p2, now=30.0042)
    assert [e["kind"] for e in st.events][-1] == "link_delay_normal"
    # a probe that arrives on a port of another link measures nothing
    st.lldp_sent[(s1, w.link_ports[2][0])] = 40.0
    before = dict(st.link_delay_ms)
    st.lldp_observed(s1, w.link_ports[2][0], s2, p2, now=40.5)
    assert st.link_delay_ms == before
    # the echo payload round-trips; anyone else's payload is ignored
    assert openflow.parse_echo(openflow.echo_request(123.25).data) == 123.25
    assert openflow.parse_echo(b"hello") is None and openflow.parse_echo(None) is None


# -- measured admission: reservations against capacity minus best-effort traffic --------------

def set_load(st: NetworkState, index: int, a_to_b: float, b_to_a: float, now: float) -> None:
    """Two polls at both ends of link ``index`` giving it these rates (Mbit/s)."""
    w = st.wiring
    lk = st.topology.links[index]
    for node, port, mbps in ((lk.a, w.link_ports[index][0], a_to_b),
                             (lk.b, w.link_ports[index][1], b_to_a)):
        dpid = w.node_dpid[node]
        prev = st._port_prev.get((dpid, port))
        t0, tx0 = (prev[0], prev[1]) if prev is not None else (now - 1.0, 0)
        if prev is None:
            st.port_counters(dpid, rows(port, 0, t0), now=now - 1.0)
        st.port_counters(dpid, rows(port, tx0 + int(mbps * 1e6 / 8 * 1.0), t0 + 1.0), now=now)


def oracle_paths(topo: Any, src: str, dst: str, bound: float, need: float,
                 residual: dict[tuple[str, str], float]
                 ) -> dict[tuple[str, ...], tuple[float, float, int]]:
    """Every simple path within ``bound`` whose every directed link has ``need`` left, with
    its (cost, latency, hops), by brute force over networkx's simple paths."""
    g = nx.Graph()
    for lk in topo.links:
        g.add_edge(lk.a, lk.b, lat=lk.latency_ms, cost=lk.cost)
    out = {}
    for p in nx.all_simple_paths(g, src, dst):
        hops = list(zip(p, p[1:], strict=False))
        lat = sum(g[a][b]["lat"] for a, b in hops)
        cost = sum(g[a][b]["cost"] for a, b in hops)
        if lat <= bound + 1e-9 and all(residual[h] >= need - 1e-9 for h in hops):
            out[tuple(p)] = (cost, lat, len(hops))
    return out


def test_measured_admission_keeps_reservations_off_links_full_of_best_effort_traffic() -> None:
    from controller.network.core import ControllerCore
    from controller.topology.model import IntentSpec

    t = load_topology(topology_file("diamond"))   # s1-s3-s4 cheap (10 ms), s1-s2-s4 2 ms
    core = ControllerCore(t, now=0.0, load_intents=False)
    st = core.state
    set_load(st, 2, 700.0, 0.0, now=1.0)          # s1 -> s3 carries 700 Mbit/s best effort
    spec = IntentSpec("h1", "h2", 12.0, min_bandwidth_mbps=500.0, name="big")
    first, _ = core.add_intent(spec, 2.0)
    assert core.intent(first.id).path == ("s1", "s3", "s4")   # reserved admission: no load
    core.remove_intent(first.id, 2.5)
    st.bandwidth_admission = "measured"
    big, _ = core.add_intent(spec, 3.0)
    assert core.intent(big.id).path == ("s1", "s2", "s4")     # 300 Mbit/s left on s1 -> s3
    # the other direction of s1-s3 is free: 500 from h2 to h1 takes the cheap path
    back, _ = core.add_intent(IntentSpec("h2", "h1", 12.0, min_bandwidth_mbps=500.0), 3.5)
    assert core.intent(back.id).path == ("s4", "s3", "s1")
    # reserved traffic counts once: intent 3's own 500 Mbit/s measured on s3 -> s1 does not
    # crowd out a second 400 Mbit/s reservation there (1000 - 500 reserved = 500 left)
    set_load(st, 2, 700.0, 500.0, now=4.0)
    set_load(st, 3, 0.0, 500.0, now=4.0)
    more, _ = core.add_intent(IntentSpec("h2", "h1", 12.0, min_bandwidth_mbps=400.0,
                                         priority=50), 4.5)
    assert core.intent(more.id).path == ("s4", "s3", "s1")
    views = {v["index"]: v for v in (lv.as_state() for lv in _link_views(core))}
    assert views[2]["reserved_mbps"] == 0.0 and views[2]["reserved_b_to_a_mbps"] == 900.0
    assert st.best_effort_mbps == {st.link_ids[2]: pytest.approx(700.0)}


def _link_views(core: Any) -> list[Any]:
    from controller.network.service import ControllerService

    svc = ControllerService.__new__(ControllerService)
    svc.core, svc.topology = core, core.state.topology
    return svc._link_views()


@pytest.mark.parametrize("seed", range(40))
def test_measured_admission_matches_a_brute_force_oracle(seed: int) -> None:
    import random

    from controller.network.core import ControllerCore
    from controller.topology.loader import parse_topology
    from controller.topology.model import IntentSpec

    rng = random.Random(seed)
    pairs = [("s1", "s2"), ("s1", "s3"), ("s2", "s3"), ("s2", "s4"), ("s3", "s4"),
             ("s3", "s5"), ("s4", "s5"), ("s1", "s5")]
    links = "\n".join(f"  - {{a: {a}, b: {b}, latency_ms: {rng.randint(1, 5)}, "
                      f"bandwidth_mbps: 1000, cost: {rng.randint(1, 9)}}}" for a, b in pairs)
    nodes = "\n".join(f"  - {{name: s{i}}}" for i in range(1, 6))
    topo = parse_topology(f"name: mesh\nnodes:\n{nodes}\nlinks:\n{links}\nhosts:\n"
                          "  - {name: h1, node: s1}\n  - {name: h5, node: s5}\n")
    core = ControllerCore(topo, now=0.0, load_intents=False)
    core.state.bandwidth_admission = "measured"
    residual: dict[tuple[str, str], float] = {}
    for i, (a, b) in enumerate(pairs):
        ab, ba = rng.choice([0, 300, 600, 900]), rng.choice([0, 300, 600, 900])
        set_load(core.state, i, ab, ba, now=1.0)
        residual[(a, b)], residual[(b, a)] = 1000.0 - ab, 1000.0 - ba
    need, bound = float(rng.choice([100, 200, 500])), float(rng.randint(4, 12))
    added, _ = core.add_intent(IntentSpec("h1", "h5", bound, min_bandwidth_mbps=need), 2.0)
    feasible = oracle_paths(topo, "s1", "s5", bound, need, residual)
    got = core.intent(added.id)
    if not feasible:
        assert got.links is None, got.path
        return
    # least cost, then least latency, then fewest hops (any path tied on all three)
    assert got.path in feasible, (got.path, got.state, got.reason, feasible)
    assert feasible[got.path] == min(feasible.values()), (got.path, feasible)


def test_a_delay_swinging_across_the_threshold_raises_one_pair_of_events_a_minute() -> None:
    """Under a loaded control channel a link's measured delay swings across its threshold
    probe after probe: high, normal, high... The first high and normal are events (and a
    warning); going high again within DELAY_FLAP_S of going normal is not, until a quiet
    minute has passed."""
    from controller.network.state import DELAY_FLAP_S

    st, (s1, p1), (s2, p2) = _diamond_link0(echo_rtts=(0.0, 0.0))

    def probe(now: float, transit_s: float) -> None:
        for (d, p), (dd, pp) in (((s1, p1), (s2, p2)), ((s2, p2), (s1, p1))):
            st.lldp_sent[(d, p)] = now
            st.lldp_observed(d, p, dd, pp, now=now + transit_s)

    for k in range(40):  # 20 swings, one probe pair a second
        probe(10.0 + k, 0.050 if k % 2 == 0 else 0.001)
    kinds = [e["kind"] for e in st.events if e["kind"].startswith("link_delay")]
    assert kinds == ["link_delay_high", "link_delay_normal"]
    assert st.link_delay_ms[0] == pytest.approx(1.0)  # the measurement itself is kept
    # a minute after it last went normal, going high is news again
    probe(49.0 + DELAY_FLAP_S + 1.0, 0.050)
    kinds = [e["kind"] for e in st.events if e["kind"].startswith("link_delay")]
    assert kinds == ["link_delay_high", "link_delay_normal", "link_delay_high"]
