"""A frozen switch does not hold back the rest of the network (real Open vSwitch, Mininet).

s5's control connection runs through a :class:`TcpProxy` the test pauses: s5 is sent an
intent's flows and answers nothing (not its barrier either), and the controller's barrier
bound is long (20 s), so for the whole scenario the controller waits for s5 without giving
up on it. Meanwhile a link elsewhere is cut: the intent crossing it is restored on its new
path (its flows in the tables and counting the test's packets) while s5 is still frozen,
connected and shown as behind by ``GET /api/v1/switches``. A sender that sends Changes one
after the other waits for s5's barrier first (until the bound, or until Open vSwitch drops
the silent connection): the restoration would not happen while s5 is frozen. Then the proxy
resumes: s5 applies what it was sent, answers, and holds exactly the controller's plan.

The lab: h1 on s1 reaches h2 on s4 over s2 (2 ms, cost 2) or s3 (4 ms, cost 10); s5 hangs off
s4 with s6 behind it, h5 on s5 and h6 on s6.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from harness import (
    ControllerProcess,
    by_cookie,
    counter_delta,
    fast_ping,
    flows_of,
    ping_result,
    route_cookies,
    settled_counters,
    start_lab,
)
from tcpproxy import TcpProxy
from waiting import wait_until

from controller.lab.network import LabNetwork
from controller.lab.ovs import run_command
from controller.topology.loader import load_topology

BARRIER_TIMEOUT_S = 30.0
"""longer than the scenario: the controller never gives up on s5 while the test acts"""
ECHO_INTERVAL_S = 15.0
"""the controller's echo requests (3 unanswered end a connection): nor does its echo check"""
INACTIVITY_PROBE_MS = 60_000
"""s5's own probe of the controller connection (Open vSwitch's default, 5 s, drops a silent
controller after about 10 s): nor does s5"""
TOKEN = "frozen-switch-3b9c"
NODES = ("s1", "s2", "s3", "s4", "s5", "s6")
DPID = {n: i for i, n in enumerate(NODES, start=1)}
LINKS = (("s1", "s2", 1.0, 1), ("s2", "s4", 1.0, 1), ("s1", "s3", 2.0, 5),
         ("s3", "s4", 2.0, 5), ("s4", "s5", 1.0, 1), ("s5", "s6", 1.0, 1))
"""(a, b, latency ms, cost), every link 100 Mbps"""
TOPOLOGY: dict[str, Any] = {
    "name": "frozen",
    "nodes": [{"name": n} for n in NODES],
    "links": [{"a": a, "b": b, "latency_ms": ms, "bandwidth_mbps": 100, "cost": cost}
              for a, b, ms, cost in LINKS],
    "hosts": [{"name": h, "node": n} for h, n in
              (("h1", "s1"), ("h2", "s4"), ("h5", "s5"), ("h6", "s6"))],
    "intents": [{"name": "main", "src": "h1", "dst": "h2", "max_latency_ms": 20}],
}


class FrozenController(ControllerProcess):
    """The controller with a long barrier bound and a known write token."""

    def __init__(self, topology_file: Path, workdir: Path) -> None:
        super().__init__(topology_file, workdir, startup_grace_s=3.0)
        self.config = workdir / "controller.yaml"
        self.config.write_text(yaml.safe_dump({
            "openflow": {"barrier_timeout_s": BARRIER_TIMEOUT_S,
                         "echo_interval_s": ECHO_INTERVAL_S},
            "api": {"intent_timeout_s": BARRIER_TIMEOUT_S + 5}}))
        self.token_file = workdir / "token"
        self.token_file.write_text(f"{TOKEN}\n")

    def command(self) -> list[str]:
        return [*super().command(), "--config", str(self.config),
                "--api-token-file", str(self.token_file)]

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"http://127.0.0.1:{self.api_port}/api/v1{path}", params=params,
                      timeout=10.0)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def post_intent(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{self.api_port}/api/v1/intents", json=body,
                          timeout=BARRIER_TIMEOUT_S + 15,
                          headers={"Authorization": f"Bearer {TOKEN}"})

    def switch(self, node: str) -> dict[str, Any]:
        return next(s for s in self.get("/switches") if s["name"] == node)

    def intent(self, name: str) -> dict[str, Any]:
        return next(i for i in self.get("/intents") if i["name"] == name)

    def switch_vs_plan(self, node: str) -> tuple[list[Any], list[Any]]:
        def rows(source: str) -> list[Any]:
            flows = self.get(f"/switches/{DPID[node]:#x}/flows", source=source)["flows"]
            return sorted((f["table_id"], f["priority"], repr(f["match"]),
                           repr(f["instructions"]), f["cookie"]) for f in flows)
        return rows("switch"), rows("controller")


