"""A host floods the control plane on real Open vSwitch (userspace datapath): IPv4 to random
unknown destinations at >= 50,000 frames/s with gratuitous ARP from random addresses (one
frame in 10) mixed in, for 10 s (``controller.lab.flood``, a raw socket in the host's
namespace).

The diamond with an attacker ``h3`` beside ``h1`` on s1, the controller on its defaults
(``network.packet_in_pps`` 1000, ``packet_in_control_pps`` 2000, ``max_hosts_per_port`` 64):

* the switch's packet-in meters pass at most their rate (meter stats read from OVS) and the
  controller's packet-in counter for s1 stays within the meters' rates plus slack, while the
  flood is many times that;
* the REST API answers every request made during the flood;
* pings along the intents (h1 -> h2 on ``fast``, the replies on ``cheap``) lose nothing;
* the conflicting addresses recorded at h3's port stop at 64, the rest are counted refused;
* a link cut during a flood is restored: the ``cheap`` intent moves to s4-s2-s1 and pings
  after the cut are counted by its flows on s2 (state and counters, not time).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from harness import (
    DIAMOND,
    REPO,
    ControllerProcess,
    counter_delta,
    fast_ping,
    packets_by_cookie,
    ping_result,
    route_cookies,
    start_lab,
)
from waiting import wait_until

from controller.lab.flood import flood_command
from controller.lab.network import LabNetwork
from controller.lab.ovs import run_command
from controller.topology.loader import load_topology

FLOOD_PPS = 62_000.0
"""asked of the generator (the frames to unknown destinations must reach >= MIN_UNKNOWN_PPS)"""
MIN_UNKNOWN_PPS = 50_000.0
FLOOD_S = 10.0
GARP_EVERY = 10
"""one frame in 10 a gratuitous ARP from a random address: ~6,000/s, 3x the ARP meter"""
MISS_PPS, CONTROL_PPS, MAX_HOSTS = 1000, 2000, 64
"""the controller's defaults (network.packet_in_pps, packet_in_control_pps,
max_hosts_per_port): the test runs it without settings"""
SLACK = 1.3
"""userspace OVS meters are token buckets refilled per packet batch (measured within
0.9-1.05x of the band rate); the bound leaves room for a loaded 2-core machine"""
MISS_METER, ARP_METER, LLDP_METER = 0xFFFF, 0xFFFE, 0xFFFD


@pytest.fixture(scope="module")
def topology_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    doc = yaml.safe_load(DIAMOND.read_text())
    doc["hosts"].append({"name": "h3", "node": "s1"})
    path = tmp_path_factory.mktemp("topo") / "diamond-flood.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def controller(topology_file: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[ControllerProcess]:
    ctl = ControllerProcess(topology_file, tmp_path_factory.mktemp("ctl"), startup_grace_s=3.0)
    ctl.start()
    yield ctl
    ctl.stop()


@pytest.fixture(scope="module")
def lab(lab_env: object, controller: ControllerProcess, topology_file: Path
        ) -> Iterator[LabNetwork]:
    net, _ = start_lab(lab_env, load_topology(topology_file), controller, timeout_s=60)
    try:
        controller.wait_synced(4, 30)
        for name in ("fast", "cheap"):
            controller.wait_intent(name, lambda i: i["state"] == "installed")
        yield net
    finally:
        net.stop()


def api(ctl: ControllerProcess, path: str, **params: Any) -> Any:
    r = httpx.get(f"http://127.0.0.1:{ctl.api_port}{path}", params=params, timeout=5.0)
    r.raise_for_status()
    return r.json() if "json" in r.headers.get("content-type", "") else r.text


_METRIC = re.compile(r'^(cpn_packet_ins_total|cpn_hosts_refused_total)\{(\w+)="([^"]+)"\} '
                     r"([0-9.e+]+)$", re.M)


def metrics(ctl: ControllerProcess) -> dict[tuple[str, str], float]:
    """(metric, label value) -> value of the counters this test reads."""
    return {(m.group(1), m.group(3)): float(m.group(4))
            for m in _METRIC.finditer(api(ctl, "/metrics"))}


_METER = re.compile(r"meter:(\d+)\b.*?packet_in_count:(\d+).*?bands:\s*0:\s*packet_count:(\d+)",
                    re.S)


def meter_stats(lab: LabNetwork, node: str) -> dict[int, tuple[int, int]]:
    """meter id -> (packets in, packets dropped by its band) as OVS counts them."""
    out = run_command(["ovs-ofctl", "-O", "OpenFlow13", "meter-stats",
                       lab.plan.switch(node)]).stdout
    text = out.replace("\n", " ").replace("meter:", "\nmeter:")
    return {int(m.group(1)): (int(m.group(2)), int(m.group(3))) for m in _METER.finditer(text)}


def start_flood(lab: LabNetwork, seconds: float, seed: int) -> subprocess.Popen[bytes]:
    h3 = lab.topology.host("h3")
    return lab.host("h3").popen(
        flood_command(str(lab.host("h3").defaultIntf()), h3.mac, h3.ip, pps=FLOOD_PPS,
                      seconds=seconds, garp_every=GARP_EVERY, seed=seed),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def flood_result(proc: subprocess.Popen[bytes], seconds: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=seconds + 20)
    assert proc.returncode == 0, err.decode(errors="replace")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    print(f"flood: {result}")
    return result


def fresh_arp(lab: LabNetwork, *hosts: str) -> None:
    """Forget the hosts' ARP entries and learn them again before a flood: a fresh entry is
    reachable for 15-45 s, so the ping needs no ARP while the flood fills the ARP meter."""
    for h in hosts:
        lab.host(h).cmd("ip neigh flush all")
    assert lab.ping("h1", "h2", count=1).received == 1
    assert lab.ping("h2", "h1", count=1).received == 1


class RestProbe:
    """GET /paths every 0.25 s in a thread until stopped; each answer's status (or the
    exception of a request that got none within 5 s)."""

    def __init__(self, ctl: ControllerProcess) -> None:
        self.ctl = ctl
        self.answers: list[int | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        url = f"http://127.0.0.1:{self.ctl.api_port}/api/v1/paths"
        with httpx.Client(timeout=5.0) as c:
            while not self._stop.wait(0.25):
                try:
                    self.answers.append(c.get(url, params={"src": "h1", "dst": "h2"})
                                        .status_code)
                except httpx.HTTPError as exc:
                    self.answers.append(repr(exc))

    def stop(self) -> list[int | str]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.answers


def test_a_flood_is_held_to_the_meters_and_harms_nobody_else(
        lab: LabNetwork, controller: ControllerProcess) -> None:
    fresh_arp(lab, "h1", "h2")
    before, meters0, t0 = metrics(controller), meter_stats(lab, "s1"), time.monotonic()
    assert set(meters0) >= {MISS_METER, ARP_METER, LLDP_METER}, meters0
    count = int(FLOOD_S / 0.02)
    ping = fast_ping(lab, "h1", "h2", count, interval_s=0.02)
    probe = RestProbe(controller)
    flood = flood_result(start_flood(lab, FLOOD_S, seed=1), FLOOD_S)
    answers = probe.stop()
    sent, received, text = ping_result(ping, FLOOD_S + 20)
    after, meters1, window_s = metrics(controller), meter_stats(lab, "s1"), \
        time.monotonic() - t0
    assert (flood["sent"] - flood["garp"]) / flood["seconds"] >= MIN_UNKNOWN_PPS, flood
    # pings along the intents lose nothing; the API answered every request
    assert (sent, received) == (count, count), text
    assert len(answers) >= 10 and set(answers) == {200}, answers
    # the meters: the flood offered many times their rate, they passed at most their rate
    passed = {}
    # (offered: what reached the meter; userspace OVS took in 75-95% of the frames sent in
    # two runs here, so the ARP meter saw 2.4-2.9x its rate)
    for meter, rate, over in ((MISS_METER, MISS_PPS, 10), (ARP_METER, CONTROL_PPS, 1.5)):
        offered = meters1[meter][0] - meters0[meter][0]
        dropped = meters1[meter][1] - meters0[meter][1]
        passed[meter] = offered - dropped
        print(f"meter {meter:#x}: offered {offered}, dropped {dropped}, passed "
              f"{passed[meter]} in {window_s:.1f} s (rate {rate}/s)")
        assert offered >= over * rate * FLOOD_S, (meter, offered)
        assert passed[meter] <= rate * window_s * SLACK + rate // 10, (meter, passed)
    # the controller's packet-ins from s1 stay within the meters' rates (LLDP: a few/s)
    got = {d: after.get(("cpn_packet_ins_total", d), 0.0) - before.get(
        ("cpn_packet_ins_total", d), 0.0) for d in ("0x1", "0x2", "0x3", "0x4")}
    print(f"packet-ins per switch in {window_s:.1f} s: {got}")
    bound = (MISS_PPS + CONTROL_PPS) * window_s * SLACK + 50 * window_s
    assert got["0x1"] <= bound, (got, bound)
    assert got["0x1"] >= 0.5 * MISS_PPS * FLOOD_S, got  # the flood did reach the controller
    assert max(got["0x2"], got["0x3"], got["0x4"]) <= 50 * window_s, got
    # the random senders at h3's port: MAX_HOSTS conflicts recorded, the rest refused
    refused = after.get(("cpn_hosts_refused_total", "port_full"), 0.0)
    assert refused >= passed[ARP_METER] // 2, (refused, passed)
    events = api(controller, "/api/v1/events", limit=1000)
    assert len([e for e in events if e["kind"] == "host_conflict"]) == MAX_HOSTS
    h3_port = lab.plan.host_ports["h3"]
    refusals = [e for e in events if e["kind"] == "host_refused"]
    assert refusals and {(e["port_no"], e["reason"]) for e in refusals} == \
        {(h3_port, "port_full")}
    assert len(refusals) <= window_s / 10 + 2  # one per port per 10 s


def test_a_link_cut_during_a_flood_is_restored(lab: LabNetwork,
                                               controller: ControllerProcess) -> None:
    fresh_arp(lab, "h1", "h2")
    cheap = next(i for i in api(controller, "/api/v1/intents") if i["name"] == "cheap")
    assert cheap["path"] == ["s4", "s3", "s1"]
    flood = start_flood(lab, 8.0, seed=2)
    try:
        time.sleep(1.0)  # the flood is on (the generator's own pace)
        lab.link_down("s3", "s4")
        moved = wait_until(
            lambda: next((i for i in api(controller, "/api/v1/intents")
                          if i["name"] == "cheap" and i["path"] == ["s4", "s2", "s1"]
                          and i["state"] == "installed"), None),
            15, "the cheap intent restored on s4-s2-s1 during the flood")
        cookies = route_cookies(moved)
        c0 = packets_by_cookie(lab, cookies)
        sent, received, text = ping_result(fast_ping(lab, "h2", "h1", 40, 0.02), 15)
        assert (sent, received) == (40, 40), text
        assert flood.poll() is None, "the flood ended before the check: not under flood"
        grew = wait_until(
            lambda: (lambda d: d if d.get("s2", 0) >= 40 else None)(
                counter_delta(c0, packets_by_cookie(lab, cookies))),
            6, "the restored path's flows on s2 to count the pings")
        assert grew.get("s3", 0) == 0, grew
    finally:
        flood_result(flood, 8.0)
        lab.link_up("s3", "s4")
