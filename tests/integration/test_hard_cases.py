"""The hard reroute cases on real Open vSwitch (Mininet, userspace datapath): failures that
land in the middle of the controller's own work.

1. a switch on the new path dies between the phases of a reroute;
2. a switch that was down comes back: the intents it held up are installed without an
   operator;
3. two link cuts 5 ms apart with a bandwidth-reserving intent added between them end where
   the same events applied one by one end, never reserving more than a link has;
4. the controller is SIGKILLed in the middle of a batch's change and restarted on the same
   store: no stray flow, no lost intent, the unacknowledged batch absent as a whole;
5. a switch that stops answering (its control connection through a paused TCP proxy) costs
   one barrier timeout, its intents stay ``pending`` while it lacks their flows, and they
   are installed once it answers again;
6. a switch that refuses a FlowMod (its flow tables capped at what they hold): the intent
   through it stays ``pending`` until the cap is lifted, then is installed.

The lab: h1 on s1 reaches h2 on s4 over s2 (2 ms, cost 2), s3 (4 ms, cost 10) or s5 (8 ms,
cost 20), every link 100 Mbps; h3 hangs off s3, h4 off s2. Timing is made deterministic with
a :class:`TcpProxy` between one switch and the controller (``ovs-vsctl set-controller``):
while it is paused the switch gets nothing of what the controller sends it and answers
nothing, so a change waits on that switch for as long as the test wants (up to the barrier
timeout, 1.5 s here), and the test acts inside that window. One lab and one controller for the
module; each test puts back what it changed (links, switches, proxies, intents it added).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from harness import (
    ControllerProcess,
    by_cookie,
    counter_delta,
    fast_ping,
    flows_of,
    head_cookie,
    intent_cookie,
    ping_result,
    route_cookies,
    start_lab,
    table_signature,
)
from tcpproxy import TcpProxy
from waiting import wait_until, wait_until_stable

from controller.lab.network import LabNetwork
from controller.lab.ovs import run_command
from controller.topology.loader import load_topology

T = TypeVar("T")


def until(predicate: Callable[[], T | None], timeout_s: float, message: str,
          **kwargs: Any) -> T:
    """:func:`wait_until` for a predicate that returns the awaited value or None."""
    value = wait_until(predicate, timeout_s, message, **kwargs)
    assert value is not None
    return value


BARRIER_TIMEOUT_S = 1.5
"""the controller's ``openflow.barrier_timeout_s`` here: the window a paused switch opens"""
NODES = ("s1", "s2", "s3", "s4", "s5")
DPID = {n: i for i, n in enumerate(("s1", "s2", "s3", "s4", "s5"), start=1)}
TOKEN = "hard-cases-7d1e"

TOPOLOGY: dict[str, Any] = {
    "name": "hard",
    "nodes": [{"name": n} for n in NODES],
    "links": [
        {"a": "s1", "b": "s2", "latency_ms": 1.0, "bandwidth_mbps": 100, "cost": 1},
        {"a": "s2", "b": "s4", "latency_ms": 1.0, "bandwidth_mbps": 100, "cost": 1},
        {"a": "s1", "b": "s3", "latency_ms": 2.0, "bandwidth_mbps": 100, "cost": 5},
        {"a": "s3", "b": "s4", "latency_ms": 2.0, "bandwidth_mbps": 100, "cost": 5},
        {"a": "s1", "b": "s5", "latency_ms": 4.0, "bandwidth_mbps": 100, "cost": 10},
        {"a": "s5", "b": "s4", "latency_ms": 4.0, "bandwidth_mbps": 100, "cost": 10},
    ],
    "hosts": [{"name": "h1", "node": "s1"}, {"name": "h2", "node": "s4"},
              {"name": "h3", "node": "s3"}, {"name": "h4", "node": "s2"}],
    "intents": [
        {"name": "main", "src": "h1", "dst": "h2", "max_latency_ms": 20},
        {"name": "back", "src": "h2", "dst": "h1", "max_latency_ms": 20},
        {"name": "h3out", "src": "h3", "dst": "h2", "max_latency_ms": 20},
        {"name": "big", "src": "h1", "dst": "h2", "max_latency_ms": 20,
         "min_bandwidth_mbps": 60, "match": {"ip_proto": 17, "dst_port": 5001}},
    ],
}
FILE_INTENTS = ("main", "back", "h3out", "big")
HOME = {"main": ["s1", "s2", "s4"], "back": ["s4", "s2", "s1"], "h3out": ["s3", "s4"],
        "big": ["s1", "s2", "s4"]}
