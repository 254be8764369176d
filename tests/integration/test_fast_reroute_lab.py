"""Fast reroute on real Open vSwitch (userspace datapath): unprotected intents ride their MPLS
tunnels and a best-effort pair the destination flows, the controller is killed, a link of both
paths is cut under a ping every 10 ms on each, and the switches alone carry the traffic over
the link's bypass tunnels (tunnels: two labels; plain IPv4: one label popped to IPv4; the far
end rewriting in_port so the packet may go back the way it came)."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import yaml
from harness import DIAMOND, ControllerProcess, fast_ping, flows_of, ping_result, start_lab

from controller.lab.network import LabNetwork
from controller.lab.ovs import run_command
from controller.network.flows import (
    BYPASS_GROUP_BASE,
    BYPASS_IP_GROUP_BASE,
    OWNER_BYPASS,
    OWNER_ID_BITS,
)
from controller.topology.loader import load_topology
from controller.topology.wiring import port_plan

PINGS = 400  # 4 s at 10 ms
CUT_AFTER_S = 1.5
CUT = ("s3", "s4")
"""mid-path for h1 -> h2 on s1-s3-s4: the bypass of s3-s4 at s3 is s3-s1-s2-s4, back through
the port the traffic came in on; the replies' bypass at s4 (s4-s2-s1-s3) ends at s3, which
sends them on to s1, where the bypass came from; h3 (on s3) -> h2 has no intent and its
least-latency path is the link itself"""


class FastRerouteController(ControllerProcess):
    def command(self) -> list[str]:
        return [*super().command(), "--fast-reroute"]


def _topology(tmp: Path) -> Path:
    doc = yaml.safe_load(DIAMOND.read_text())
    doc["intents"] = [
        {"name": "there", "src": "h1", "dst": "h2", "max_latency_ms": 15},
        {"name": "back", "src": "h2", "dst": "h1", "max_latency_ms": 15},
    ]
    doc["hosts"].append({"name": "h3", "node": "s3"})
    path = tmp / "diamond-frr.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _bucket_packets(lab: LabNetwork, switch: str, group_id: int) -> int:
    stats = run_command(["ovs-ofctl", "-O", "OpenFlow13", "dump-group-stats",
                         lab.plan.switch(switch)]).stdout
    m = re.search(rf"group_id={group_id},.*?bucket1:packet_count=(\d+)", stats)
    assert m is not None, stats
    return int(m.group(1))


def test_the_switches_alone_carry_the_tunnels_over_the_bypass(
        lab_env: object, tmp_path: Path) -> None:
    topo_file = _topology(tmp_path)
    topology = load_topology(topo_file)
    ctl = FastRerouteController(topo_file, tmp_path, startup_grace_s=3.0)
    ctl.start()
    lab: LabNetwork | None = None
    try:
        lab, _ = start_lab(lab_env, topology, ctl, timeout_s=60)
        for name in ("there", "back"):
            i = ctl.wait_intent(name, lambda i: i["state"] == "installed", timeout_s=20)
            assert i["path"] in (["s1", "s3", "s4"], ["s4", "s3", "s1"]), i
            assert i["mpls_label"] is not None, i  # they ride tunnels
        lab.wait_until_reachable("h1", "h2", timeout_s=15)
        lab.wait_until_reachable("h3", "h2", timeout_s=15)
        ctl.wait_links_verified(4, timeout_s=15)
        index = next(k for k, lk in enumerate(topology.links) if {lk.a, lk.b} == set(CUT))
        # the lab wires the controller's port plan
        p3, p4 = (port_plan(topology).link_port(index, n) for n in CUT)
        groups = run_command(["ovs-ofctl", "-O", "OpenFlow13", "dump-groups",
                              lab.plan.switch("s3")]).stdout
        assert f"group_id={BYPASS_GROUP_BASE + p3},type=ff" in groups, groups
        assert f"group_id={BYPASS_IP_GROUP_BASE + p3},type=ff" in groups, groups
        # a restarted controller adopts the bypass flows as they are (the far end's in_port
        # rewrite reads back as it was written): none is made again
        bypass = {n: [f for f in flows_of(lab, n) if f.cookie >> OWNER_ID_BITS == OWNER_BYPASS]
                  for n in ("s1", "s2", "s3", "s4")}
        assert sum(map(len, bypass.values())) >= 8, bypass
        assert any("in_port" in f.actions for fs in bypass.values() for f in fs), bypass
        ctl.kill()
        restarted = time.monotonic()
        ctl.start()
        ctl.wait_synced(4, 40, "every switch reconnected after SIGKILL and")
        ctl.wait_intent("there", lambda i: i["state"] == "installed", timeout_s=20)
        for n, before in bypass.items():
            after = [f for f in flows_of(lab, n) if f.cookie >> OWNER_ID_BITS == OWNER_BYPASS]
            assert sorted((f.cookie, f.match, f.actions) for f in after) == sorted(
                (f.cookie, f.match, f.actions) for f in before), n
            young = [f for f in after if f.duration_s < time.monotonic() - restarted]
            assert not young, (n, young)
        ctl.kill()  # the switches are on their own (fail_mode=secure keeps their flows)
        proc = fast_ping(lab, "h1", "h2", PINGS)
        plain = fast_ping(lab, "h3", "h2", PINGS)
        cutter = threading.Timer(CUT_AFTER_S, lambda: lab.link_down(*CUT))
        cutter.start()
        sent, received, _ = ping_result(proc, timeout_s=PINGS * 0.01 + 30)
        p_sent, p_received, _ = ping_result(plain, timeout_s=PINGS * 0.01 + 30)
        cutter.join()
        there = _bucket_packets(lab, "s3", BYPASS_GROUP_BASE + p3)
        back = _bucket_packets(lab, "s4", BYPASS_GROUP_BASE + p4)
        p_there = _bucket_packets(lab, "s3", BYPASS_IP_GROUP_BASE + p3)
        p_back = _bucket_packets(lab, "s4", BYPASS_IP_GROUP_BASE + p4)
        print(f"link {CUT[0]}-{CUT[1]} cut under a 10 ms ping ({PINGS} pings), no controller, "
              f"fast reroute: {sent - received} lost; bypass packets: s3 {there}, s4 {back}; "
              f"best effort h3 -> h2: {p_sent - p_received} lost; IPv4 bypass packets: "
              f"s3 {p_there}, s4 {p_back}")
        assert sent == PINGS and p_sent == PINGS
        # both directions took their bypass: the pings after the cut (about 250) and replies
        assert there >= PINGS // 2 and back >= PINGS // 2, (there, back)
        assert p_there >= PINGS // 2 and p_back >= PINGS // 2, (p_there, p_back)
        assert sent - received <= 1, ctl.log_tail(30)
        assert p_sent - p_received <= 1, ctl.log_tail(30)
    finally:
        if lab is not None:
            lab.stop()
        ctl.stop()
