"""Measured link load from port statistics (NetworkState.port_counters)."""

from __future__ import annotations

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


def test_link_delay_from_lldp_transit_minus_control_rtts_and_the_high_delay_event() -> None:
    from controller.network import openflow

    t = load_topology(topology_file("diamond"))  # link 0 s1-s2: configured 1 ms
    st = NetworkState(t, startup_grace_s=0.0)
    w = st.wiring
    s1, s2 = w.node_dpid["s1"], w.node_dpid["s2"]
    p1, p2 = w.link_ports[0]
    st.echo_rtt(s1, 0.002)
    st.echo_rtt(s2, 0.004)
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