"""where the file's intents sit with every link and switch up"""


class HardController(ControllerProcess):
    """The controller with a short barrier timeout and a known write token."""

    def __init__(self, topology_file: Path, workdir: Path) -> None:
        super().__init__(topology_file, workdir, startup_grace_s=3.0)
        self.config = workdir / "controller.yaml"
        self.config.write_text(yaml.safe_dump({
            "openflow": {"barrier_timeout_s": BARRIER_TIMEOUT_S},
            "api": {"intent_timeout_s": 6.0}}))
        self.token_file = workdir / "token"
        self.token_file.write_text(f"{TOKEN}\n")

    def command(self) -> list[str]:
        return [*super().command(), "--config", str(self.config),
                "--api-token-file", str(self.token_file)]

    # -- the REST API ----------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1{path}"

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url(path), params=params, timeout=10.0)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def post(self, path: str, body: dict[str, Any], timeout_s: float = 20.0) -> httpx.Response:
        return httpx.post(self.url(path), json=body, timeout=timeout_s,
                          headers={"Authorization": f"Bearer {TOKEN}"})

    def delete(self, path: str) -> httpx.Response:
        return httpx.delete(self.url(path), timeout=20.0,
                            headers={"Authorization": f"Bearer {TOKEN}"})

    def intents_by_name(self) -> dict[str, dict[str, Any]]:
        return {i["name"]: i for i in self.get("/intents")}

    def events(self) -> list[dict[str, Any]]:
        """The controller's event log (the last 1,000 events, oldest first)."""
        return list(self.get("/events", limit=1000))

    def wait_settled(self, timeout_s: float = 20.0) -> dict[str, dict[str, Any]]:
        """The intents once none is pending and two reads 0.5 s apart agree."""
        last: list[Any] = [None]

        def settled() -> dict[str, dict[str, Any]] | None:
            now = self.intents_by_name()
            key = sorted((n, i["state"], tuple(i["path"] or ())) for n, i in now.items())
            if any(i["state"] == "pending" for i in now.values()) or key != last[0]:
                last[0] = key
                return None
            return now

        return until(settled, timeout_s, "the intents settled", poll_s=0.5,
                          ignore=(httpx.HTTPError,),
                          detail=lambda: json.dumps(
                              {n: (i["state"], i["path"]) for n, i in
                               self.intents_by_name().items()}))


