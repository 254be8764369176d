"""LLDP probe scheduling (``controller/network/probes.py``): new ports at once, a round spread
over the interval (a switch's ports together), settled links probed less often but within the
LLDP timeout; and the service asks the schedule, so a port that comes back up is probed at
once."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from controller.network.probes import SETTLED_FACTOR, ProbeSchedule
from controller.network.service import ControllerService
from controller.topology.model import Topology


def test_new_ports_are_due_at_once_and_a_round_is_spread() -> None:
    sched = ProbeSchedule(interval_s=2.0, timeout_s=10.0)
    keys = [(d, p) for d in range(1, 41) for p in (1, 2, 3)]
    assert all(sched.due(k, 0.0) for k in keys)
    for k in keys:
        sched.sent(k, 0.0, settled=False)
    assert not any(sched.due(k, 0.1) for k in keys)
    # the next round leaves over [1.5, 2.5) s, not in one burst
    first = [sum(1 for k in keys if sched.due(k, t / 10)) for t in range(14, 26)]
    assert first[0] == 0 and first[-1] == len(keys)
    steps = [b - a for a, b in zip(first, first[1:], strict=False)]
    assert max(steps) < len(keys) / 4, steps
    assert all(sched.due(k, 2.5) for k in keys)
    # the ports of one switch are due together (their probes leave in one write)
    for t in range(14, 26):
        for d in range(1, 41):
            assert len({sched.due((d, p), t / 10) for p in (1, 2, 3)}) == 1, (d, t)


def test_settled_links_are_probed_less_often_but_within_the_timeout() -> None:
    sched = ProbeSchedule(interval_s=2.0, timeout_s=10.0)
    assert sched.settled_interval_s == min(2.0 * SETTLED_FACTOR, 10.0 / 2) == 5.0
    sched.sent((1, 1), 0.0, settled=True)
    sched.sent((1, 2), 0.0, settled=False)
    assert not sched.due((1, 1), 2.6) and sched.due((1, 2), 2.6)
    # at most 1.25 x the settled interval: two probes within the timeout
    assert sched.due((1, 1), 6.25) and 2 * 6.25 <= 10.0 + 2.5
    # never below the plain interval, whatever the timeout
    assert ProbeSchedule(interval_s=2.0, timeout_s=3.0).settled_interval_s == 2.0
    sched.forget([(1, 1)])
    assert sched.due((1, 1), 0.1)


def _connected(topology: Topology, **kw: Any) -> tuple[ControllerService,
                                                      set[tuple[int, int]]]:
    """A service with every switch of ``topology`` connected, and its link ports."""
    service = ControllerService(topology, startup_grace_s=0.0, port_stats_interval_s=0.0,
                                gc_reclaim_interval_s=0.0, **kw)
    wiring = service.wiring
    for dpid in sorted(wiring.dpid_node):
        assert service.switch_connected(dpid, dict.fromkeys(wiring.ports_of(dpid), True),
                                        dpid)
    return service, {(d, p) for d in wiring.dpid_node for p in wiring.ports_of(d)
                     if wiring.link_peer(d, p) is not None}


def test_the_service_probes_new_ports_at_once_and_a_port_back_up_again(
        diamond: Topology) -> None:
    service, link_ports = _connected(diamond)
    first = service.lldp_due()
    assert len(first) == len(link_ports)  # every link port, no host port
    assert service.lldp_due() == []  # not again before its time
    dpid, port_no = sorted(link_ports)[0]
    service.port_status(dpid, port_no, False, dpid)
    assert service.lldp_due() == []
    service.port_status(dpid, port_no, True, dpid)
    (again,) = service.lldp_due()  # back up: probed at once
    assert again[0] == dpid and again[1].actions[0].port == port_no


class _Stats:
    """A port-stats reply answered at once; switch 1's link ports carry traffic, the others'
    do not."""

    error = None

    def __init__(self, dpid: int, t: float, ports: list[int]) -> None:
        rate = 10_000_000 if dpid == 1 else 0  # bytes/s
        self.parts = [SimpleNamespace(
            port_no=p, tx_bytes=int(rate * t), rx_bytes=0, tx_packets=0, rx_packets=0,
            tx_dropped=0, rx_dropped=0, tx_errors=0, rx_errors=0,
            duration_sec=int(t), duration_nsec=int((t % 1) * 1e9)) for p in ports]

    def wait(self, timeout: float | None = None) -> bool:
        return True

    def cancel(self) -> None:
        pass


class _Polled:
    def __init__(self, service: ControllerService) -> None:
        self.service = service
        self.requests: dict[int, int] = {}
        self.t0 = time.monotonic()

    def request(self, handle: Any, msg: Any) -> _Stats:
        dpid = int(handle)
        self.requests[dpid] = self.requests.get(dpid, 0) + 1
        return _Stats(dpid, 1 + time.monotonic() - self.t0,
                      list(self.service.wiring.ports_of(dpid)))

    def send(self, handle: Any, msgs: Any) -> None:
        return None

    def alive(self, handle: Any) -> bool:
        return True


def test_idle_switches_are_polled_for_port_statistics_less_often(diamond: Topology) -> None:
    service = ControllerService(diamond, startup_grace_s=0.0, port_stats_interval_s=0.05,
                                gc_reclaim_interval_s=0.0)
    transport = _Polled(service)
    for dpid in sorted(service.wiring.dpid_node):
        service.switch_connected(dpid, dict.fromkeys(service.wiring.ports_of(dpid), True), dpid)
    service.start(transport)
    try:
        deadline = time.monotonic() + 10
        while transport.requests.get(1, 0) < 24 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        service.stop()
    busy, idle = transport.requests[1], max(transport.requests[d] for d in (2, 3, 4))
    assert busy >= 24 and idle <= busy / 2, transport.requests
    with service.lock:  # the statistics reached the state: s1's links carry its traffic
        assert any((service.core.state.link_load(i) or {}).get("utilisation")
                   for i in range(len(diamond.links)))


def test_the_budget_lets_out_max_pps_the_most_overdue_first_and_stretches_the_round() -> None:
    sched = ProbeSchedule(interval_s=2.0, timeout_s=10.0, max_pps=100.0)
    keys = [(d, p) for d in range(1, 601) for p in (1, 2, 3)]  # 1,800 link ends
    sched.size(len(keys))
    assert sched.settled_interval_s == pytest.approx(18.0)  # a round at 100/s
    assert sched.timeout_s == pytest.approx(45.0)
    # every port is new and due: one second's worth leaves at once, then 10 per 100 ms
    sent_at: dict[tuple[int, int], float] = {}
    for tick in range(200):  # 20 s of the service's 100 ms checks
        now = tick / 10
        waiting = [k for k in keys if sched.due(k, now)]
        allowed = sched.budget(now)
        chosen = sorted(waiting, key=sched.overdue)[:allowed]
        sched.spend(len(chosen))
        for k in chosen:
            sched.sent(k, now, settled=True)
            sent_at.setdefault(k, now)
        assert len(chosen) <= (100 if tick == 0 else 10) + 1, (tick, len(chosen))
    assert len(sent_at) == len(keys)  # none starves: all probed once within the round
    assert max(sent_at.values()) <= 18.0 + 1.0
    # below the budget nothing changes
    small = ProbeSchedule(interval_s=2.0, timeout_s=10.0, max_pps=100.0)
    small.size(140)
    assert (small.settled_interval_s, small.timeout_s) == (5.0, 10.0)
    assert ProbeSchedule(2.0, 10.0).budget(0.0) >= 1 << 20  # no budget: unlimited


def test_the_service_sends_no_more_than_the_budget_and_every_port_in_turn(
        diamond: Topology) -> None:
    service, link_ports = _connected(diamond, lldp_max_pps=4.0)
    seen: set[tuple[int, int]] = set()
    counts = []
    t0 = time.monotonic()
    while len(seen) < len(link_ports) and time.monotonic() - t0 < 10:
        probes = service.lldp_due()
        counts.append(len(probes))
        seen |= {(h, m.actions[0].port) for h, m in probes}
        time.sleep(0.1)
    assert seen == link_ports
    assert counts[0] == 4 and max(counts[1:]) <= 1, counts  # 4 a second, burst of one second
    # 8 link ends at 4/s is a 2 s round, within the settled interval: the timeout stays
    assert service.core.state.lldp_timeout_s == 10.0