@pytest.fixture(scope="module")
def frozen_lab(lab_env: object, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[FrozenController, LabNetwork]]:
    tmp = tmp_path_factory.mktemp("frozen")
    path = tmp / "frozen.yaml"
    path.write_text(yaml.safe_dump(TOPOLOGY, sort_keys=False))
    ctl = FrozenController(path, tmp)
    ctl.start()
    try:
        net, _ = start_lab(lab_env, load_topology(path), ctl, timeout_s=60)
        try:
            ctl.wait_synced(len(NODES), 30)
            yield ctl, net
        finally:
            net.stop()
    finally:
        print(f"--- controller log (tail) ---\n{ctl.log_tail(60)}")
        ctl.stop()


def _set_controller(lab: LabNetwork, node: str, port: int) -> None:
    res = run_command(["ovs-vsctl", "--timeout=5", "--id=@c", "create", "Controller",
                       f'target="tcp:127.0.0.1:{port}"',
                       f"inactivity_probe={INACTIVITY_PROBE_MS}", "max_backoff=1000", "--",
                       "set", "Bridge",
                       lab.plan.switch(node), "controller=@c"])
    assert res.returncode == 0, res.stderr


def _cookies_on(lab: LabNetwork, node: str) -> set[int]:
    return {f.cookie for f in flows_of(lab, node)}


def test_a_cut_elsewhere_is_restored_while_a_switch_is_frozen(
        frozen_lab: tuple[FrozenController, LabNetwork]) -> None:
    ctl, lab = frozen_lab
    main = wait_until(lambda: (lambda i: i if i["state"] == "installed" else None)(
        ctl.intent("main")), 20, "main installed", ignore=(httpx.HTTPError,))
    assert main["path"] == ["s1", "s2", "s4"], main
    proxy = TcpProxy("127.0.0.1", ctl.port)
    added: list[httpx.Response] = []
    try:
        t = time.monotonic()  # the event log's clock
        _set_controller(lab, "s5", proxy.port)
        wait_until(lambda: proxy.accepted >= 1 and any(
            e["kind"] == "reconciled" and e.get("dpid") == DPID["s5"] and e["time"] >= t
            for e in ctl.get("/events", limit=1000)), 15, "s5 reconciled through the proxy",
            ignore=(httpx.HTTPError,))
        ctl.wait_synced(len(NODES), 15)
        proxy.pause()
        # an intent whose flows s5 must take: s5 is sent them and answers nothing
        adder = threading.Thread(target=lambda: added.append(ctl.post_intent(
            {"name": "far", "src": "h5", "dst": "h6", "max_latency_ms": 10})))
        adder.start()
        wait_until(lambda: ctl.switch("s5")["pending_changes"] >= 1, 10,
                   "s5 behind (sent the intent's flows, not answered)", poll_s=0.05)
        # a cut elsewhere: main is restored onto s1-s3-s4 while s5 is frozen
        lab.link_down("s1", "s2")
        moved = wait_until(
            lambda: (lambda i: i if i["path"] == ["s1", "s3", "s4"] else None)(
                ctl.intent("main")),
            8, "main restored onto s1-s3-s4", poll_s=0.05, ignore=(httpx.HTTPError,))
        route = route_cookies(moved)
        wait_until(lambda: set(route) <= _cookies_on(lab, "s1") | _cookies_on(lab, "s3")
                   | _cookies_on(lab, "s4"), 5, "main's new flows on s1, s3 and s4")
        # ... and still frozen: connected, behind, the intent through it not confirmed
        s5 = ctl.switch("s5")
        assert s5["connected"] and not s5["synced"], s5
        assert s5["pending_changes"] >= 1 and s5["behind_s"] > 0, s5
        assert ctl.intent("far")["state"] == "pending"
        assert adder.is_alive() and proxy.paused
        # the restored path carries traffic: main's flows on s1, s3, s4 count the packets
        before = by_cookie(settled_counters(lab), route)
        sent, received, out = ping_result(fast_ping(lab, "h1", "h2", 20), timeout_s=20)
        assert sent == received == 20, out
        after = by_cookie(settled_counters(lab), route)
        assert {n: d >= 20 for n, d in counter_delta(before, after).items()} == \
            {"s1": True, "s3": True, "s4": True}
        assert proxy.paused  # (the frozen switch never took part)
        # unfrozen: s5 applies what it was sent, answers, and holds the plan
        proxy.resume()
        adder.join(BARRIER_TIMEOUT_S + 20)
        assert added and added[0].status_code == 201, added
        assert added[0].json()["state"] == "installed", added[0].text
        wait_until(lambda: ctl.switch("s5")["synced"], 10, "s5 synced")
        held, plan = ctl.switch_vs_plan("s5")
        assert held == plan and plan
        assert "event=barrier_timeout" not in ctl.log_text()
    finally:
        proxy.resume()
        lab.link_up("s1", "s2")
        _set_controller(lab, "s5", ctl.port)
        proxy.close()