def _write_topology(tmp: Path) -> Path:
    path = tmp / "hard.yaml"
    path.write_text(yaml.safe_dump(TOPOLOGY, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HardController]:
    tmp = tmp_path_factory.mktemp("hard")
    ctl = HardController(_write_topology(tmp), tmp)
    ctl.start()
    yield ctl
    ctl.stop()


@pytest.fixture(scope="module")
def lab(lab_env: object, controller: HardController) -> Iterator[LabNetwork]:
    net, _ = start_lab(lab_env, load_topology(controller.topology_file), controller,
                       timeout_s=60)
    try:
        controller.wait_synced(len(NODES), 30)
        yield net
    finally:
        net.stop()


@pytest.fixture
def home(lab: LabNetwork, controller: HardController) -> LabNetwork:
    """Every test starts from the same network: every switch synced, the file's intents
    installed on their home paths."""
    controller.wait_synced(len(NODES), 30)
    intents = controller.wait_settled()
    assert {n: intents[n]["path"] for n in FILE_INTENTS} == HOME, intents
    assert all(intents[n]["state"] == "installed" for n in FILE_INTENTS), intents
    return lab


# -- helpers ------------------------------------------------------------------------------------

def _bridge_exists(lab: LabNetwork, node: str) -> bool:
    return run_command(["ovs-vsctl", "--timeout=5", "br-exists",
                        lab.plan.switch(node)]).returncode == 0


def _set_controller(lab: LabNetwork, node: str, port: int) -> None:
    res = run_command(["ovs-vsctl", "--timeout=5", "set-controller", lab.plan.switch(node),
                       f"tcp:127.0.0.1:{port}"])
    assert res.returncode == 0, res.stderr


def _reconciled_since(controller: HardController, node: str, t: float) -> bool:
    return any(e["kind"] == "reconciled" and e.get("dpid") == DPID[node] and e["time"] >= t
               for e in controller.events())


@contextlib.contextmanager
def proxied(lab: LabNetwork, controller: HardController, node: str) -> Iterator[TcpProxy]:
    """``node``'s switch talks to the controller through a :class:`TcpProxy` (reconnected and
    reconciled through it before this yields); put back on the controller's own port after."""
    proxy = TcpProxy("127.0.0.1", controller.port)
    try:
        t = time.monotonic()
        _set_controller(lab, node, proxy.port)
        wait_until(lambda: proxy.accepted >= 1 and _reconciled_since(controller, node, t),
                   15, f"{node} reconciled through the proxy", ignore=(httpx.HTTPError,))
        yield proxy
    finally:
        proxy.resume()
        if _bridge_exists(lab, node):  # (a test may have taken the switch away)
            _set_controller(lab, node, controller.port)
        proxy.close()


def _intent_cookies_on(lab: LabNetwork, node: str, cookies: set[int]) -> set[int]:
    return {f.cookie for f in flows_of(lab, node)} & cookies


def _ping_ok(lab: LabNetwork, src: str, dst: str, count: int = 20) -> None:
    sent, received, out = ping_result(fast_ping(lab, src, dst, count), timeout_s=20)
    assert sent == received == count, out


def _settled_counters(lab: LabNetwork, nodes: tuple[str, ...]) -> dict[str, dict[int, int]]:
    """Like the harness's ``settled_counters``, over ``nodes`` only (a switch is away)."""
    def read() -> dict[str, dict[int, int]]:
        out: dict[str, dict[int, int]] = {}
        for node in nodes:
            per = out.setdefault(node, {})
            for f in flows_of(lab, node):
                per[f.cookie] = per.get(f.cookie, 0) + f.n_packets
        return out
    return wait_until_stable(read, 1.2, 6.0)


def _change_log(controller: HardController, since: int) -> list[str]:
    return controller.log_text().splitlines()[since:]


# -- 5. a switch that stops answering -------------------------------------------------------

def test_a_switch_that_stops_answering_costs_one_timeout_and_catches_up(
        home: LabNetwork, controller: HardController) -> None:
    lab = home
    with proxied(lab, controller, "s2") as proxy:
        log_mark = len(controller.log_text().splitlines())
        proxy.pause()
        t0 = time.monotonic()
        # h1 -> h4 needs new flows on s2 (its tunnel's last segment pops the label to h4)
        r = controller.post("/intents", {"name": "stall", "src": "h1", "dst": "h4",
                                         "max_latency_ms": 10})
        answered_s = time.monotonic() - t0
        assert r.status_code == 201, r.text
        stall = r.json()
        # bounded: the call answered after one barrier timeout, and truthfully
        assert answered_s < BARRIER_TIMEOUT_S + 2.0, answered_s
        assert stall["path"] == ["s1", "s2"] and stall["state"] == "pending", stall
        cookies = set(route_cookies(stall))
        assert not _intent_cookies_on(lab, "s2", cookies)  # s2 has not got them
        # a change that does not touch s2 is not held up by it
        t1 = time.monotonic()
        r = controller.post("/intents", {"name": "elsewhere", "src": "h3", "dst": "h1",
                                         "max_latency_ms": 10})
        assert r.status_code == 201 and r.json()["state"] == "installed", r.text
        assert time.monotonic() - t1 < BARRIER_TIMEOUT_S, time.monotonic() - t1
        elsewhere = r.json()
        # while s2 does not answer, the intent stays pending and s2 counts as not synced
        time.sleep(1.0)  # the scenario: the stall lasts (well under OVS's inactivity probe)
        assert controller.get(f"/intents/{stall['id']}")["state"] == "pending"
        assert controller.get("/health")["switches_synced"] == len(NODES) - 1
        assert not _intent_cookies_on(lab, "s2", cookies)
        proxy.resume()
        t_resume = time.monotonic()
        installed = until(
            lambda: (lambda i: i if i["state"] == "installed" else None)(
                controller.get(f"/intents/{stall['id']}")), 10,
            "the stalled intent installed once s2 answers")
        caught_up_s = time.monotonic() - t_resume
        assert installed["path"] == ["s1", "s2"]
        assert _intent_cookies_on(lab, "s2", cookies)  # its tunnel's segment, at last
        controller.wait_synced(len(NODES), 10)
        _ping_ok(lab, "h1", "h4")
        log = "\n".join(_change_log(controller, log_mark))
        assert "event=barrier_timeout" in log and "0x2" in log, log[-3000:]
        assert "event=switch_unconfirmed" in log and "0x2 answers again" in log, log[-3000:]
        print(f"stalled switch: the add answered pending after {answered_s:.2f} s; "
              f"installed {caught_up_s:.2f} s after s2 answered again")
    for intent in (stall, elsewhere):
        assert controller.delete(f"/intents/{intent['id']}").status_code == 200


# -- 1. a switch on the new path dies between the phases of a reroute ----------------------------

def test_a_switch_dying_mid_reroute_leaves_no_intent_on_it(
        home: LabNetwork, controller: HardController) -> None:
    lab = home
    main = controller.intents_by_name()["main"]
    try:
        with proxied(lab, controller, "s3") as proxy:
            proxy.pause()
            t_cut = time.monotonic()
            lab.link_down("s2", "s4")
            # the reroute onto s1-s3-s4 is computed and its phase 0 sent to every switch of
            # it: s1 holds main's new ingress flow already, while s3 (paused) answers nothing
            moved = until(
                lambda: (lambda i: i if i["path"] == ["s1", "s3", "s4"] else None)(
                    controller.intents_by_name()["main"]), BARRIER_TIMEOUT_S,
                "main rerouted onto s3", poll_s=0.05)
            assert moved["state"] == "pending", moved
            # (its ingress flow stays; its head at s1 points at the new tunnel)
            head = [f for f in flows_of(lab, "s1") if f.cookie == head_cookie(moved)]
            first = moved["mpls_labels"][0]
            assert head and re.search(rf"set_field:{first}->mpls_label|set_mpls_label\({first}\)",
                                      head[0].actions), head
            assert time.monotonic() - t_cut < BARRIER_TIMEOUT_S  # still inside the window
            # now s3 dies: its bridge goes and its control connection with it
            lab.stop_switch("s3")
            proxy.close()
        main = until(
            lambda: (lambda i: i if i["state"] == "installed" else None)(
                controller.intents_by_name()["main"]), 15, "main installed again")
        assert main["path"] == ["s1", "s5", "s4"], main
        intents = controller.wait_settled()
        assert not [n for n, i in intents.items() if "s3" in (i["path"] or ())], intents
        assert intents["h3out"]["state"] == "degraded"
        assert "s3" in intents["h3out"]["reason"], intents["h3out"]
        # the window was hit: main went onto s3 by the cut, then off it by s3's loss, and
        # the cut's change was the one s3 never confirmed
        hops = [(h["new_path"], h["cause"]) for h in main["history"]][-2:]
        assert hops[0][0] == ["s1", "s3", "s4"] and "down" in hops[0][1], hops
        assert hops[1][0] == ["s1", "s5", "s4"] and "s3 lost" in hops[1][1], hops
        events = controller.events()
        last = {k: max(n for n, e in enumerate(events) if e["kind"] == k
                       and e.get("dpid") in (DPID["s2"], DPID["s3"], DPID["s4"]))
                for k in ("port_down", "switch_lost")}
        assert last["port_down"] < last["switch_lost"], last
        # the traffic runs on the new path: s1, s5 and s4 count it, nothing else does
        route = route_cookies(main)
        survivors = ("s1", "s2", "s4", "s5")
        t0 = _settled_counters(lab, survivors)
        _ping_ok(lab, "h1", "h2", 30)
        t1 = _settled_counters(lab, survivors)
        assert counter_delta(by_cookie(t0, route), by_cookie(t1, route)) == \
            {"s1": 30, "s5": 30, "s4": 30}
        # no flow of an intent or tunnel on the survivors points at s3's old route
        labels = {intent_cookie(i["id"]) for i in intents.values()} | {
            c for i in intents.values() for c in (*route_cookies(i), head_cookie(i))}
        for node in ("s1", "s2", "s4", "s5"):
            stray = [f for f in flows_of(lab, node) if f.cookie >> 56 in (3, 5)
                     and f.cookie not in labels]
            assert not stray, (node, stray)
    finally:
        lab.link_up("s2", "s4")
        if not _bridge_exists(lab, "s3"):
            lab.start_switch("s3", timeout_s=20)
    controller.wait_synced(len(NODES), 20)
    controller.wait_settled()


# -- 2. a switch comes back --------------------------------------------------------------------

def test_a_switch_coming_back_gets_its_intents_installed_without_an_operator(
        home: LabNetwork, controller: HardController) -> None:
    lab = home
    r = controller.post("/intents", {"name": "to-h3", "src": "h1", "dst": "h3",
                                     "max_latency_ms": 10})
    assert r.status_code == 201 and r.json()["state"] == "installed", r.text
    to_h3 = r.json()
    added = [to_h3]
    try:
        lab.stop_switch("s3")
        wait_until(lambda: all(controller.intents_by_name()[n]["state"] == "degraded"
                               for n in ("h3out", "to-h3")), 10,
                   "the intents through s3 degraded")
        # one more added while s3 is away: it cannot be routed yet
        r = controller.post("/intents", {"name": "from-h3", "src": "h3", "dst": "h1",
                                         "max_latency_ms": 10})
        assert r.status_code == 201, r.text
        added.append(r.json())
        assert r.json()["state"] == "infeasible" and "s3" in r.json()["reason"], r.json()
        t_back = time.monotonic()
        lab.start_switch("s3", timeout_s=20)  # an empty bridge, as after a reboot
        intents = until(
            lambda: (lambda d: d if all(d[n]["state"] == "installed" for n in
                                        ("h3out", "to-h3", "from-h3")) else None)(
                controller.intents_by_name()), 15, "every intent through s3 installed",
            detail=lambda: json.dumps({n: i["state"] for n, i in
                                       controller.intents_by_name().items()}))
        back_s = time.monotonic() - t_back
        assert intents["h3out"]["path"] == ["s3", "s4"]
        assert intents["to-h3"]["path"] == ["s1", "s3"]
        assert intents["from-h3"]["path"] == ["s3", "s1"]
        on_s3 = {f.cookie for f in flows_of(lab, "s3")}
        assert intent_cookie(intents["h3out"]["id"]) in on_s3
        assert intent_cookie(intents["from-h3"]["id"]) in on_s3
        _ping_ok(lab, "h3", "h2")
        _ping_ok(lab, "h1", "h3")
        print(f"switch back: its intents installed {back_s:.2f} s after the bridge returned")
    finally:
        if not _bridge_exists(lab, "s3"):
            lab.start_switch("s3", timeout_s=20)
        for intent in added:
            controller.delete(f"/intents/{intent['id']}")
    controller.wait_synced(len(NODES), 20)


# -- 3. concurrent reroutes --------------------------------------------------------------------

EXTRA = {"name": "extra", "src": "h1", "dst": "h2", "max_latency_ms": 20,
         "min_bandwidth_mbps": 60, "match": {"ip_proto": 17, "dst_port": 5002}}


def _cut_script(lab: LabNetwork, a: tuple[str, str]) -> str:
    (i,) = lab.plan.links_between(*a)
    return "; ".join(f"ip link set dev {iface} down" for iface in lab.plan.link_interfaces(i))


def _link_ends(lab: LabNetwork, a: tuple[str, str]) -> set[tuple[str, int]]:
    """(switch, port) of both ends of the link between ``a``'s nodes."""
    (i,) = lab.plan.links_between(*a)
    link = lab.topology.links[i]
    pa, pb = lab.plan.link_ports[i]
    return {(link.a, pa), (link.b, pb)}


def _first_down(events: list[dict[str, Any]], ends: set[tuple[str, int]]) -> float | None:
    times = [e["time"] for e in events if e["kind"] == "port_down"
             and (e.get("switch"), e.get("port_no")) in ends]
    return min(times) if times else None


def _reservations(controller: HardController) -> dict[tuple[str, str], float]:
    return {(lk["a"], lk["b"]): lk["reserved_mbps"]
            for lk in controller.get("/topology")["links"]}


def _final_state(lab: LabNetwork, controller: HardController, extra_id: int | None
                 ) -> dict[str, Any]:
    intents = controller.wait_settled()
    extra_cookie = intent_cookie(extra_id) if extra_id is not None else None
    tables = {n: [("extra" if c == extra_cookie else c, *rest)
                  for c, *rest in table_signature(lab, n)] for n in NODES}
    return {"paths": {n: i["path"] for n, i in intents.items()},
            "routed": {n: i["state"] == "installed" for n, i in intents.items()},
            "reserved": _reservations(controller), "tables": tables, "intents": intents}


def _post_extra(controller: HardController, client: httpx.Client) -> httpx.Response:
    return client.post(controller.url("/intents"), json=EXTRA,
                       headers={"Authorization": f"Bearer {TOKEN}"})


def _outcome(controller: HardController, answer: httpx.Response) -> int | None:
    """The id of the added intent (None: refused, 409)."""
    assert answer.status_code in (201, 409), answer.text
    if answer.status_code == 409:
        assert answer.json()["error"] == "insufficient_bandwidth", answer.text
        return None
    return int(answer.json()["id"])


ATTEMPTS = 10
"""concurrent runs tried until the admission lands between the cuts: OVS sometimes reports
two link changes 5 ms apart to the controller within 2 ms of each other (4 attempts all
missed in 2 of 3 runs on a loaded machine; an attempt takes about 2 s)"""


def _concurrent_run(lab: LabNetwork, controller: HardController, client: httpx.Client,
                    cut_a: tuple[str, str], cut_b: tuple[str, str]
                    ) -> tuple[dict[str, Any], list[str], int | None]:
    """Cut A, the admission as soon as the core has seen cut A, cut B 5 ms after A on the
    wire; while it runs, the reservations of every link are sampled through the API and must
    never exceed the link's capacity. Returns the final state, the order the core saw the
    three in, and the admitted intent's id (None: refused)."""
    capacity = {(lk["a"], lk["b"]): lk["bandwidth_mbps"] for lk in TOPOLOGY["links"]}
    over: list[dict[tuple[str, str], float]] = []
    samples = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                seen = _reservations(controller)
            except (httpx.HTTPError, AssertionError):
                continue
            samples[0] += 1
            if any(seen[k] > capacity[k] + 1e-9 for k in seen):
                over.append(seen)

    answer: list[httpx.Response] = []
    ends_a, ends_b = _link_ends(lab, cut_a), _link_ends(lab, cut_b)
    t0 = time.monotonic()

    def admit_after_a() -> None:
        # the admission leaves as soon as the core has seen cut A (polled on a warm
        # connection): a port status takes 10-40 ms to reach the controller through OVS,
        # while cut B follows cut A by 5 ms on the wire
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            recent = client.get(controller.url("/events"), params={"limit": 20}).json()
            if _first_down([e for e in recent if e["time"] >= t0], ends_a) is not None:
                break
        answer.append(_post_extra(controller, client))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        poster = threading.Thread(target=admit_after_a, daemon=True)
        poster.start()
        script = f"{_cut_script(lab, cut_a)}; sleep 0.005; {_cut_script(lab, cut_b)}"
        proc = subprocess.Popen(["sh", "-c", script])
        assert proc.wait(timeout=10) == 0
        poster.join(timeout=30)
        lab.set_link(*cut_a, up=False)  # tell the lab object what the script did
        lab.set_link(*cut_b, up=False)
        assert answer, "the admission did not answer"
        extra_id = _outcome(controller, answer[0])
        state = _final_state(lab, controller, extra_id)
    finally:
        stop.set()
        sampler.join(timeout=5)
    assert not over, over[:3]
    assert samples[0] >= 10
    # the order the core saw them in (its event log, on the same monotonic clock)
    events = [e for e in controller.events() if e["time"] >= t0]
    t_a, t_b = _first_down(events, ends_a), _first_down(events, ends_b)
    assert t_a is not None and t_b is not None, events
    added = [e["time"] for e in events if e["kind"] == "intent_added"]
    # refused (409): only after cut B is the room gone (before it s1-s5-s4 is free)
    t_admit = added[0] if added else math.inf
    order = [k for _, k in sorted([(t_a, "cut"), (t_b, "cut"), (t_admit, "admission")])]
    print(f"concurrent run: the core saw {order}: cut A at {(t_a - t0) * 1000:.1f} ms, "
          f"cut B at {(t_b - t0) * 1000:.1f} ms, admission at "
          f"{(t_admit - t0) * 1000:.1f} ms after the first cut left; "
          f"{samples[0]} reservation samples")
    # the oracle from the final state: only s1-s5-s4 is left; big (admitted first) holds
    # it, extra (60 more) cannot have it too; the reservations are the routed intents'
    assert state["paths"]["big"] == ["s1", "s5", "s4"]
    assert state["paths"].get("extra") is None
    want = {k: 0.0 for k in capacity}
    for intent in state["intents"].values():
        path = intent["path"] or []
        for hop in zip(path, path[1:], strict=False):
            want[hop if hop in want else hop[::-1]] += intent["min_bandwidth_mbps"]
    assert state["reserved"] == want, (state["reserved"], want)
    return state, order, extra_id


def _home_again(lab: LabNetwork, controller: HardController, cuts: list[tuple[str, str]],
                ids: list[int]) -> None:
    for cut in cuts:
        lab.link_up(*cut)
    while ids:
        controller.delete(f"/intents/{ids.pop()}")
    controller.wait_settled()


def test_concurrent_cuts_and_an_admission_end_as_one_by_one(
        home: LabNetwork, controller: HardController) -> None:
    lab = home
    cut_a, cut_b = ("s2", "s4"), ("s3", "s4")
    ids: list[int] = []
    client = httpx.Client(timeout=20.0)
    try:
        client.get(controller.url("/health"))  # the connection is open before the race
        orders = []
        for _ in range(ATTEMPTS):
            concurrent, order, extra_id = _concurrent_run(lab, controller, client,
                                                          cut_a, cut_b)
            ids += [extra_id] if extra_id is not None else []
            orders.append(order)
            if order == ["cut", "admission", "cut"]:
                break
            _home_again(lab, controller, [cut_a, cut_b], ids)
        assert orders[-1] == ["cut", "admission", "cut"], (
            f"the admission never landed between the cuts in {ATTEMPTS} runs: {orders}")
        # back home, then the same events one by one, in the order the core saw them
        _home_again(lab, controller, [cut_a, cut_b], ids)
        lab.link_down(*cut_a)
        controller.wait_settled()
        replayed = _outcome(controller, _post_extra(controller, client))
        assert replayed is not None and extra_id is not None
        ids.append(replayed)
        controller.wait_settled()
        lab.link_down(*cut_b)
        one_by_one = _final_state(lab, controller, replayed)
        for what in ("paths", "routed", "reserved", "tables"):
            assert concurrent[what] == one_by_one[what], what
    finally:
        client.close()
        _home_again(lab, controller, [cut_a, cut_b], ids)


# -- 4. the controller killed in the middle of a change ------------------------------------------

def _batch(n: int) -> list[dict[str, Any]]:
    """``n`` intents entering at s1, s2 and s4 (every ingress of the lab but s3's)."""
    ends = [("h1", "h2"), ("h4", "h1"), ("h2", "h1")]
    return [{"name": f"batch-{k}", "src": ends[k % 3][0], "dst": ends[k % 3][1],
             "max_latency_ms": 20, "match": {"ip_proto": 17, "dst_port": 6000 + k}}
            for k in range(n)]


def _switch_vs_plan(controller: HardController, node: str) -> tuple[list[Any], list[Any]]:
    def rows(source: str) -> list[Any]:
        flows = controller.get(f"/switches/{DPID[node]:#x}/flows", source=source)["flows"]
        keep = ("table_id", "priority", "cookie", "match", "instructions")
        return sorted(json.dumps({k: f.get(k) for k in keep}, sort_keys=True)
                      for f in flows)
    return rows("switch"), rows("controller")


def test_a_controller_killed_mid_change_converges_after_restart(
        home: LabNetwork, controller: HardController) -> None:
    lab = home
    acked = []
    for port in (7000, 7001):
        r = controller.post("/intents", {"name": f"acked-{port}", "src": "h3", "dst": "h1",
                                         "max_latency_ms": 10,
                                         "match": {"ip_proto": 17, "dst_port": port}})
        assert r.status_code == 201 and r.json()["state"] == "installed", r.text
        acked.append(r.json())
    batch = _batch(300)
    known = {intent_cookie(i["id"]) for i in controller.get("/intents")}

    def batch_flows(node: str) -> set[int]:
        """Intent flows on ``node`` of no intent known before the batch."""
        return {f.cookie for f in flows_of(lab, node)
                if f.cookie >> 56 == 3 and f.cookie not in known}

    seen_at_kill: dict[str, int] = {}
    with proxied(lab, controller, "s4") as proxy:
        # s4 cannot confirm phase 0, so the batch's change waits there (up to the barrier
        # timeout) after s1 and s2 applied theirs: the kill lands in that window
        proxy.pause()
        poster = threading.Thread(target=lambda: _post_quietly(controller, batch),
                                  daemon=True)
        t0 = time.monotonic()
        poster.start()
        wait_until(lambda: batch_flows("s1"), 10,
                   "the batch's first FlowMods on s1", poll_s=0.02)
        controller.kill()
        killed_s = time.monotonic() - t0
        for node in NODES:
            seen_at_kill[node] = len(batch_flows(node))
        print(f"killed {killed_s:.2f} s after the batch was posted; batch flows per switch "
              f"at the kill: {seen_at_kill}")
        assert seen_at_kill["s1"] > 0 and seen_at_kill["s4"] == 0, seen_at_kill
        poster.join(timeout=15)
        proxy.resume()  # s4's connection ends with the dead controller; it reconnects
        controller.start()
        controller.wait_synced(len(NODES), 40, "every switch after the restart")
        intents = controller.wait_settled()
        # every acknowledged intent is there; the unacknowledged batch is absent as a whole
        assert all(intents[a["name"]]["state"] == "installed" for a in acked), intents
        assert not [n for n in intents if n.startswith("batch-")], sorted(intents)[:10]
        # converged: every switch holds exactly the controller's plan, no stray of the batch
        for node in NODES:
            def agree(node: str = node) -> bool:
                held, plan = _switch_vs_plan(controller, node)
                return held == plan

            def both(node: str = node) -> str:
                return str(_switch_vs_plan(controller, node))[:3000]

            wait_until(agree, 10, f"{node}'s flows equal to the plan", detail=both)
            assert not batch_flows(node), node
        _ping_ok(lab, "h3", "h1")
    for a in acked:
        controller.delete(f"/intents/{a['id']}")


def _post_quietly(controller: HardController, batch: list[dict[str, Any]]) -> None:
    """POST the batch; the controller is killed under it, so no answer is expected."""
    with contextlib.suppress(httpx.HTTPError):
        controller.post("/intents/batch", {"intents": batch}, timeout_s=10)


# -- 6. a switch that refuses a FlowMod --------------------------------------------------------

def _table_counts(lab: LabNetwork, node: str) -> dict[int, int]:
    counts = {t: 0 for t in range(3)}  # the pipeline's tables (classifier, intents, dests)
    for f in flows_of(lab, node):
        counts[f.table] = counts.get(f.table, 0) + 1
    return counts


def _limit_tables(lab: LabNetwork, node: str, limits: dict[int, int] | None) -> None:
    """Cap ``node``'s flow tables at ``limits`` (table -> flows; Open vSwitch refuses a
    FlowMod that would add beyond it with OFPFMFC_TABLE_FULL), or lift every cap (None)."""
    bridge = lab.plan.switch(node)
    if limits is None:
        cmd = ["ovs-vsctl", "--timeout=5", "clear", "Bridge", bridge, "flow_tables"]
    else:
        cmd = ["ovs-vsctl", "--timeout=5"]
        for table, n in limits.items():
            cmd += ["--", f"--id=@t{table}", "create", "Flow_Table", f"flow_limit={n}",
                    "overflow_policy=refuse",
                    "--", "set", "Bridge", bridge, f"flow_tables:{table}=@t{table}"]
    res = run_command(cmd)
    assert res.returncode == 0, res.stderr


def test_a_switch_that_refuses_a_flowmod_keeps_the_intent_pending_until_it_takes_it(
        home: LabNetwork, controller: HardController) -> None:
    """A full flow table answers the barrier but refuses the FlowMod before it: the intent
    must not read ``installed`` (the switch does not hold its flows), and once the table has
    room the controller installs it without an operator."""
    lab = home
    log_mark = len(controller.log_text().splitlines())
    _limit_tables(lab, "s2", _table_counts(lab, "s2"))
    stall: dict[str, Any] | None = None
    try:
        r = controller.post("/intents", {"name": "refused", "src": "h1", "dst": "h4",
                                         "max_latency_ms": 10})
        assert r.status_code == 201, r.text
        stall = r.json()
        assert stall["path"] == ["s1", "s2"] and stall["state"] == "pending", stall
        cookies = set(route_cookies(stall))
        assert not _intent_cookies_on(lab, "s2", cookies)
        # it stays so: each read-and-reconcile of s2 is refused again
        time.sleep(2.5)  # the scenario: more than two resync rounds (1 s each) pass
        assert controller.get(f"/intents/{stall['id']}")["state"] == "pending"
        assert controller.get("/health")["switches_synced"] == len(NODES) - 1
        log = "\n".join(_change_log(controller, log_mark))
        assert "event=flowmod_refused" in log and "event=change_refused" in log, log[-3000:]
        assert "event=switch_unconfirmed" in log, log[-3000:]
    finally:
        _limit_tables(lab, "s2", None)
    assert stall is not None
    installed = until(
        lambda: (lambda i: i if i["state"] == "installed" else None)(
            controller.get(f"/intents/{stall['id']}")), 20,
        "the refused intent installed once s2's table has room (tried again at doubling "
        "intervals)")
    assert installed["path"] == ["s1", "s2"]
    assert _intent_cookies_on(lab, "s2", set(route_cookies(installed)))
    controller.wait_synced(len(NODES), 10)
    _ping_ok(lab, "h1", "h4")
    assert controller.delete(f"/intents/{stall['id']}").status_code == 200
