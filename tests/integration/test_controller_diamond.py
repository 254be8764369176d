"""The controller on real Open vSwitch (Mininet, userspace datapath): the diamond lab.

s1 reaches s4 over s2 (2 ms, expensive) or s3 (10 ms, cheap). The file's intents: ``fast``
h1 -> h2 within 3 ms (only s1-s2-s4 qualifies) and ``cheap`` h2 -> h1 within 15 ms (the
least-cost path s4-s3-s1). Where traffic goes is read from the flow packet counters of the
intent's cookie (its ingress flow) and its tunnel's cookie (the label-switched rest of its
path) on every switch. The controller runs as a subprocess so it can be killed.

One network for the whole module (bring-up is the slow part); the tests run in file order and
each leaves the network as it found it (links up, controller running).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from harness import (
    DIAMOND,
    ControllerProcess,
    assert_lab_ports_match_wiring,
    by_cookie,
    counter_delta,
    destination_cookie,
    fast_ping,
    flows_of,
    intent_cookie,
    packets_by_cookie,
    ping_result,
    route_cookies,
    settled_counters,
    start_lab,
    table_signature,
)
from waiting import wait_until

from controller.lab.network import LabNetwork
from controller.lab.ovs import run_command
from controller.network.flows import make_cookie
from controller.topology.loader import load_topology

TOPOLOGY = DIAMOND
FAST, CHEAP = 1, 2  # intent ids: file order
NODES = ("s1", "s2", "s3", "s4")


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    ctl = ControllerProcess(TOPOLOGY, tmp_path_factory.mktemp("ctl"), startup_grace_s=5.0)
    ctl.start()
    yield ctl
    ctl.stop()


@pytest.fixture(scope="module")
def lab(lab_env: object, controller: ControllerProcess) -> Iterator[LabNetwork]:
    topo = load_topology(TOPOLOGY)
    assert_lab_ports_match_wiring(topo)
    net, _ = start_lab(lab_env, topo, controller, timeout_s=60)
    try:
        yield net
    finally:
        net.stop()


def _installed(intent: dict[str, Any]) -> bool:
    return bool(intent["state"] == "installed")


def _traffic(lab: LabNetwork, cookies: dict[str, int | tuple[int, ...]], count: int = 30
             ) -> dict[str, dict[str, int]]:
    """Ping h1 -> h2 ``count`` times (10 ms apart); per cookie name, the switches whose flows
    with that cookie counted packets, and how many."""
    t0 = settled_counters(lab)
    sent, received, out = ping_result(fast_ping(lab, "h1", "h2", count), timeout_s=20)
    assert received == sent == count, out
    t1 = settled_counters(lab)
    return {k: counter_delta(by_cookie(t0, c), by_cookie(t1, c)) for k, c in cookies.items()}


def test_hosts_reach_each_other_and_intents_install(lab: LabNetwork,
                                                    controller: ControllerProcess) -> None:
    controller.wait_synced(len(NODES), 15)
    lab.wait_until_reachable("h1", "h2", timeout_s=15)
    matrix = lab.ping_matrix(count=3)
    assert matrix.failed == [], matrix.summary_table(lab.plan)
    fast = controller.wait_intent("fast", lambda i: i["state"] == "installed")
    cheap = controller.wait_intent("cheap", lambda i: i["state"] == "installed")
    assert fast["path"] == ["s1", "s2", "s4"] and fast["latency_ms"] == pytest.approx(2.0)
    assert cheap["path"] == ["s4", "s3", "s1"] and cheap["latency_ms"] == pytest.approx(10.0)
    # every flow on the switches carries one of our cookies, and the intents' flows sit on
    # exactly their paths: their own at the ingress, their tunnel's on the rest
    for node in NODES:
        flows = flows_of(lab, node)
        assert flows and all(f.cookie >> 56 in (1, 2, 3, 5) for f in flows), flows
    assert set(packets_by_cookie(lab, intent_cookie(FAST))) == {"s1"}
    assert set(packets_by_cookie(lab, route_cookies(fast))) == {"s1", "s2", "s4"}
    assert set(packets_by_cookie(lab, intent_cookie(CHEAP))) == {"s4"}
    assert set(packets_by_cookie(lab, route_cookies(cheap))) == {"s4", "s3", "s1"}
    # the tunnels forward by label, swapping it at each switch, and the last switch pops it
    _, seg2, seg4 = route_cookies(fast)
    at_s2, at_s4 = fast["mpls_labels"]
    s2 = [f for f in flows_of(lab, "s2") if f.cookie == seg2]
    assert len(s2) == 1 and f"mpls_label={at_s2}" in s2[0].match, s2
    # (ovs-ofctl shows the swap as a set-field; older versions as set_mpls_label)
    assert re.search(rf"set_field:{at_s4}->mpls_label|set_mpls_label\({at_s4}\)",
                     s2[0].actions), s2
    s4 = [f for f in flows_of(lab, "s4") if f.cookie == seg4]
    assert len(s4) == 1 and f"mpls_label={at_s4}" in s4[0].match, s4
    assert "pop_mpls:0x0800" in s4[0].actions, s4


def test_lldp_confirms_every_link_of_the_file(controller: ControllerProcess) -> None:
    report = controller.wait_links_verified(4, timeout_s=15)
    assert report["missing"] == [] and report["unexpected"] == []
    assert sorted((v["a"], v["b"]) for v in report["verified"]) == [
        ("s1", "s2"), ("s1", "s3"), ("s2", "s4"), ("s3", "s4")]


def test_traffic_follows_the_intents(lab: LabNetwork, controller: ControllerProcess) -> None:
    moved = _traffic(lab, {"fast": route_cookies(controller.wait_intent("fast", _installed)),
                           "cheap": route_cookies(controller.wait_intent("cheap", _installed))})
    # requests h1 -> h2 on the fast path, replies h2 -> h1 on the cheap one; 30 each
    assert moved["fast"] == {"s1": 30, "s2": 30, "s4": 30}, moved
    assert moved["cheap"] == {"s4": 30, "s3": 30, "s1": 30}, moved


def test_full_size_packets_cross_the_tunnels(lab: LabNetwork,
                                             controller: ControllerProcess) -> None:
    """A 1500-byte IP packet (ping -s 1472, don't fragment) carries a 4-byte MPLS label
    across the backbone: the lab's switch-to-switch MTU leaves room, and the tunnels' last
    switch pops the label before the host (whose MTU stays 1500)."""
    fast = route_cookies(controller.wait_intent("fast", _installed))
    cheap = route_cookies(controller.wait_intent("cheap", _installed))
    t0 = settled_counters(lab)
    ip = lab.topology.host("h2").ip
    out = lab.host("h1").cmd(f"ping -n -q -c 5 -i 0.05 -W 1 -M do -s 1472 {ip}")
    t1 = settled_counters(lab)
    assert " 0% packet loss" in out, out
    # requests on the fast intent's tunnel, replies on the cheap one's
    assert counter_delta(by_cookie(t0, fast), by_cookie(t1, fast)) == \
        {"s1": 5, "s2": 5, "s4": 5}
    assert counter_delta(by_cookie(t0, cheap), by_cookie(t1, cheap)) == \
        {"s4": 5, "s3": 5, "s1": 5}


def test_link_cut_moves_traffic_and_back(lab: LabNetwork,
                                         controller: ControllerProcess) -> None:
    h2_ip = lab.topology.host("h2").ip
    cookies = {"fast": intent_cookie(FAST), "to_h2": destination_cookie(h2_ip)}
    lab.link_down("s2", "s4")
    try:
        fast = controller.wait_intent("fast", lambda i: i["state"] in ("degraded",
                                                                       "infeasible"))
        assert fast["state"] == "degraded"  # it was installed before
        assert "3.0" in fast["reason"] and "10.00" in fast["reason"], fast["reason"]
        # best effort: the intent keeps one flow, at its ingress s1, handing traffic to the
        # destination table, which now reaches h2 over s3
        wait_until(lambda: set(packets_by_cookie(lab, intent_cookie(FAST))) == {"s1"}, 10,
                   "the fast intent reduced to its ingress flow",
                   detail=lambda: str(packets_by_cookie(lab, intent_cookie(FAST))))
        moved = _traffic(lab, cookies)
        assert moved["fast"] == {"s1": 30}, moved
        assert moved["to_h2"] == {"s1": 30, "s3": 30, "s4": 30}, moved
    finally:
        lab.link_up("s2", "s4")
    fast = controller.wait_intent("fast", lambda i: i["state"] == "installed")
    assert fast["path"] == ["s1", "s2", "s4"]
    causes = [h["cause"] for h in fast["history"]]
    assert any("down" in c for c in causes) and any("up" in c for c in causes), causes
    route = route_cookies(fast)
    wait_until(lambda: set(packets_by_cookie(lab, route)) == {"s1", "s2", "s4"}, 10,
               "the fast intent's flows back on s1-s2-s4")
    moved = _traffic(lab, {**cookies, "fast": route})
    assert moved["fast"] == {"s1": 30, "s2": 30, "s4": 30}, moved
    assert "s3" not in moved["to_h2"], moved


def test_flows_deleted_behind_its_back_are_restored(lab: LabNetwork,
                                                   controller: ControllerProcess) -> None:
    want = table_signature(lab, "s2")
    route = route_cookies(controller.wait_intent("fast", _installed))
    assert any(c == route[1] for c, *_ in want)  # s2 forwards the fast intent's tunnel
    t_del = time.monotonic()
    res = run_command(["ovs-ofctl", "-O", "OpenFlow13", "del-flows", lab.plan.switch("s2")])
    assert res.returncode == 0, res.stderr
    wait_until(lambda: table_signature(lab, "s2") == want, 10, "s2's flow table restored",
               detail=lambda: str(table_signature(lab, "s2")))
    # they really were deleted and put back: every flow is younger than the del-flows
    age_s = time.monotonic() - t_del
    assert all(f.duration_s <= age_s + 0.1 for f in flows_of(lab, "s2"))
    assert "switch 0x2: " in controller.log_text() and "removed behind our back" in \
        controller.log_text()
    moved = _traffic(lab, {"fast": route})
    assert moved["fast"] == {"s1": 30, "s2": 30, "s4": 30}, moved


def test_switch_restart_is_reconciled(lab: LabNetwork, controller: ControllerProcess) -> None:
    want = table_signature(lab, "s4")
    lab.restart_switch("s4", timeout_s=20)  # del-br and re-add: an empty table
    wait_until(lambda: table_signature(lab, "s4") == want, 15, "s4's flow table rebuilt",
               detail=lambda: str(table_signature(lab, "s4")))
    lab.wait_until_reachable("h1", "h2", timeout_s=10)
    last = [ln for ln in controller.log_text().splitlines() if "switch 0x4 reconciled:" in ln]
    assert last and f"{len(want)} added, 0 deleted" in last[-1], last


def test_controller_kill_and_restart_loses_no_ping(lab: LabNetwork,
                                                   controller: ControllerProcess) -> None:
    before = {n: table_signature(lab, n) for n in NODES}
    pipeline = make_cookie(1, 4)
    assert all(any(c == pipeline for c, *_ in before[n]) for n in NODES)
    h2 = lab.host("h2")
    rx_path = f"/sys/class/net/{h2.defaultIntf()}/statistics/rx_packets"
    rx0 = int(h2.cmd(f"cat {rx_path}"))
    ping = fast_ping(lab, "h1", "h2", count=400)  # 4 s at 10 ms
    wait_until(lambda: int(h2.cmd(f"cat {rx_path}")) >= rx0 + 20, 5, "the ping under way",
               poll_s=0.05)
    t_kill = time.monotonic()
    controller.kill()
    time.sleep(1.0)  # the scenario: the switches run on their own for a second
    # the switches keep forwarding (fail_mode=secure keeps flows) with no controller
    controller.start()
    lab.wait_until_connected(timeout_s=20)
    sent, received, out = ping_result(ping, timeout_s=30)
    assert sent == 400 and received == 400, out
    controller.wait_synced(len(NODES), 15, "every switch after the restart")
    after = {n: table_signature(lab, n) for n in NODES}
    assert after == before
    # no churn: every flow is older than the restart (an ADD would reset its duration)
    age_s = time.monotonic() - t_kill
    for n in NODES:
        young = [f for f in flows_of(lab, n) if f.duration_s < age_s - 0.5]
        assert not young, (n, young)
    log = controller.log_text().split("===== start 2 =====")[1]
    for dpid in (1, 2, 3, 4):
        assert f"switch {dpid:#x} reconciled: " in log and \
            f"switch {dpid:#x} reconciled: 0 flows read" not in log
    reconciled = [ln for ln in log.splitlines() if "reconciled:" in ln]
    assert len(reconciled) >= len(NODES)
    assert all("0 added, 0 deleted" in ln for ln in reconciled), reconciled


def test_fast_intent_still_installed_after_restart(controller: ControllerProcess) -> None:
    fast = controller.wait_intent("fast", lambda i: i["state"] == "installed")
    assert fast["path"] == ["s1", "s2", "s4"]

